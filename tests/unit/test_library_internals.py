"""Guards of the library internals the service relies on (docs/library-internals.md): each fails if an upgrade moves one.

The others are guarded where the behaviour they serve is tested; the document names each test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from functools import partial
from pathlib import Path

import fastavro
import orjson
import pytest
from connexion.exceptions import OAuthScopeProblem
from connexion.middleware.exceptions import ExceptionMiddleware
from connexion.middleware.main import ConnexionMiddleware
from connexion.middleware.response_validation import ResponseValidationMiddleware
from connexion.middleware.routing import RoutingMiddleware
from connexion.middleware.server_error import ServerErrorMiddleware
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from starlette.requests import Request

import app as app_module
from contract.avro import SCHEMAS_DIR, expanded_schema
from settings import Settings
from web.security import scope_refused

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _unwrapped(middleware):
    return middleware.func if isinstance(middleware, partial) else middleware


class _NoMetrics:
    pass


@pytest.mark.parametrize("validate_responses", [True, False])
def test_the_middleware_stack_is_connexions_default_list_with_ours_in_place(validate_responses):
    stack = [_unwrapped(m) for m in app_module.middleware_stack(Settings(validate_responses=validate_responses), _NoMetrics())]
    defaults = [m for m in ConnexionMiddleware.default_middlewares
                if validate_responses or m is not ResponseValidationMiddleware]
    # Every one of Connexion's, in Connexion's order: a middleware a release adds is in the stack too.
    assert [m for m in stack if m in ConnexionMiddleware.default_middlewares] == defaults
    assert stack[:3] == [app_module.RequestTelemetry, app_module.MetricsEndpoint, app_module.NoProtocolUpgrades]
    assert stack[stack.index(SwaggerUIMiddleware) - 1] is app_module.AuthoredAsyncApi
    assert stack[stack.index(RoutingMiddleware) - 1] is app_module.integer_path_parameters


def test_cors_when_configured_sits_in_front_of_connexions_stack_inside_the_telemetry():
    # In front of routing and security, so preflights are answered before them (web/cors.py); inside the
    # telemetry, so preflights get a request id and are counted.
    stack = [_unwrapped(m) for m in app_module.middleware_stack(Settings(cors_origins=("https://a.example",)), _NoMetrics())]
    assert stack[:4] == [app_module.RequestTelemetry, app_module.MetricsEndpoint, app_module.NoProtocolUpgrades, app_module.Cors]
    assert stack.index(app_module.Cors) < stack.index(ServerErrorMiddleware)
    assert app_module.Cors not in [_unwrapped(m) for m in app_module.middleware_stack(Settings(), _NoMetrics())]


def test_a_middleware_the_stack_is_placed_against_going_missing_stops_the_start(monkeypatch):
    without_swagger_ui = [m for m in ConnexionMiddleware.default_middlewares if m is not SwaggerUIMiddleware]
    monkeypatch.setattr(ConnexionMiddleware, "default_middlewares", without_swagger_ui)
    with pytest.raises(RuntimeError, match="SwaggerUIMiddleware"):
        app_module.middleware_stack(Settings(), _NoMetrics())


def test_fastavro_leaves_its_parsing_marks_out_when_asked():
    # contract/avro.py serves self-contained schema documents; fastavro marks what it parsed unless told
    # not to by the `_write_hint` keyword of load_schema and parse_schema.
    document = expanded_schema(SCHEMAS_DIR / "roomservice.Room.avsc")
    assert "__fastavro_parsed" not in orjson.dumps(document).decode()
    assert "__fastavro_parsed" in fastavro.parse_schema(dict(document), _write_hint=True)
    assert "__fastavro_parsed" not in fastavro.parse_schema(dict(document), _write_hint=False)


def test_connexions_common_error_handler_answers_a_500_problem():
    # web/availability.py hands the database errors that are not outages back to it.
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""})
    response = ExceptionMiddleware.common_error_handler(request, RuntimeError("a fault"))
    assert response.status_code == 500
    assert response.content_type == "application/problem+json"


def test_connexions_own_scope_refusal_gets_the_insufficient_scope_challenge():
    # web/security.py refuses a missing scope itself; should Connexion's check (OAuthSecurityHandler.check_oauth_func)
    # refuse first, its OAuthScopeProblem's `required_scopes` and `token_scopes` still make a 403 with the challenge.
    error = OAuthScopeProblem(token_scopes="items:write", required_scopes=["rooms:write"])
    response = asyncio.run(scope_refused(None, error))
    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="rooms", error="insufficient_scope"')
    assert 'scope="rooms:write"' in response.headers["WWW-Authenticate"]
    assert orjson.loads(response.body)["granted_scopes"] == ["items:write"]


def test_settings_stay_a_plain_dataclass():
    # app.create_app takes a Settings; tests and bench build variants with dataclasses.replace.
    assert dataclasses.replace(Settings(), speedups=False).speedups is False


def test_every_test_the_internals_list_names_exists():
    document = (PROJECT_ROOT / "docs" / "library-internals.md").read_text(encoding="utf-8")
    named = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?", document)
    assert len(named) > 10
    for path, function in named:
        source = (PROJECT_ROOT / path).read_text(encoding="utf-8")
        assert not function or re.search(rf"^def {function}\b", source, re.M), f"{path}::{function} is gone"
