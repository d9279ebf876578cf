"""The evolution rule: current schemas are FULL_TRANSITIVE compatible with every released version."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from contract.evolution import check, full_transitive_incompatibilities, main, release

ROOM_V1 = {
    "type": "record",
    "name": "Listing",
    "namespace": "test",
    "fields": [
        {"name": "id", "type": "string", "doc": "Id."},
        {"name": "price", "type": "long", "doc": "Price."},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["flat", "room", "house"]}, "doc": "Kind."},
    ],
}


def evolved(change) -> dict:
    schema = copy.deepcopy(ROOM_V1)
    change(schema)
    return schema


def problems_for(current: dict, *released: dict) -> list:
    return full_transitive_incompatibilities("test.Listing", current, list(enumerate(released, start=1)))


def test_the_services_schemas_are_compatible_with_their_history():
    assert check() == []


def test_an_added_optional_field_with_a_default_passes():
    current = evolved(lambda s: s["fields"].append({"name": "note", "type": ["null", "string"], "default": None}))
    assert problems_for(current, ROOM_V1) == []


def test_an_alias_makes_a_rename_backward_but_not_full_compatible():
    def rename(schema):
        schema["fields"][1] = {"name": "amount", "aliases": ["price"], "type": "long"}

    problems = problems_for(evolved(rename), ROOM_V1)
    # The current reader finds `price` through the alias; an old reader has no alias for `amount`.
    assert problems and {p.direction for p in problems} == {"old reader cannot read current writer"}


def test_a_removed_field_without_a_default_fails_naming_schema_version_and_field():
    current = evolved(lambda s: s["fields"].pop(1))
    problems = problems_for(current, ROOM_V1)
    assert problems and all(p.schema == "test.Listing" and p.version == 1 for p in problems)
    assert any("price" in (p.location + p.reason) for p in problems), [str(p) for p in problems]
    assert any(p.direction == "old reader cannot read current writer" for p in problems)


def test_a_renamed_field_without_an_alias_fails():
    def rename(schema):
        schema["fields"][1]["name"] = "amount"

    problems = problems_for(evolved(rename), ROOM_V1)
    assert any("amount" in (p.location + p.reason) or "price" in (p.location + p.reason) for p in problems)


def test_a_removed_enum_symbol_without_an_enum_default_fails():
    current = evolved(lambda s: s["fields"][2]["type"]["symbols"].remove("house"))
    problems = problems_for(current, ROOM_V1)
    assert any("house" in p.reason or "kind" in p.location for p in problems), [str(p) for p in problems]


def test_compatibility_is_transitive_over_every_released_version():
    v2 = evolved(lambda s: s["fields"].append({"name": "note", "type": ["null", "string"], "default": None}))
    # Dropping `note` again is fine against v2 (it has a default) and against v1 (never had it)...
    assert problems_for(ROOM_V1, ROOM_V1, v2) == []
    # ...but making `price` a string breaks against both releases.
    current = evolved(lambda s: s["fields"][1].update(type="string"))
    assert {p.version for p in problems_for(current, ROOM_V1, v2)} == {1, 2}


def test_the_command_line_checks_and_releases(tmp_path: Path, monkeypatch, capsys):
    schemas, history = tmp_path / "schemas", tmp_path / "schemas" / "history"
    schemas.mkdir()
    (schemas / "test.Listing.avsc").write_text(json.dumps(ROOM_V1))
    assert release(schemas, history) == ["test.Listing v1"]
    assert release(schemas, history) == []
    (schemas / "test.Listing.avsc").write_text(json.dumps(evolved(lambda s: s["fields"].pop(1))))
    problems = check(schemas, history)
    assert problems and "test.Listing v1" in str(problems[0])
    monkeypatch.setattr("contract.evolution.check", lambda: problems)
    assert main(["check"]) == 1
    assert "test.Listing v1" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["check"], []])
def test_the_command_line_passes_on_the_repository(command):
    assert main(command) == 0
