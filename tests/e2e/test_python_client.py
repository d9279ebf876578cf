"""A Python client generated (openapi-python-client) from the live server's /openapi.json drives the service.

The client is generated during the run, once per module, from the URL a user would point the generator at,
by the same code `make clients` runs. Every call below goes through the generated functions and models; the
assertions read what the generated code parsed, so a spec the generator misreads fails here.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from settings import Settings
from tests.conftest import API_KEY
from tests.support.factories import new_room
from tests.support.issuer import TestIssuer

ROOT = Path(__file__).resolve().parents[2]

# The generated client is spec-dependent only, so one backend is enough; PostgreSQL is the production one.
pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture(scope="module")
def issuer() -> Iterator[TestIssuer]:
    """The issuer whose tokens the live server accepts beside the API key."""
    with TestIssuer() as test_issuer:
        test_issuer.add_key("k1")
        yield test_issuer


@pytest.fixture
def settings(database_url: str, issuer: TestIssuer) -> Settings:
    """The suite's test settings, with the test issuer's bearer tokens accepted too."""
    return Settings(database_url=database_url, api_keys=frozenset({API_KEY}), validate_responses=True, pool_size=5,
                    oauth=issuer.settings())


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_python_client", ROOT / "scripts" / "generate_python_client.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generator = _load_generator()


class GeneratedClient:
    """The imported generated package, plus clients for one live server."""

    def __init__(self, package: ModuleType, source: Path) -> None:
        self.package = package
        self.source = source
        self.models = importlib.import_module(f"{package.__name__}.models")
        self.rooms = importlib.import_module(f"{package.__name__}.api.rooms")
        for operation in ("create_room", "get_room", "update_room", "delete_room", "search_rooms"):
            setattr(self, operation, importlib.import_module(f"{package.__name__}.api.rooms.{operation}"))
        self.base_url = ""

    def anonymous(self):
        """A generated Client without any key."""
        return self.package.Client(base_url=self.base_url, raise_on_unexpected_status=True)

    def with_token(self, token: str):
        """A generated AuthenticatedClient sending `Authorization: Bearer <token>`: its defaults, as the OAuth2 scheme says."""
        return self.package.AuthenticatedClient(base_url=self.base_url, token=token, raise_on_unexpected_status=True)

    def authenticated(self, key: str = API_KEY):
        """A generated AuthenticatedClient sending `key` in X-API-Key (no prefix), as the spec's ApiKeyAuth says."""
        return self.package.AuthenticatedClient(
            base_url=self.base_url, token=key, prefix="", auth_header_name="X-API-Key", raise_on_unexpected_status=True
        )


