"""CORS in a real headless Chromium: a page on another loopback origin uses the API with `fetch`; one elsewhere cannot.

The service runs on one port with APP_CORS_ORIGINS naming the origin of a tiny page server on another port; a
third port serves the same page from an origin that is not allowed. Everything the tests check is what the
page's own script saw (status, headers, bodies, or the TypeError a refused fetch rejects with), so it is the
browser that enforces CORS here, not an HTTP client playing one. Chromium is Debian's, driven as in
tests/e2e/test_swagger_ui_browser.py; nothing leaves the machine.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from app import create_app, dispose_app
from tests.conftest import API_KEY, LiveServer
from tests.e2e.test_swagger_ui_browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS
from tests.support.factories import new_room

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

PAGE = b"<!doctype html><html><head><meta charset='utf-8'><title>rooms app</title></head><body>app</body></html>"

# The page's script: create a room, then read it back through the Location the answer exposes; each answer
# reported as the page saw it.
CREATE_AND_READ = """async ([api, headers, room]) => {
  const created = await fetch(api + "/v1/rooms", {
    method: "POST", headers: {"Content-Type": "application/json", ...headers}, body: JSON.stringify(room)});
  const body = await created.json();
  const location = created.headers.get("Location");
  const read = await fetch(new URL(location, api));
  return {status: created.status, location, etag: created.headers.get("ETag"),
          requestId: created.headers.get("X-Request-ID"), id: body.id,
          readStatus: read.status, readBody: await read.json(), readEtag: read.headers.get("ETag")};
}"""

WITHOUT_CREDENTIALS = """async ([api, room]) => {
  const response = await fetch(api + "/v1/rooms", {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(room)});
  return {status: response.status, type: response.headers.get("Content-Type"),
          challenge: response.headers.get("WWW-Authenticate"), problem: await response.json()};
}"""

REFUSED = """async ([api, init]) => {
  try {
    const response = await fetch(api + "/v1/rooms", init);
    return {outcome: "answered", status: response.status};
  } catch (error) {
    return {outcome: "rejected", name: error.name, message: String(error.message)};
  }
}"""


class PageServer:
    """A tiny http.server on its own loopback port serving one HTML page: an origin of its own."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(PAGE)))
                self.end_headers()
                self.wfile.write(PAGE)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> PageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    """Debian's Chromium, headless, on a fresh profile; fails (never skips) when it is missing."""
    import os

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/ensure-chromium.sh` as root, or `make test` as root.",
                    pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-cors-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, service_workers="block")
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def origins() -> Iterator[tuple[PageServer, PageServer]]:
    """The allowed page origin and one that is not allowed."""
    with PageServer() as allowed, PageServer() as other:
        yield allowed, other


@pytest.fixture
def service(settings, origins, issuer) -> Iterator[LiveServer]:
    """The service allowing the first page origin only, accepting the issuer's tokens too."""
    allowed, _ = origins
    application = create_app(dataclasses.replace(settings, cors_origins=(allowed.origin,), oauth=issuer.settings()))
    try:
        with LiveServer(application) as server:
            yield server
    finally:
        dispose_app(application)


@pytest.fixture
def page_on(browser):
    """Open a page on an origin; at the end, every request the pages made stayed on loopback."""
    pages, requested = [], []

    def open_page(origin: str):
        page = browser.new_page()
        page.on("request", lambda request: requested.append(request.url))
        page.goto(origin + "/")
        assert page.title() == "rooms app"
        pages.append(page)
        return page

    yield open_page
    for page in pages:
        page.close()
    assert all(urlsplit(url).hostname == "127.0.0.1" for url in requested), requested


def count_rooms(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.text("SELECT count(*) FROM rooms")).scalar_one()


@pytest.mark.parametrize("credential", ["api-key", "bearer-token"])
def test_a_page_on_an_allowed_origin_creates_and_reads_a_room(page_on, origins, service, issuer, engine, credential):
    allowed, _ = origins
    headers = {"X-API-Key": API_KEY} if credential == "api-key" else {"Authorization": f"Bearer {issuer.token()}"}
    room = new_room()
    seen = page_on(allowed.origin).evaluate(CREATE_AND_READ, [service.url, headers, room])
    assert seen["status"] == 201
    # Headers the page could read only because the service exposes them.
    assert seen["location"].endswith(f"/v1/rooms/{seen['id']}") and seen["etag"] == '"1"' and seen["requestId"]
    assert seen["readStatus"] == 200 and seen["readEtag"] == '"1"'
    assert seen["readBody"]["url"] == room["url"] and seen["readBody"]["name"] == room["name"]
    assert count_rooms(engine) == 1


def test_the_page_reads_a_401_problem_and_its_challenge(page_on, origins, service, engine):
    allowed, _ = origins
    seen = page_on(allowed.origin).evaluate(WITHOUT_CREDENTIALS, [service.url, new_room()])
    assert seen["status"] == 401 and seen["type"] == "application/problem+json"
    assert seen["challenge"] == 'Bearer realm="rooms"'
    assert seen["problem"]["status"] == 401 and seen["problem"]["title"] == "Unauthorized"
    assert count_rooms(engine) == 0


def test_a_page_on_another_origin_is_refused_by_the_browser(page_on, origins, service, engine):
    allowed, other = origins
    # A valid write: its preflight is refused, so the browser never sends the POST (nothing is stored).
    write = {"method": "POST", "headers": {"Content-Type": "application/json", "X-API-Key": API_KEY},
             "body": json.dumps(new_room())}
    read: dict = {}
    seen = page_on(other.origin).evaluate(REFUSED, [service.url, write])
    assert seen["outcome"] == "rejected" and seen["name"] == "TypeError", seen
    # A plain read: the service answers (reads are public), but without CORS headers the browser withholds it.
    seen = page_on(other.origin).evaluate(REFUSED, [service.url, read])
    assert seen["outcome"] == "rejected" and seen["name"] == "TypeError", seen
    assert count_rooms(engine) == 0
    # The same two calls from the allowed origin go through: the refusal was the origin's, not an outage.
    assert page_on(allowed.origin).evaluate(REFUSED, [service.url, write]) == {"outcome": "answered", "status": 201}
    assert page_on(allowed.origin).evaluate(REFUSED, [service.url, read]) == {"outcome": "answered", "status": 200}
    assert count_rooms(engine) == 1
