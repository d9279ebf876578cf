"""OAuth2 bearer tokens beside the API keys, through the real stack, against a test issuer on loopback.

The issuer's keys are made with `cryptography` and published by a JWKS server in a thread (tests/support/
issuer.py) that counts its fetches. Every request goes HTTP → Connexion's security → handler → provider →
database; the answers are checked for their status, their RFC 6750 challenge and their problem document,
and the database for what was (not) written.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import yaml

from app import create_app, dispose_app
from contract.spec import SPEC_PATH
from rest.bearer_tokens import principal_of_token
from settings import Settings
from tests.conftest import API_KEY, LiveServer
from tests.integration.test_logs import captured_access_log  # noqa: F401 (a fixture, used by name)
from tests.integration.test_rooms_api import assert_problem, count_rooms
from tests.support.entity_check import EntityCheckingClient
from tests.support.factories import new_room
from tests.support.issuer import ISSUER, TestIssuer
from web import bearer_keys
from web.bearer_keys import JwksKeys
from web.docs import TOKEN_URL_PLACEHOLDER
from web.security import principal_of

# Token checks do not depend on the database; the writes they let through are checked on both below.
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def token_app(settings, issuer):
    """The app accepting the issuer's tokens (JWKS by URL) beside the test API key."""
    application = create_app(dataclasses.replace(settings, oauth=issuer.settings()))
    yield application
    dispose_app(application)


@pytest.fixture
def token_client(token_app) -> EntityCheckingClient:
    return EntityCheckingClient(token_app)


@pytest.fixture(scope="module")
def shared_issuer() -> Iterator[TestIssuer]:
    """An issuer for the module's tests that refuse or accept single tokens: RSA, EC and Ed25519 keys, all published."""
    with TestIssuer() as test_issuer:
        for kid, kind in (("k1", "RSA"), ("ec", "EC"), ("ed", "Ed25519")):
            test_issuer.add_key(kid, kind)
        yield test_issuer


@pytest.fixture(scope="module")
def shared(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory, shared_issuer: TestIssuer):
    """One app for those tests (on a SQLite copy): each one checks what it wrote by counting events before and after."""
    database = tmp_path_factory.mktemp("bearer") / "rooms.sqlite3"
    shutil.copy(sqlite_template, database)
    url = f"sqlite:///{database}"
    application = create_app(Settings(database_url=url, api_keys=frozenset({API_KEY}), validate_responses=True,
                                      oauth=shared_issuer.settings()))
    engine = sa.create_engine(url)
    yield EntityCheckingClient(application), engine
    engine.dispose()
    dispose_app(application)


@pytest.fixture
def shared_client(shared) -> EntityCheckingClient:
    return shared[0]


@pytest.fixture
def events_written(shared):
    """How many events the test wrote, so far (every write writes one)."""
    engine = shared[1]

    def count() -> int:
        with engine.connect() as connection:
            return connection.execute(sa.text("SELECT count(*) FROM events")).scalar_one()

    before = count()
    return lambda: count() - before


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def challenge_of(response: httpx.Response) -> dict[str, str]:
    """The auth-params of the response's Bearer challenge."""
    header = response.headers["WWW-Authenticate"]
    assert header.startswith("Bearer ")
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def assert_token_refused(response: httpx.Response, *words: str) -> dict:
    problem = assert_problem(response, 401)
    params = challenge_of(response)
    assert params["realm"] == "rooms" and params["error"] == "invalid_token", params
    for word in words:
        assert word in params["error_description"] and word in problem["detail"], (word, params, problem)
    return problem


def test_a_token_with_the_scope_creates_changes_and_deletes_and_reads_stay_public(token_client, issuer, engine):
    headers = bearer(issuer.token(scope="rooms:write items:write"))
    created = token_client.post("/v1/rooms", json=new_room(), headers=headers)
    assert created.status_code == 201, created.text
    room = created.json()
    assert token_client.get(f"/v1/rooms/{room['id']}").status_code == 200  # no credentials needed to read
    assert token_client.get("/v1/rooms", headers=bearer("garbage")).status_code == 200  # nor checked on reads
    patched = token_client.patch(f"/v1/rooms/{room['id']}", content=b'{"price": 700, "monthly_price": 700}',
                                 headers={**headers, "Content-Type": "application/merge-patch+json"})
    assert patched.status_code == 200 and patched.json()["price"] == 700
    assert token_client.post("/v1/items", json={"name": "Lamp"}, headers=headers).status_code == 201
    assert token_client.delete(f"/v1/rooms/{room['id']}", headers=headers).status_code == 204
    assert count_rooms(engine) == 0