@pytest.fixture(scope="module")
def _generated_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Holds the generated package for the module; the first test to need it generates it from its live server."""
    state: dict = {}
    yield state
    if "project" in state:
        sys.path.remove(str(state["project"]))
        for name in [n for n in sys.modules if n == generator.PACKAGE or n.startswith(f"{generator.PACKAGE}.")]:
            del sys.modules[name]


@pytest.fixture
def gen(live_server, _generated_once: dict, tmp_path_factory: pytest.TempPathFactory) -> GeneratedClient:
    """The client generated from a live server's /openapi.json, pointed at this test's live server."""
    if "client" not in _generated_once:
        assert generator.PACKAGE not in sys.modules, "a stale generated package is already imported"
        project = tmp_path_factory.mktemp("python-client") / "project"
        package_dir = generator.generate(f"{live_server.url}/openapi.json", project)
        sys.path.insert(0, str(project))
        _generated_once["project"] = project
        importlib.invalidate_caches()
        _generated_once["client"] = GeneratedClient(importlib.import_module(generator.PACKAGE), package_dir)
    client: GeneratedClient = _generated_once["client"]
    assert Path(client.package.__file__).parent == client.source
    client.base_url = f"{live_server.url}/v1"  # the spec's `servers: [{url: /v1}]`
    return client


def _spec() -> dict:
    return yaml.safe_load((ROOT / "swagger" / "openapi.yaml").read_text())


def _typed_new_room(gen: GeneratedClient, **fields):
    """A NewRoom built from the generated model classes (not from a dict), with `fields` replaced."""
    m = gen.models
    values = dict(
        name="Sunny room in Kreuzberg",
        description="Bright room in a shared flat.",
        price=650,
        recurrency=m.Recurrency.MONTHLY,
        provider="wg-gesucht",
        url=f"https://example.com/listings/{uuid.uuid4()}",
        monthly_price=650,
        property_size="14 m²",
        coordinates=m.Coordinates(lat=52.4986, lon=13.4182),
        area=m.Area(name="Kreuzberg", country="Germany", city="Berlin"),
        images=[m.Image(url="https://example.com/listings/4711/1.jpg")],
    )
    values.update(fields)
    return m.NewRoom(**values)


def test_the_generated_client_has_the_contracts_names_and_every_operation(gen):
    spec = _spec()
    models = gen.models
    # Every component schema that is an object or enum is a model of the same name.
    for name in ("Room", "NewRoom", "RoomPatch", "RoomPage", "Problem", "Coordinates", "Area", "Image",
                 "Recurrency", "Item", "NewItem", "ItemPage", "Question", "NewQuestion", "QuestionPage"):
        assert name in spec["components"]["schemas"], name
        assert isinstance(getattr(models, name, None), type), f"no generated model {name}"
    # No anonymous model named after an operation's body or response (what an inlined spec would produce).
    derived = [n for n in models.__all__ if re.search(r"Response\d{3}|JsonBody|^UpdateRoomBody", n)]
    assert derived == []
    # One generated module per operation, under its tag, named by its operationId.
    package_dir = gen.source
    for item in spec["paths"].values():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                module = package_dir / "api" / operation["tags"][0] / f"{operation['operationId']}.py"
                assert module.is_file(), module


def test_a_room_lifecycle_through_the_generated_client(gen):
    models = gen.models
    with gen.authenticated() as client:
        created = gen.create_room.sync_detailed(client=client, body=_typed_new_room(gen, price=650))
        assert created.status_code == 201
        room = created.parsed
        assert isinstance(room, models.Room)
        assert room.name == "Sunny room in Kreuzberg" and room.price == 650 and room.is_visible is True
        assert room.recurrency is models.Recurrency.MONTHLY
        assert isinstance(room.id, uuid.UUID) and room.created_at.tzinfo is not None
        assert isinstance(room.area, models.Area) and room.area.city == "Berlin"
        assert created.headers["location"].endswith(f"/v1/rooms/{room.id}")
        first_tag = created.headers["etag"]

        read = gen.get_room.sync_detailed(room.id, client=client)
        assert read.status_code == 200 and isinstance(read.parsed, models.Room)
        assert read.parsed.to_dict() == room.to_dict() and read.headers["etag"] == first_tag

        # A merge patch with the ETag we read succeeds and changes only the named fields.
        patched = gen.update_room.sync_detailed(
            room.id, client=client, body=models.RoomPatch(price=700, monthly_price=700), if_match=first_tag
        )
        assert patched.status_code == 200 and isinstance(patched.parsed, models.Room)
        assert (patched.parsed.price, patched.parsed.monthly_price, patched.parsed.name) == (700, 700, room.name)
        second_tag = patched.headers["etag"]
        assert second_tag != first_tag

        # The first tag is stale now: 412 as a parsed Problem, and the room keeps the first patch.
        stale = gen.update_room.sync_detailed(room.id, client=client, body=models.RoomPatch(price=1), if_match=first_tag)
        assert stale.status_code == 412 and isinstance(stale.parsed, models.Problem)
        assert stale.parsed.status == 412 and stale.parsed.title == "Precondition Failed"
        assert gen.get_room.sync(room.id, client=client).price == 700

        # `null` in a merge patch removes the optional area.
        cleared = gen.update_room.sync_detailed(room.id, client=client, body=models.RoomPatch(area=None), if_match=second_tag)
        assert cleared.status_code == 200 and isinstance(cleared.parsed.area, gen.package.types.Unset)

        assert gen.delete_room.sync_detailed(room.id, client=client, if_match=second_tag).status_code == 412
        deleted = gen.delete_room.sync_detailed(room.id, client=client, if_match=cleared.headers["etag"])
        assert deleted.status_code == 204
        gone = gen.get_room.sync_detailed(room.id, client=client)
        assert gone.status_code == 404 and isinstance(gone.parsed, models.Problem) and gone.parsed.status == 404


def test_search_pages_are_followed_by_next_cursor(gen):
    models = gen.models
    city = f"Pagetown-{uuid.uuid4().hex[:8]}"
    with gen.authenticated() as client:
        created = []
        for price in (900, 100, 500, 300, 700, 200, 800):  # out of order, so `sort=price` has work to do
            body = models.NewRoom.from_dict(
                new_room(price=price, area={"name": "Centre", "country": "Germany", "city": city})
            )
            response = gen.create_room.sync_detailed(client=client, body=body)
            assert response.status_code == 201
            created.append(response.parsed)
        # A room elsewhere must not show up.
        assert gen.create_room.sync_detailed(client=client, body=models.NewRoom.from_dict(new_room())).status_code == 201

    pages, cursor = [], gen.package.types.UNSET
    with gen.anonymous() as reader:  # reads are public
        while True:
            page = gen.search_rooms.sync(client=reader, city=city, sort=models.SearchRoomsSort.PRICE, limit=3, cursor=cursor)
            assert isinstance(page, models.RoomPage)
            pages.append(page.data)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
            assert len(pages) < 10, "the cursor never ran out"
    assert [len(data) for data in pages] == [3, 3, 1]
    seen = [room.id for data in pages for room in data]
    assert seen == [room.id for room in sorted(created, key=lambda r: r.price)]
    assert all(isinstance(room, models.Room) for data in pages for room in data)


def test_error_paths_are_parsed_problems(gen):
    models = gen.models
    with gen.authenticated() as client:
        # 400 listing every failing field of the body, each with its JSON path.
        bad = _typed_new_room(
            gen, name="", price=-1, url="ftp://example.com/listing", coordinates=models.Coordinates(lat=91, lon=13)
        )
        response = gen.create_room.sync_detailed(client=client, body=bad)
        assert response.status_code == 400 and isinstance(response.parsed, models.Problem)
        problem = response.parsed
        assert problem.status == 400 and problem.title == "Bad Request"
        assert sorted(e.path for e in problem.errors) == ["$.coordinates.lat", "$.name", "$.price", "$.url"]
        assert all(isinstance(e, models.ProblemErrorsItem) and e.message for e in problem.errors)

        # 400 for parameters too, named `query.<name>`.
        response = gen.search_rooms.sync_detailed(client=client, limit=0, min_price=-5)
        assert response.status_code == 400 and isinstance(response.parsed, models.Problem)
        assert sorted(e.path for e in response.parsed.errors) == ["query.limit", "query.min_price"]

        # 404 for an unknown room.
        response = gen.get_room.sync_detailed(uuid.uuid4(), client=client)
        assert response.status_code == 404 and isinstance(response.parsed, models.Problem)
        assert response.parsed.status == 404

        # 409 for a second room with the same url, naming the stored one.
        first = gen.create_room.sync(client=client, body=_typed_new_room(gen, url="https://example.com/listings/dupe-1"))
        assert isinstance(first, models.Room)
        response = gen.create_room.sync_detailed(client=client, body=_typed_new_room(gen, url="https://example.com/listings/dupe-1"))
        assert response.status_code == 409 and isinstance(response.parsed, models.Problem)
        assert response.parsed.conflicting_id == str(first.id)

    # 401 without a key (the generated create_room is typed for an AuthenticatedClient; a plain Client sends
    # no key) and with a wrong one; nothing is stored either time.
    url = f"https://example.com/listings/{uuid.uuid4()}"
    with gen.anonymous() as anonymous:
        response = gen.create_room.sync_detailed(client=anonymous, body=_typed_new_room(gen, url=url))
        assert response.status_code == 401 and isinstance(response.parsed, models.Problem)
        assert response.parsed.status == 401
    with gen.authenticated("not-the-key") as wrong:
        response = gen.create_room.sync_detailed(client=wrong, body=_typed_new_room(gen, url=url))
        assert response.status_code == 401 and isinstance(response.parsed, models.Problem)
    with gen.authenticated() as client:
        # The url is still free, so neither attempt stored anything.
        assert gen.create_room.sync_detailed(client=client, body=_typed_new_room(gen, url=url)).status_code == 201


def test_bearer_tokens_through_the_generated_client(gen, issuer):
    models = gen.models
    with gen.with_token(issuer.token(scope="rooms:write")) as client:
        created = gen.create_room.sync_detailed(client=client, body=_typed_new_room(gen))
        assert created.status_code == 201 and isinstance(created.parsed, models.Room)
        room = created.parsed
        patched = gen.update_room.sync_detailed(room.id, client=client, body=models.RoomPatch(price=720))
        assert patched.status_code == 200 and patched.parsed.price == 720

    # A valid token without the scope: the documented 403, parsed as a Problem naming the scope.
    with gen.with_token(issuer.token(scope="items:write")) as narrow:
        refused = gen.delete_room.sync_detailed(room.id, client=narrow)
        assert refused.status_code == 403 and isinstance(refused.parsed, models.Problem)
        assert refused.parsed.required_scopes == ["rooms:write"] and refused.parsed.granted_scopes == ["items:write"]
        assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]

    # An expired token: 401, parsed, with the invalid_token challenge; the room is still there.
    with gen.with_token(issuer.token(lifetime=-300)) as expired:
        refused = gen.delete_room.sync_detailed(room.id, client=expired)
        assert refused.status_code == 401 and isinstance(refused.parsed, models.Problem)
        assert "expired" in refused.parsed.detail and 'error="invalid_token"' in refused.headers["www-authenticate"]

    with gen.with_token(issuer.token(scope="rooms:write")) as client:
        assert gen.get_room.sync(room.id, client=client).price == 720
        assert gen.delete_room.sync_detailed(room.id, client=client).status_code == 204
