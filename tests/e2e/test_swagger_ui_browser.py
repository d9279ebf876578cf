"""Swagger UI in a real headless Chromium (Debian's, driven by Playwright) against a live server.

The page must render every tag and operation of the spec, load nothing from any host but the service, and
let a person authorize with the API key and try operations out: a 201 that a plain GET then finds, and a 400
whose problem document is shown. The browser is the system one (scripts/ensure-chromium.sh installs it);
`playwright install` is never run, so Playwright downloads nothing.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from tests.conftest import API_KEY

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "var" / "artifacts"  # git-ignored; screenshots to look at after a run
SCREENSHOT = ARTIFACTS / "swagger-ui.png"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# The machine's network is closed and we may run as root; keep Chromium from phoning home at all.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Belt and braces behind the page-level blocking below: no other host name even resolves.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
TIMEOUT_MS = 15_000

# One backend is enough: the UI talks HTTP, and the SQLite default is what `make run` serves.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


class Browsing:
    """Chromium on a fresh temporary profile that records every request and lets only the service's go out."""

    def __init__(self, playwright, user_data_dir: Path) -> None:
        self.origin = ""
        self.requests: list[str] = []
        self.blocked: list[str] = []
        self.context = playwright.chromium.launch_persistent_context(
            str(user_data_dir),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            service_workers="block",  # so that every request the page makes passes through the route below
            viewport={"width": 1280, "height": 900},
        )
        self.context.set_default_timeout(TIMEOUT_MS)
        self.context.on("request", lambda request: self.requests.append(request.url))
        self.context.route("**/*", self._only_the_service)
        self.page = None

    def visit(self, origin: str) -> None:
        """Start over on a new page for the service at origin, with empty request records."""
        self.origin = origin
        self.requests.clear()
        self.blocked.clear()
        # Each test's live server has its own port, so its origin's storage starts empty too.
        self.page = self.context.new_page()

    def leave(self) -> None:
        """Close the page."""
        self.page.close()
        self.page = None

    def _only_the_service(self, route) -> None:
        url = route.request.url
        if _origin(url) == self.origin:
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("blockedbyclient")

    def foreign_requests(self) -> list[str]:
        """Every request so far that went (or tried to go) anywhere but the service."""
        return sorted({url for url in self.requests if _origin(url) != self.origin} | set(self.blocked))

    def open_ui(self) -> None:
        """Load /ui/ and wait until Swagger UI has rendered the operations."""
        self.page.goto(f"{self.origin}/ui/")
        self.page.wait_for_selector(".opblock-tag")
        self.page.wait_for_selector(".opblock")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browsing]:
    """One Chromium for the module, on a fresh profile; fails (never skips) when the system Chromium is missing."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: run `bash scripts/ensure-chromium.sh` as root (it installs Debian's chromium "
            "and chromium-driver), or `make test` as root, which does.",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        session = Browsing(playwright, tmp_path_factory.mktemp("chromium-profile"))
        try:
            yield session
        finally:
            session.context.close()


@pytest.fixture
def browsing(chromium: Browsing, live_server) -> Iterator[Browsing]:
    """The browser on a new page for this test's live server; at the end nothing may have left for another host."""
    chromium.visit(live_server.url)
    try:
        yield chromium
    finally:
        chromium.leave()
    assert chromium.foreign_requests() == []


def _spec() -> dict:
    return yaml.safe_load((ROOT / "swagger" / "openapi.yaml").read_text())