@pytest.mark.parametrize("path, body, scope", [
    ("/v1/rooms", new_room(), "rooms:write"),
    ("/v1/items", {"name": "Lamp"}, "items:write"),
    ("/v1/questions", {"question_code": "42", "category": "c", "message": "m"}, "questions:write"),
])
def test_a_valid_token_without_the_scope_is_403_naming_it_and_writes_nothing(shared_client, shared_issuer, events_written,
                                                                          path, body, scope):
    granted = "rooms:read items:write" if scope != "items:write" else "rooms:write"
    response = shared_client.post(path, json=body, headers=bearer(shared_issuer.token(scope=granted)))
    problem = assert_problem(response, 403)
    params = challenge_of(response)
    assert params["error"] == "insufficient_scope" and params["scope"] == scope and params["realm"] == "rooms"
    assert problem["required_scopes"] == [scope] and scope in problem["detail"]
    assert problem["granted_scopes"] == sorted(granted.split())
    assert events_written() == 0


def test_scopes_may_come_as_an_scp_list_too(shared_client, shared_issuer):
    token = shared_issuer.token(scope=None, scp=["items:write"])
    assert shared_client.post("/v1/items", json={"name": "Lamp"}, headers=bearer(token)).status_code == 201


@pytest.mark.parametrize("claims, words", [
    ({"lifetime": -120}, ["expired"]),                            # beyond the 30 s leeway
    ({"nbf": int(time.time()) + 600}, ["not valid yet"]),
    ({"iss": "https://elsewhere.test/"}, ["issuer"]),
    ({"aud": "another-service"}, ["aud"]),
    ({"sub": None}, ["subject"]),
    ({"exp": None}, ["exp"]),
], ids=["expired", "nbf-in-the-future", "wrong-issuer", "wrong-audience", "no-subject", "no-exp"])
def test_a_token_that_fails_a_claim_is_401_invalid_token_saying_which(shared_client, shared_issuer, events_written, claims, words):
    response = shared_client.post("/v1/rooms", json=new_room(), headers=bearer(shared_issuer.token(**claims)))
    assert_token_refused(response, *words)
    assert events_written() == 0


def test_the_leeway_forgives_a_little_clock_skew(shared_client, shared_issuer):
    # Expired 10 s ago and valid from 10 s in the future: both within the 30 s leeway.
    skewed = shared_issuer.token(lifetime=-10, nbf=int(time.time()) + 10)
    assert shared_client.post("/v1/items", json={"name": "Lamp"}, headers=bearer(skewed)).status_code == 403  # valid, no scope
    skewed = shared_issuer.token(lifetime=-10, scope="items:write")
    assert shared_client.post("/v1/items", json={"name": "Lamp"}, headers=bearer(skewed)).status_code == 201


def test_forged_tokens_are_refused_alg_none_hmac_with_the_public_key_and_a_foreign_signature(shared_client, shared_issuer,
                                                                                            events_written):
    def post(token: str) -> httpx.Response:
        return shared_client.post("/v1/rooms", json=new_room(), headers=bearer(token))

    assert_token_refused(post(shared_issuer.unsigned_token()), "algorithm")
    assert_token_refused(post(shared_issuer.hmac_with_public_key("k1")), "algorithm")
    # Signed by a key that is not the issuer's, under the issuer's kid.
    impostor = TestIssuer()
    impostor.add_key("k1")
    assert_token_refused(post(impostor.token()), "signature")
    # An EC signature presented as RS256 under the EC key's kid: the key type decides the algorithm.
    ec_token = shared_issuer.token("ec")
    header, payload, signature = ec_token.split(".")
    relabelled = base64.urlsafe_b64encode(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "ec"}).encode()).rstrip(b"=").decode()
    assert_token_refused(post(f"{relabelled}.{payload}.{signature}"), "algorithm")
    assert_token_refused(post("not.a.jwt"))
    assert_token_refused(post("garbage"))
    assert events_written() == 0


