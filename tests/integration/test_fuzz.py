"""Property-based fuzz of the whole HTTP API from its OpenAPI document, on SQLite and on PostgreSQL.

Schemathesis generates requests from `swagger/openapi.yaml`, schema-valid and schema-violating ones, each
with a valid API key so that writes get past 401, and checks every response against the same document:
no 5xx, documented status codes, content types, headers and bodies, invalid input rejected, valid input
accepted, 401 without the key, 405 with `Allow` for undefined methods. One test fuzzes each operation on
its own; the other chains operations (create, then list, read, change and delete what was created) so the
success paths of the per-resource operations are reached too.

Requests go over real HTTP to the `live_server` fixture, so the checks that send extra requests (without
the key, without a required header, with another method) reach the same app and database. Examples are
derandomized: a failure reproduces on every run until this file or the spec changes.
"""

from __future__ import annotations

import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, settings

from contract.spec import load_spec
from tests.conftest import API_KEY

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "missing_required_header",
    "ignored_auth",
    "unsupported_method",
    "allow_header_conformance",
    "use_after_free",
    "ensure_resource_availability",
)

CONFIG = schemathesis.Config.from_dict(
    {
        # The key is not a generated parameter, so every request carries the valid one; `ignored_auth`
        # re-sends requests without it and expects 401.
        "auth": {"openapi": {"ApiKeyAuth": {"api_key": API_KEY}}},
        "generation": {"mode": "all", "with-security-parameters": False},
        # Chains of valid requests get past validation to the resources they create; invalid input is
        # the per-operation test's business.
        "phases": {"stateful": {"generation": {"mode": "positive"}}},
        "checks": {
            "enabled": False,
            **{name: {"enabled": True} for name in CHECKS},
            # An If-Match that names another version is refused with the documented 412; an If-None-Match
            # that names the current one (`*` does) is a 304; a generated Idempotency-Key that an earlier
            # example used with another body is the documented 422.
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "304", "401", "403", "404", "409", "412", "422"],
            },
        },
        "operations": [
            {
                # These rightly refuse some schema-valid input with 400: a cursor is opaque (only one the
                # service issued is accepted), `near` and `radius_km` go together and bound the latitude,
                # and a merge patch is judged by the merged room, which must be a valid NewRoom.
                "include-operation-id-regex": "^(search_.*|update_room)$",
                "checks": {"positive_data_acceptance": {"enabled": False}},
            }
        ],
    }
)

@schemathesis.serializer("application/avro")
def avro_bytes(_context, value) -> bytes:
    """Send a generated `format: binary` body as it is: arbitrary bytes that the service must refuse with 400."""
    return value if isinstance(value, bytes) else str(value).encode()


schema = schemathesis.openapi.from_dict(load_spec(), config=CONFIG)

FUZZ = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        # One server and database per operation and backend, shared by that operation's examples.
        HealthCheck.function_scoped_fixture,
    ],
)


def bound_long_poll(case) -> None:
    """Cap the feed's `wait` (up to 30 s is valid) so a generated long poll cannot outlast the client timeout."""
    if not case.query or "wait" not in case.query:
        return
    try:
        seconds = float(case.query["wait"])
    except (TypeError, ValueError):
        return  # not a number: the service must refuse it, which is worth checking as generated
    if 0.2 < seconds <= 30:
        case.query["wait"] = 0.2


@schema.parametrize()
@FUZZ
def test_each_operation_honours_the_contract(case, live_server):
    """Every generated request to one operation gets a response that the spec allows."""
    bound_long_poll(case)
    case.call_and_validate(base_url=f"{live_server.url}/v1")


def test_operation_sequences_honour_the_contract(live_server, engine):
    """Chains of operations over the resources they create get responses that the spec allows."""
    base_url = f"{live_server.url}/v1"
    metadata = sa.MetaData()
    metadata.reflect(engine)
    data_tables = [table for table in reversed(metadata.sorted_tables) if table.name != "alembic_version"]

    class Workflow(schema.as_state_machine()):
        def setup(self):
            # Each scenario starts from an empty database, so replaying one reproduces its responses.
            with engine.begin() as connection:
                for table in data_tables:
                    connection.execute(table.delete())

        def before_call(self, case):
            bound_long_poll(case)

        def get_call_kwargs(self, case):
            return {"base_url": base_url}

    Workflow.run(settings=settings(FUZZ, max_examples=25, stateful_step_count=6))
