"""Swagger UI, the OpenAPI spec and the AsyncAPI document are served offline, at the root and under /v1."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urljoin

import pytest
import yaml


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("prefix", ["", "/v1"])
def test_swagger_ui_is_served_offline_with_its_assets(client, prefix):
    page = client.get(f"{prefix}/ui/")
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert "/v1/openapi.json" in page.text
    assets = re.findall(r'(?:src|href)="\.?/?([^"#?]+\.(?:js|css))"', page.text)
    assert assets and not any(a.startswith("http") for a in assets)
    for asset in assets:
        assert client.get(f"{prefix}/ui/{asset}").status_code == 200, asset


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("path", ["/openapi.json", "/v1/openapi.json"])
def test_the_spec_is_served_as_json_with_its_server_url(client, path):
    spec = client.get(path).json()
    assert spec["openapi"].startswith("3.0") and spec["servers"] == [{"url": "/v1"}]
    assert {"create_room", "get_room", "update_room", "delete_room", "search_rooms"} <= {
        op["operationId"] for item in spec["paths"].values() for op in item.values() if isinstance(op, dict) and "operationId" in op
    }


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_spec_is_served_as_yaml(client):
    response = client.get("/openapi.yaml")
    assert response.status_code == 200
    assert yaml.safe_load(response.text)["paths"]["/rooms/{room_id}"]["get"]["operationId"] == "get_room"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_root_redirects_to_the_ui(client):
    response = client.get("/", follow_redirects=False)
    assert response.status_code in (302, 307) and response.headers["location"] == "/ui/"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("prefix", ["", "/v1"])
def test_the_spec_is_served_as_written_with_its_components_refs_and_key_order(client, prefix):
    source = (Path(__file__).resolve().parents[2] / "swagger" / "openapi.yaml").read_text(encoding="utf-8")
    served_yaml = client.get(f"{prefix}/openapi.yaml")
    assert served_yaml.text == source
    served = client.get(f"{prefix}/openapi.json")
    document = served.json()
    assert document == yaml.safe_load(source)
    assert list(document) == list(yaml.safe_load(source))  # source order: openapi, info, ..., components
    assert list(document)[0] == "openapi"
    assert {"Room", "NewRoom", "Problem"} <= set(document["components"]["schemas"])
    assert served.text.count('"$ref"') > 20


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_behind_a_proxy_the_served_spec_names_the_prefixed_server(app):
    from starlette.testclient import TestClient

    with TestClient(app, root_path="/rooms-api") as proxied:
        assert proxied.get("/openapi.json").json()["servers"] == [{"url": "/rooms-api/v1"}]
        assert yaml.safe_load(proxied.get("/openapi.yaml").text)["servers"] == [{"url": "/rooms-api/v1"}]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("prefix", ["", "/v1"])
def test_the_asyncapi_document_is_served_as_written_with_the_avro_schema_its_payload_refers_to(client, prefix):
    source = (Path(__file__).resolve().parents[2] / "swagger" / "asyncapi.yaml").read_text(encoding="utf-8")
    document = yaml.safe_load(source)
    served_yaml = client.get(f"{prefix}/asyncapi.yaml")
    assert served_yaml.status_code == 200 and served_yaml.text == source
    served_json = client.get(f"{prefix}/asyncapi.json")
    assert served_json.json() == document and list(served_json.json()) == list(document)
    # The payload's relative $ref, resolved against the URL the document came from, is the file itself.
    reference = document["components"]["messages"]["event"]["payload"]["schema"]["$ref"]
    for document_url in (served_yaml.url, served_json.url):
        schema = client.get(urljoin(str(document_url), reference))
        assert schema.status_code == 200, urljoin(str(document_url), reference)
        assert schema.content == (Path(__file__).resolve().parents[2] / "swagger" / reference).read_bytes()
        assert schema.json()["name"] == "Event"