def test_missing_credentials_and_a_wrong_api_key_are_401_with_a_bare_bearer_challenge(shared_client):
    for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Basic dXNlcjpwYXNz"}):
        response = shared_client.post("/v1/rooms", json=new_room(), headers=headers)
        assert_problem(response, 401)
        # No token was sent, so no error code (RFC 6750 §3.1): the challenge only says tokens are accepted.
        assert challenge_of(response) == {"realm": "rooms"}


def test_api_keys_keep_working_beside_tokens(shared_client, shared_issuer, events_written):
    auth = {"X-API-Key": API_KEY}
    assert shared_client.post("/v1/rooms", json=new_room(), headers=auth).status_code == 201
    # Either will do: a valid key with a bad token, a valid token with a wrong key.
    assert shared_client.post("/v1/items", json={"name": "a"}, headers={**auth, **bearer("garbage")}).status_code == 201
    with_token = {"X-API-Key": "wrong", **bearer(shared_issuer.token(scope="items:write"))}
    assert shared_client.post("/v1/items", json={"name": "b"}, headers=with_token).status_code == 201
    assert events_written() == 3


@SQLITE
def test_without_an_issuer_configured_tokens_are_401_saying_so_and_api_keys_work(client, auth, issuer, engine):
    response = client.post("/v1/rooms", json=new_room(), headers=bearer(issuer.token()))
    assert_token_refused(response, "not configured")
    assert client.post("/v1/rooms", json=new_room(), headers=auth).status_code == 201
    assert issuer.fetches == 0


@SQLITE
def test_a_pem_public_key_verifies_tokens_without_any_fetch(settings, issuer):
    issuer.add_key("ec", "EC")
    oauth = dataclasses.replace(issuer.settings(), jwks_url=None, public_key_pem=issuer.public_pem("ec"))
    application = create_app(dataclasses.replace(settings, oauth=oauth))
    try:
        client = EntityCheckingClient(application)
        assert client.post("/v1/items", json={"name": "a"}, headers=bearer(issuer.token("ec", scope="items:write"))).status_code == 201
        # The RSA key is not the configured one; an RS256 token is refused whatever kid it names.
        assert_token_refused(client.post("/v1/items", json={"name": "a"}, headers=bearer(issuer.token("k1", scope="items:write"))))
    finally:
        dispose_app(application)
    assert issuer.fetches == 0


@pytest.mark.parametrize("kid", ["k1", "ec", "ed"], ids=["RS256", "ES256", "EdDSA"])
def test_rsa_ec_and_ed25519_keys_of_the_jwks_all_verify(shared_client, shared_issuer, kid):
    token = shared_issuer.token(kid, scope="items:write")
    assert shared_client.post("/v1/items", json={"name": "a"}, headers=bearer(token)).status_code == 201


@SQLITE
def test_a_rotated_key_is_fetched_once_and_unknown_kids_do_not_make_the_service_refetch(token_client, issuer):
    write = {"scope": "items:write"}
    assert token_client.post("/v1/items", json={"name": "a"}, headers=bearer(issuer.token(**write))).status_code == 201
    assert issuer.fetches == 1  # the first token fetched the keys; the next ones use them
    assert token_client.post("/v1/items", json={"name": "b"}, headers=bearer(issuer.token(**write))).status_code == 201
    assert issuer.fetches == 1

    time.sleep(1.05)  # past the bound on refetches (1 s in these settings)
    issuer.add_key("k2")  # the issuer rotates: publishes k2 and signs with it
    assert token_client.post("/v1/items", json={"name": "c"}, headers=bearer(issuer.token("k2", **write))).status_code == 201
    assert issuer.fetches == 2

    # Made-up kids, right after: refused at once, none of them starts a fetch.
    for n in range(5):
        issuer.add_key(f"unpublished-{n}", publish=False)
        response = token_client.post("/v1/items", json={"name": "d"}, headers=bearer(issuer.token(f"unpublished-{n}", **write)))
        assert_token_refused(response, f"unpublished-{n}")
    assert issuer.fetches == 2

    # Once the bound has passed, an unknown kid may look again (once), and is still refused.
    time.sleep(1.05)
    assert_token_refused(token_client.post("/v1/items", json={"name": "e"}, headers=bearer(issuer.token("unpublished-0", **write))))
    assert issuer.fetches == 3