def _operations(spec: dict) -> set[tuple[str, str, str, str]]:
    return {
        (operation["tags"][0], operation["operationId"], method.upper(), path)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def _open_operation(page, tag: str, operation_id: str):
    block = page.locator(f"#operations-{tag}-{operation_id}")
    block.locator(".opblock-summary").first.click()
    block.locator(".opblock-body").wait_for()
    return block


def _authorize(page, key: str) -> None:
    page.click(".scheme-container button.authorize")
    modal = page.locator(".modal-ux")
    # The dialog offers both schemes of the writes; the API key's is the one with its name.
    api_key = modal.locator(".auth-container", has_text="ApiKeyAuth")
    api_key.locator("input").fill(key)
    api_key.locator("button.modal-btn.authorize").click()
    # Once accepted, the modal says "Authorized" and offers to log out; closed, the padlock shows locked.
    api_key.locator("h6", has_text="Authorized").wait_for()
    api_key.locator("button.modal-btn", has_text="Logout").wait_for()
    modal.locator("button.close-modal").click()
    modal.wait_for(state="detached")
    page.locator(".scheme-container button.authorize.locked").wait_for()


def _execute(block) -> tuple[int, str]:
    block.locator(".execute").click()
    status = block.locator(".responses-wrapper .live-responses-table .response .response-col_status").first
    status.wait_for()
    body = block.locator(".responses-wrapper .live-responses-table .response-col_description pre").first
    return int(status.inner_text().strip()), body.inner_text()


def _save_shot(locator, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    locator.screenshot(path=str(ARTIFACTS / name))


def test_the_ui_renders_every_tag_and_operation_of_the_spec(browsing):
    page = browsing.page
    browsing.open_ui()
    spec = _spec()

    tags = page.eval_on_selector_all(".opblock-tag", "els => els.map(e => e.dataset.tag)")
    assert tags == [tag["name"] for tag in spec["tags"]]

    # Swagger UI gives each operation block the id `operations-<tag>-<operationId>`; with its method and
    # path shown in the summary, that is the operation exactly.
    rendered = page.eval_on_selector_all(
        ".opblock",
        """els => els.map(e => [e.id,
                               e.querySelector('.opblock-summary-method').textContent,
                               e.querySelector('.opblock-summary-path').dataset.path])""",
    )
    seen = set()
    for block_id, method, path in rendered:
        tag, _, operation_id = block_id.removeprefix("operations-").partition("-")
        seen.add((tag, operation_id, method, path))
    assert len(rendered) == len(seen)
    assert seen == _operations(spec)

    # The document's own text is there too (title, version, the server from `servers`).
    assert page.locator(".info .title").inner_text().startswith(spec["info"]["title"])
    assert page.locator(".servers select option").first.inner_text() == spec["servers"][0]["url"]

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    data = SCREENSHOT.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width == 1280 and height > 900  # the full page, longer than one screen


def test_the_browser_loads_everything_from_the_service_alone(browsing):
    browsing.open_ui()
    # Open an operation and its schema so that lazily loaded parts are loaded too.
    _open_operation(browsing.page, "rooms", "create_room")
    browsing.page.locator(".models .model-container").first.click()
    browsing.page.wait_for_load_state("networkidle")

    paths = {urlsplit(url).path for url in browsing.requests}
    # The page really fetched its assets and the spec (so a CDN reference could not have gone unnoticed) ...
    assert {"/ui/", "/v1/openapi.json"} <= paths
    assert any(p.endswith(".js") for p in paths) and any(p.endswith(".css") for p in paths)
    # ... and every one of them from the service: nothing was blocked, nothing went elsewhere.
    assert browsing.foreign_requests() == []
    assert all(_origin(url) == browsing.origin for url in browsing.requests)


def test_authorize_then_try_out_create_room_with_the_example(browsing, live_server):
    page = browsing.page
    browsing.open_ui()
    _authorize(page, API_KEY)

    block = _open_operation(page, "rooms", "create_room")
    block.locator(".try-out__btn").click()
    textarea = block.locator("textarea.body-param__text")
    example = json.loads(textarea.input_value())
    assert example == _spec()["paths"]["/rooms"]["post"]["requestBody"]["content"]["application/json"]["example"]

    status, body = _execute(block)
    _save_shot(block, "swagger-ui-create-room-201.png")
    assert status == 201, body
    # The UI sent the key it was given (its curl line shows the request it made).
    assert f"X-API-Key: {API_KEY}" in block.locator(".curl-command").inner_text()
    room = json.loads(body)
    assert room["url"] == example["url"] and room["name"] == example["name"]

    # A plain HTTP GET, outside the browser, finds what the UI created.
    response = httpx.get(f"{live_server.url}/v1/rooms/{room['id']}")
    assert response.status_code == 200
    assert response.json()["url"] == example["url"] and response.json()["price"] == example["price"]


def test_a_bad_body_shows_its_problem_document(browsing, live_server):
    page = browsing.page
    browsing.open_ui()
    _authorize(page, API_KEY)

    block = _open_operation(page, "rooms", "create_room")
    block.locator(".try-out__btn").click()
    bad = json.loads(block.locator("textarea.body-param__text").input_value())
    bad.update(price=-1, name="")
    del bad["url"]
    block.locator("textarea.body-param__text").fill(json.dumps(bad, indent=2))

    status, body = _execute(block)
    _save_shot(block, "swagger-ui-create-room-400.png")
    assert status == 400, body
    problem = json.loads(body)
    assert problem["status"] == 400 and problem["title"] == "Bad Request"
    assert sorted(error["path"] for error in problem["errors"]) == ["$.name", "$.price", "$.url"]
    # The problem is on screen, not only in the DOM: the response panel shows `errors` with the paths.
    panel = block.locator(".responses-wrapper .live-responses-table").first
    assert panel.is_visible()
    text = panel.inner_text()
    assert '"errors"' in text and "$.price" in text and "application/problem+json" in text

    # Nothing was stored.
    assert httpx.get(f"{live_server.url}/v1/rooms").json()["data"] == []
