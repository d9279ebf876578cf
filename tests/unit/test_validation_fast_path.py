"""The compiled pre-check in front of jsonschema (web/validation.py) never accepts what jsonschema refuses.

A request the pre-check accepts skips jsonschema, so a pre-check looser than jsonschema with our rules
would let invalid documents in. Documents are generated from each schema: mostly near-valid ones
(right shape, values around every bound, pattern matches with and without a trailing newline, nulls,
extra members), some arbitrary JSON. For each, acceptance by the pre-check must imply no jsonschema error.
"""

from __future__ import annotations

import pytest
from connexion.json_schema import resolve_refs
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from contract.spec import load_spec
from tests.support.factories import new_room
from web.speedups.precheck import FastPathValidator, prechecked_validator_for

SPEC = resolve_refs(load_spec())

TRICKY_STRINGS = [
    "", " ", "\n", "a\n", "\x00", "a\x00b", "\\u0000", "\u0085", "\u2028", "\u00a0", "\x1c", "\x7f", "é", "🏠",
    "monthly", "monthly\n", "Monthly", "12345", "12345\n", "52.5,13.4", "52.5,13.4\n",
    "https://example.com/a", "https://example.com/a\n", "HTTPS://EXAMPLE.COM", "https://exa mple.com/",
    "https://example.com/\x00", "https://example.com/\u0085", "https://example.com/\u2028", "ftp://example.com/x",
    "2026-11-21T12:00:00Z", "2026-11-21T12:00:00Z\n", "00000000-0000-0000-0000-000000000000",
]

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-3, 3).map(float),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(TRICKY_STRINGS), st.text(max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


def _near(schema: dict) -> st.SearchStrategy:
    """Values shaped by `schema`, valid or just outside it."""
    options: list[st.SearchStrategy] = []
    if "enum" in schema:
        options.append(st.sampled_from(schema["enum"]))
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        options.append(_objects(schema))
    if kind == "array":
        options.append(st.lists(_near(schema.get("items", {})), max_size=3))
    if kind == "string":
        low, high = schema.get("minLength", 0), min(schema.get("maxLength", 40), 40)
        options += [st.text(min_size=max(low - 1, 0), max_size=high + 1), st.sampled_from(TRICKY_STRINGS)]
        if "pattern" in schema:
            options.append(st.from_regex(schema["pattern"]))
            options.append(st.from_regex(schema["pattern"]).map(lambda s: s + "\n"))
        if "maxLength" in schema:
            options.append(st.just("x" * schema["maxLength"]) | st.just("x" * (schema["maxLength"] + 1)))
    if kind in ("integer", "number"):
        bounds = [schema[key] for key in ("minimum", "maximum") if key in schema]
        edges = [edge + delta for edge in bounds for delta in (-1, 0, 1)]
        options += [st.sampled_from(edges or [0]), st.sampled_from(edges or [0]).map(float), st.integers(-5, 5)]
        if kind == "number":
            options.append(st.floats(allow_nan=False, allow_infinity=False))
    if kind == "boolean":
        options.append(st.booleans())
    if schema.get("nullable"):
        options.append(st.none())
    return st.one_of(*options, json_values) if options else json_values


def _objects(schema: dict) -> st.SearchStrategy:
    properties = schema.get("properties", {})
    required = [name for name in schema.get("required", []) if name in properties]
    shaped = st.fixed_dictionaries(
        {name: _near(properties[name]) for name in required},
        optional={name: _near(sub) for name, sub in properties.items() if name not in required},
    )
    extras = st.one_of(st.just({}), st.just({}), st.dictionaries(st.sampled_from(["extra", "id", "\x00"]), json_values,
                                                                 max_size=1))
    dropped = st.one_of(st.just(None), st.just(None), st.sampled_from(required or [None]))
    return st.tuples(shaped, extras, dropped).map(
        lambda parts: {key: value for key, value in (parts[0] | parts[1]).items() if key != parts[2]}
    )


def request_schemas() -> list[tuple[str, dict]]:
    """Every JSON request body schema in the spec, and every component schema (ContractRules checks those)."""
    found = []
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict):
                continue
            for media_type, content in operation.get("requestBody", {}).get("content", {}).items():
                if "json" in media_type and "schema" in content:
                    found.append((f"{method.upper()} {path} {media_type}", content["schema"]))
    found += [(f"#/components/schemas/{name}", schema) for name, schema in SPEC["components"]["schemas"].items()]
    return found


SCHEMAS = request_schemas()


@pytest.mark.parametrize(("name", "schema"), SCHEMAS, ids=[name for name, _ in SCHEMAS])
def test_every_request_schema_gets_a_compiled_pre_check(name, schema):
    validator = prechecked_validator_for(schema)
    assert isinstance(validator, FastPathValidator)
    assert validator._precheck is not None, f"{name} would always take the slow path"


@pytest.mark.parametrize(("name", "schema"), SCHEMAS, ids=[name for name, _ in SCHEMAS])
def test_the_pre_check_never_accepts_what_jsonschema_refuses(name, schema):
    validator = prechecked_validator_for(schema)

    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    @given(document=_near(schema))
    @example(document=None)
    def check(document):
        if validator.precheck_passes(document):
            errors = [error.message for error in validator._full.iter_errors(document)]
            assert errors == [], f"the pre-check accepted {document!r} for {name}"

    check()


NEW_ROOM = SPEC["components"]["schemas"]["NewRoom"]


@pytest.mark.parametrize("document", [
    new_room(url="https://example.com/a\n"),
    new_room(name="a\x00b"),
    new_room(area={"name": "Mitte", "country": "Germany", "city": "Berlin\x00"}),
    new_room(price=500.0),
    new_room(price=True),
    new_room(price=-1),
    new_room(price=9007199254740992),
    new_room(recurrency="monthly\n"),
    new_room(recurrency=None) | {"recurrency": None},
    new_room(coordinates={"lat": 90.5, "lon": 0}),
    new_room(images=[{"url": "https://example.com/i.jpg", "alt": "extra"}]),
    new_room() | {"id": "set-by-the-server"},
    new_room(description=None) | {"description": None},
])
def test_documents_that_break_a_rule_are_refused_with_jsonschemas_errors(document):
    validator = prechecked_validator_for(NEW_ROOM)
    assert not validator.precheck_passes(document)
    assert list(validator.iter_errors(document))


def test_valid_rooms_pass_the_pre_check_alone():
    validator = prechecked_validator_for(NEW_ROOM)
    for document in (new_room(), new_room(is_visible=False, images=[{"url": "https://example.com/i.jpg"}]),
                     new_room(area=None), new_room(name="Zimmer in Köln 🏠", property_size="")):
        assert validator.precheck_passes(document), document
        assert list(validator.iter_errors(document)) == []