@SQLITE
def test_while_the_jwks_is_fetched_the_event_loop_serves_others_and_waiters_share_one_fetch(settings, issuer):
    issuer.delay_seconds = 1.0  # a slow issuer
    application = create_app(dataclasses.replace(settings, oauth=issuer.settings(), handler_threads=8))
    try:
        with LiveServer(application) as server:
            while issuer.fetches < 1:  # the server's start-up began the first fetch
                time.sleep(0.01)
            time.sleep(1.1)
            token = issuer.token(scope="items:write")
            issuer.add_key("k2")
            rotated = issuer.token("k2", scope="items:write")
            statuses: list[int] = []

            def write(headers: dict[str, str]) -> None:
                statuses.append(httpx.post(f"{server.url}/v1/items", json={"name": "x"}, headers=headers, timeout=10).status_code)

            writers = [threading.Thread(target=write, args=(bearer(rotated),)) for _ in range(4)]
            started = time.monotonic()
            for thread in writers:
                thread.start()
            time.sleep(0.2)  # the writers now wait on the fetch
            # Meanwhile the loop answers: a health check, and a write whose key is known.
            assert httpx.get(f"{server.url}/v1/health").status_code == 200
            assert httpx.post(f"{server.url}/v1/items", json={"name": "y"}, headers=bearer(token)).status_code == 201
            assert time.monotonic() - started < 0.8
            for thread in writers:
                thread.join()
    finally:
        dispose_app(application)
    assert statuses == [201] * 4
    assert issuer.fetches == 2  # the start-up's fetch, and one for all four waiters


@SQLITE
def test_an_unreachable_issuer_is_a_503_with_retry_after_for_tokens_and_keys_still_work(settings, issuer, auth):
    issuer.fail = True
    application = create_app(dataclasses.replace(settings, oauth=issuer.settings()))
    try:
        client = EntityCheckingClient(application)
        problem = assert_problem(client.post("/v1/items", json={"name": "a"}, headers=bearer(issuer.token(scope="items:write"))), 503)
        assert "signing keys" in problem["detail"]
        assert client.post("/v1/items", json={"name": "a"}, headers=auth).status_code == 201
        # Within the bound, the next token does not refetch; the answer says when to come back.
        response = client.post("/v1/items", json={"name": "a"}, headers=bearer(issuer.token(scope="items:write")))
        assert response.status_code == 503 and response.headers["Retry-After"] == "1"
        assert issuer.fetches == 1
        issuer.fail = False
        time.sleep(1.05)
        assert client.post("/v1/items", json={"name": "a"}, headers=bearer(issuer.token(scope="items:write"))).status_code == 201
    finally:
        dispose_app(application)


def test_idempotency_keys_belong_to_the_token_subject(token_client, issuer, auth, engine):
    def post(headers: dict[str, str], name: str) -> httpx.Response:
        return token_client.post("/v1/items", json={"name": name}, headers={**headers, "Idempotency-Key": "shared"})

    alice = bearer(issuer.token(sub="alice", scope="items:write"))
    bob = bearer(issuer.token(sub="bob", scope="items:write"))
    first = post(alice, "Lamp")
    # Another subject, another body, the same key: its own create, not a 422 and not alice's answer.
    theirs = post(bob, "Desk")
    assert first.status_code == theirs.status_code == 201 and "Idempotent-Replayed" not in theirs.headers
    assert theirs.json()["id"] != first.json()["id"]
    # Alice's retry, with a new token for the same subject, replays her first answer.
    again = post(bearer(issuer.token(sub="alice", scope="items:write")), "Lamp")
    assert again.headers["Idempotent-Replayed"] == "true" and again.content == first.content
    # The same subject from a client-credentials token (client_id, no sub) is the same principal;
    # an API key is another one.
    as_client = post(bearer(issuer.token(sub=None, client_id="alice", scope="items:write")), "Lamp")
    assert as_client.headers["Idempotent-Replayed"] == "true"
    assert post(auth, "Chair").status_code == 201
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM items")).scalar_one() == 3
        principals = connection.execute(sa.text("SELECT principal FROM idempotency_keys ORDER BY principal")).scalars().all()
    assert len(set(principals)) == 3
    assert [p.split(":")[0] for p in principals] == ["key", "sub", "sub"]
    assert all(len(p) <= 64 for p in principals)



