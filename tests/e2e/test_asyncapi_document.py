"""The AsyncAPI document passes the AsyncAPI parser from npm, its Avro payload parsed by the Avro schema parser.

clients/typescript/src/asyncapi/validate.ts runs the parser; any diagnostic of severity error fails it,
and warnings are reported as pytest warnings. tsconfig.json type-checks it (tests/e2e/test_typescript_client.py).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from contract.spec import ASYNCAPI_PATH
from tests.support.node_tools import require_node, run_script

SCRIPT = "src/asyncapi/validate.ts"
DOCUMENT = yaml.safe_load(ASYNCAPI_PATH.read_text(encoding="utf-8"))
PAYLOAD = DOCUMENT["components"]["messages"]["event"]["payload"]
AVRO_SCHEMA = json.loads((ASYNCAPI_PATH.parent / PAYLOAD["schema"]["$ref"]).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def node() -> None:
    require_node()


def parse(*sources: str | Path) -> tuple[int, list[dict[str, Any]]]:
    """Run the parser on files or URLs (one Node process); return its exit code and each document's summary
    with its `errors`. Warnings are reported as pytest warnings."""
    code, summary, stderr = run_script(SCRIPT, ASYNCAPI=" ".join(map(str, sources)))
    assert code == 0 or summary["failures"], f"exit code {code} without a failure:\n{stderr}"
    documents = summary.get("documents", [])
    assert [d["source"] for d in documents] == list(map(str, sources)), summary
    for document in documents:
        for diagnostic in document["diagnostics"]:
            if diagnostic["severity"] == "warning":
                warnings.warn(f"AsyncAPI parser on {document['source']}: {diagnostic['code']} at "
                              f"/{diagnostic['path']}: {diagnostic['message']}", stacklevel=2)
        document["errors"] = [d for d in document["diagnostics"] if d["severity"] == "error"]
    return code, documents


def avro_fields_as_the_parser_reports_them() -> dict[str, Any]:
    """The payload the Avro schema parser makes of schemas/roomservice.Event.avsc: a record's fields, the
    required ones being those without a default and without null in their type."""
    fields = AVRO_SCHEMA["fields"]
    required = [f["name"] for f in fields
                if "default" not in f and not (isinstance(f["type"], list) and "null" in f["type"])]
    return {"schemaId": f"{AVRO_SCHEMA['namespace']}.{AVRO_SCHEMA['name']}", "type": "object",
            "properties": [f["name"] for f in fields], "required": required}


def test_the_asyncapi_document_parses_without_errors_and_its_payload_is_the_avro_schema_in_schemas(node):
    code, (summary,) = parse(ASYNCAPI_PATH)
    assert summary["errors"] == [] and code == 0, summary
    assert PAYLOAD["schemaFormat"] == "application/vnd.apache.avro;version=1.9.0"
    (message,) = summary["messages"]
    assert message["schemaFormat"] == PAYLOAD["schemaFormat"]
    assert message["payload"] == avro_fields_as_the_parser_reports_them()  # the $ref resolved, the Avro converted
    (channel,) = summary["channels"]
    assert channel["bindings"][0]["value"]["exchange"] == {
        "name": "rooms.events", "type": "topic", "durable": True, "autoDelete": False, "vhost": "/"}
    assert [(o["action"], o["channels"], o["messages"]) for o in summary["operations"]] == [
        ("send", [channel["id"]], [message["id"]])]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_served_asyncapi_document_resolves_its_avro_schema_from_the_service(node, live_server):
    code, documents = parse(live_server.url + "/v1/asyncapi.yaml", live_server.url + "/asyncapi.json")
    assert [d["errors"] for d in documents] == [[], []] and code == 0, documents
    for summary in documents:
        assert summary["messages"][0]["payload"] == avro_fields_as_the_parser_reports_them()


def copy_of_the_document(folder: Path, change) -> Path:
    """A changed copy of the document beside a copy of the Avro schema it refers to."""
    reference = PAYLOAD["schema"]["$ref"]
    document = json.loads(json.dumps(DOCUMENT))
    change(document)
    path = folder / "swagger" / "asyncapi.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    (path.parent / reference).resolve().parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ASYNCAPI_PATH.parent / reference, (path.parent / reference).resolve())
    return path


def test_errors_in_the_document_or_its_avro_payload_fail_the_check(node, tmp_path):
    def invalid_avro(document):
        document["components"]["messages"]["event"]["payload"]["schema"] = {
            "type": "record", "name": "Event", "fields": [{"name": "type", "type": "strnig"}]}

    def unknown_schema_format(document):
        document["components"]["messages"]["event"]["payload"]["schemaFormat"] = "application/x-protobuf"

    def dangling_channel(document):
        document["operations"]["publishEvent"]["channel"] = {"$ref": "#/channels/noSuchChannel"}

    code, (avro, unknown, dangling) = parse(*(copy_of_the_document(tmp_path / change.__name__, change)
                                              for change in (invalid_avro, unknown_schema_format, dangling_channel)))
    assert code == 1
    assert [e["message"] for e in avro["errors"]] == ["undefined type name: strnig"]  # the Avro schema parser's
    assert [e["message"] for e in unknown["errors"]] == ['No schema parser registered for "application/x-protobuf"']
    assert any("noSuchChannel" in e["message"] for e in dangling["errors"]), dangling  # the AsyncAPI parser's
