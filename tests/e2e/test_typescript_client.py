"""A TypeScript client generated from the running service's /openapi.json, type-checked and run under Node."""

from __future__ import annotations

import dataclasses
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from app import create_app, dispose_app
from settings import Settings
from tests.conftest import API_KEY, LiveServer
from tests.support.issuer import TestIssuer
from tests.support.node_tools import GENERATED, require_node, run, run_script, tsc

TYPES = GENERATED / "api.d.ts"


@pytest.fixture(scope="module")
def typed_client(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Generate the client's types from a live server's /openapi.json, as a user would, and type-check the project.

    Once per module: the spec is the same on every backend, and the scenario test below only runs code
    that passed tsc against types generated in this run.
    """
    require_node()
    database = tmp_path_factory.mktemp("spec-server") / "rooms.sqlite3"
    shutil.copy(sqlite_template, database)
    application = create_app(Settings(database_url=f"sqlite:///{database}", api_keys=frozenset({API_KEY})))
    TYPES.unlink(missing_ok=True)  # never type-check against types left over from an earlier run
    try:
        with LiveServer(application) as server:
            generated = run(["npm", "run", "--silent", "generate"], OPENAPI_URL=f"{server.url}/openapi.json")
    finally:
        dispose_app(application)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert TYPES.is_file() and f"{server.url}/openapi.json" in generated.stdout + generated.stderr
    checked = tsc("tsconfig.json")
    assert checked.returncode == 0, f"tsc found type errors:\n{checked.stdout}{checked.stderr}"
    yield TYPES


def test_the_generated_types_carry_the_contracts_names(typed_client):
    types = typed_client.read_text()
    for path in ('"/rooms"', '"/rooms/{room_id}"', '"/schemas/{name}"', '"/events"'):
        assert f"    {path}: {{" in types, path
    for component in ("Room", "NewRoom", "RoomPatch", "RoomPage", "Problem"):
        assert f"        {component}: {{" in types, component
    assert '"application/merge-patch+json": components["schemas"]["RoomPatch"]' in types
    assert '"application/json": components["schemas"]["Room"]' in types
    assert '"application/problem+json": components["schemas"]["Problem"]' in types


def test_tsc_fails_on_code_that_misuses_the_generated_types(typed_client):
    # The same call twice: well typed it passes, with one wrong type it fails at that line. This is the
    # check that makes the type check of the scenario mean something.
    folder = GENERATED / "negative"
    folder.mkdir(exist_ok=True)
    (folder / "tsconfig.json").write_text('{"extends": "../../tsconfig.json", "include": ["*.ts", "../api.d.ts"]}')
    program = textwrap.dedent("""\
        import createClient from "openapi-fetch";
        import type { components, paths } from "../api.js";
        const api = createClient<paths>({ baseUrl: "http://127.0.0.1:9/v1" });
        const room: components["schemas"]["NewRoom"] = {
          name: "n", description: "d", price: PRICE, recurrency: "daily", provider: "p",
          url: "https://example.com/1", monthly_price: 1, property_size: "1", coordinates: { lat: 1, lon: 2 },
        };
        export const created = api.POST("/rooms", { body: room });
        """)
    source = folder / "mistyped.ts"
    source.write_text(program.replace("PRICE", "650"))
    assert tsc("generated/negative/tsconfig.json").returncode == 0
    source.write_text(program.replace("PRICE", '"650"'))
    failed = tsc("generated/negative/tsconfig.json")
    assert failed.returncode != 0
    assert "mistyped.ts(5," in failed.stdout and "error TS2322: Type 'string' is not assignable to type 'number'" in failed.stdout


@pytest.fixture
def issuer() -> Iterator[TestIssuer]:
    with TestIssuer() as test_issuer:
        test_issuer.add_key("k1", "EC")
        yield test_issuer


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the tokens' path does not depend on it
def test_the_generated_client_works_with_bearer_tokens(typed_client, settings, issuer, engine):
    application = create_app(dataclasses.replace(settings, oauth=issuer.settings()))
    try:
        with LiveServer(application) as server:
            code, summary, stderr = run_script(
                "src/client/bearer.ts", ROOMS_URL=server.url, ROOMS_TOKEN=issuer.token(scope="rooms:write"),
                ROOMS_TOKEN_WITHOUT_SCOPE=issuer.token(scope="items:write"), ROOMS_TOKEN_EXPIRED=issuer.token(lifetime=-300))
    finally:
        dispose_app(application)
    assert summary["failures"] == [] and code == 0, stderr
    assert summary["statuses"] == {"create": 201, "read": 200, "without_scope": 403, "expired": 401, "delete": 204}
    assert summary["checks"] >= 9
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM rooms")).scalar_one() == 0
        # Created and deleted: two events, and nothing from the refused requests.
        assert connection.execute(sa.text("SELECT count(*) FROM events")).scalar_one() == 2


def test_the_generated_client_runs_the_room_scenario_against_the_live_service(typed_client, live_server, client,
                                                                              engine):
    code, summary, stderr = run_script("src/client/scenario.ts", ROOMS_URL=live_server.url, ROOMS_API_KEY=API_KEY)
    assert summary["failures"] == [] and code == 0, stderr
    assert summary["checks"] >= 45
    assert summary["statuses"] == {
        "create": 201, "read": 200, "patch": 200, "stale_patch": 412, "patch_as_json": 415, "search": 200,
        "invalid_body": 400, "invalid_query": 400, "invalid_id": 400, "without_key": 401, "unknown": 404,
        "duplicate": 409, "delete": 204, "after_delete": 404,
    }
    assert summary["problem_paths"] == {"body": ["$.coordinates.lat", "$.name", "$.price", "$.url"],
                                        "query": ["query.limit", "query.min_price"]}
    assert summary["page_sizes"] == [2, 2, 1]
    # What the script did, seen from this side: the deleted room is gone, the five it searched for are
    # stored with their prices, and the refused writes (400, 401, 409) stored nothing.
    assert client.get(f"/v1/rooms/{summary['deleted_id']}").status_code == 404
    page = client.get("/v1/rooms", params={"provider": summary["provider"], "sort": "price"}).json()
    assert [room["id"] for room in page["data"]] == summary["search_ids"]
    assert [room["price"] for room in page["data"]] == [100, 200, 300, 400, 500]
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM rooms")).scalar_one() == 5
        urls = connection.execute(sa.text("SELECT url FROM rooms")).scalars().all()
    assert summary["duplicate_url"] not in urls