@SQLITE
def test_the_served_document_names_the_configured_token_url(settings, issuer):
    token_url = "https://login.example.com/realms/platform/protocol/openid-connect/token"
    application = create_app(dataclasses.replace(settings, oauth=issuer.settings(token_url=token_url)))
    try:
        client = EntityCheckingClient(application)
        for path in ("/openapi.json", "/v1/openapi.yaml"):
            response = client.get(path)
            document = response.json() if path.endswith(".json") else yaml.safe_load(response.text)
            flow = document["components"]["securitySchemes"]["OAuth2"]["flows"]["clientCredentials"]
            assert flow["tokenUrl"] == token_url and set(flow["scopes"]) == {"rooms:write", "items:write", "questions:write"}
    finally:
        dispose_app(application)


@SQLITE
def test_without_a_token_url_the_document_is_served_as_written(client):
    assert client.get("/v1/openapi.yaml").text == SPEC_PATH.read_text(encoding="utf-8")
    flow = client.get("/openapi.json").json()["components"]["securitySchemes"]["OAuth2"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == TOKEN_URL_PLACEHOLDER


@SQLITE
def test_the_json_access_log_names_the_principal_of_each_write(token_client, issuer, auth, request):
    stream = request.getfixturevalue("captured_access_log")("json")
    token_client.post("/v1/items", json={"name": "a"}, headers=bearer(issuer.token(sub="alice", scope="items:write")))
    token_client.post("/v1/items", json={"name": "b"}, headers=auth)
    token_client.get("/v1/items")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["operation_id"] for line in lines] == ["create_item", "create_item", "search_items"]
    assert lines[0]["principal"] == principal_of_token(ISSUER, "alice")
    assert lines[1]["principal"] == principal_of(API_KEY)
    assert "principal" not in lines[2]  # reads are anonymous


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def jwks_keys(issuer: TestIssuer, clock: Clock, *, timeout: float = 5) -> JwksKeys:
    return JwksKeys(issuer.jwks_url, frozenset({"RS256"}), timeout_seconds=timeout, refresh_seconds=300,
                    min_refetch_seconds=30, clock=clock)


def wait_for_fetches(issuer: TestIssuer, keys: JwksKeys, count: int) -> None:
    deadline = time.monotonic() + 5
    while keys.fetches < count:
        assert time.monotonic() < deadline, "the fetch did not finish"
        time.sleep(0.01)


def test_a_stale_key_set_keeps_serving_while_a_background_fetch_replaces_it(issuer):
    clock = Clock()
    keys = jwks_keys(issuer, clock)
    keys.start()
    wait_for_fetches(issuer, keys, 1)
    first = keys.key_set()
    assert first is not None and set(first.keys) == {"k1"}
    issuer.add_key("k2")
    clock.now += 200
    assert keys.key_set() is first and issuer.fetches == 1  # fresh enough: no fetch
    clock.now += 101
    assert keys.key_set() is first  # stale: still served, at once, while the fetch runs
    wait_for_fetches(issuer, keys, 2)
    assert set(keys.key_set().keys) == {"k1", "k2"}


def test_a_request_waits_for_a_slow_fetch_no_longer_than_the_timeout(issuer):
    issuer.delay_seconds = 1.0
    keys = jwks_keys(issuer, Clock(), timeout=0.2)
    started = time.monotonic()
    assert asyncio.run(keys.refetched()) is None
    assert time.monotonic() - started < 0.6
    wait_for_fetches(issuer, keys, 1)  # the fetch's own timeout is the same: it gave up too, and holds nothing
    assert keys.key_set() is None


def test_an_oversized_or_unusable_jwks_keeps_the_keys_held(issuer, monkeypatch):
    clock = Clock()
    keys = jwks_keys(issuer, clock)
    keys.start()
    wait_for_fetches(issuer, keys, 1)
    held = keys.key_set()
    monkeypatch.setattr(bearer_keys, "MAX_JWKS_BYTES", 100)
    clock.now += 31
    assert asyncio.run(keys.refetched()) is held  # too large: refused, the old keys stay
    monkeypatch.undo()
    issuer.publish()  # no keys at all
    clock.now += 31
    assert asyncio.run(keys.refetched()) is held
    assert keys.fetches == 3
