"""The app factory. `create_app(settings)` builds a Connexion FlaskApp; `app` is built on first access for ASGI servers."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial

import orjson
from connexion import FlaskApp
from connexion.jsonifier import Jsonifier
from connexion.middleware.context import ContextMiddleware
from connexion.middleware.exceptions import ExceptionMiddleware
from connexion.middleware.lifespan import LifespanMiddleware
from connexion.middleware.request_validation import RequestValidationMiddleware
from connexion.middleware.response_validation import ResponseValidationMiddleware
from connexion.middleware.routing import RoutingMiddleware
from connexion.middleware.security import SecurityMiddleware
from connexion.middleware.server_error import ServerErrorMiddleware
from connexion.options import SwaggerUIOptions
from flask import Flask
from flask_injector import FlaskInjector
from injector import Injector, Module
from sqlalchemy import Engine

from composition import Contract, build_injector
from contract.avro import AvroSchemas
from contract.avro_bounds import AvroLimits
from contract.spec import ASYNCAPI_PATH, SPEC_PATH, ContractRules, load_spec, with_path_parameters_in_operations
from observability.metrics import MetricsEndpoint, ServiceMetrics
from observability.telemetry import RequestTelemetry, install_request_id_in_g
from providers.availability import DatabaseOutages, Readiness, Stopping
from settings import Settings
from web.availability import register_availability_handlers, stopping_on_signals
from web.avro_bodies import avro_body_validator
from web.injection import InjectingResolver
from web.middleware import (
    AuthoredAsyncApi,
    AuthoredSpec,
    ControlCharactersInPath,
    NoProtocolUpgrades,
    RequestFraming,
    RootDocsAliases,
    SwaggerUIOnDocsPaths,
)
from web.problems import register_problem_handlers
from web.security import api_key_security_map
from web.service_app import ServiceApp
from web.transactions import install_transaction_boundary
from web.validation import InputLimits, validator_map

BASE_PATH = "/v1"


class _OrjsonModule:
    """The json-module interface Connexion's Jsonifier expects, backed by orjson."""

    @staticmethod
    def dumps(data, **_options) -> str:
        return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS).decode()

    @staticmethod
    def loads(data):
        return orjson.loads(data)


def create_app(settings: Settings | None = None, *, modules: Iterable[Module] = ()) -> ServiceApp:
    """Build the service: spec-driven routing and validation, injected handlers, one transaction per request."""
    settings = settings or Settings.from_env()
    _quiet_connexion_logger()
    spec = load_spec()
    limits = InputLimits(max_json_depth=settings.max_json_depth, max_json_values=settings.max_json_values,
                         max_problem_errors=settings.max_problem_errors)
    contract = Contract(rules=ContractRules(spec, limits), schemas=AvroSchemas(limits=avro_limits(settings)))
    injector = build_injector(settings, contract, overrides=modules)
    # Handlers block on the database, so Flask runs in these threads, not on the event loop (they start on use).
    handler_threads = ThreadPoolExecutor(max_workers=settings.handler_threads, thread_name_prefix="handler")
    metrics = ServiceMetrics(injector.get(Engine), settings.database_url)

    app = ServiceApp(
        __name__,
        handler_threads=handler_threads,
        lifespan=_lifespan(injector, handler_threads, metrics),
        middlewares=[*_observability_middleware(settings, metrics), NoProtocolUpgrades, *_middleware_stack(settings)],
        jsonifier=Jsonifier(_OrjsonModule),
        validator_map=validator_map(limits, avro_body=avro_body_validator(contract.schemas, contract.rules)),
        security_map=api_key_security_map(settings.api_keys),
    )
    FlaskInjector(app=app.app, injector=injector)
    # After FlaskInjector: it wraps every annotated hook it finds for injection (a signature inspection
    # per call), and these need none. Its request-scope cleanup still runs after them.
    install_transaction_boundary(app.app, injector.get(DatabaseOutages))
    install_request_id_in_g(app.app)
    app.add_api(
        with_path_parameters_in_operations(spec),
        base_path=BASE_PATH,
        resolver=InjectingResolver(injector),
        strict_validation=True,
        validate_responses=settings.validate_responses,
        # The spec itself is served as written by AuthoredSpec (web/middleware.py).
        swagger_ui_options=SwaggerUIOptions(serve_spec=False, swagger_ui_config={"persistAuthorization": True}),
    )
    register_problem_handlers(app, spec, BASE_PATH)
    register_availability_handlers(app, injector.get(DatabaseOutages), settings.retry_after_seconds)
    _register_routes_now(app)
    app.injector = injector
    app.metrics = metrics
    return app


def avro_limits(settings: Settings) -> AvroLimits:
    """Return the limits on Avro bodies from the settings (decoded bytes default to the body size limit)."""
    return AvroLimits(
        max_depth=settings.avro_max_depth,
        max_values=settings.avro_max_values,
        max_schema_bytes=settings.avro_max_schema_bytes,
        max_decoded_bytes=settings.avro_max_decoded_bytes or settings.max_body_bytes,
    )


def flask_app() -> Flask:
    """Return the Flask app of a service built from the environment, for Flask's CLI (`flask --app app:flask_app routes`)."""
    return create_app().app


def _register_routes_now(app: FlaskApp) -> None:
    # Connexion builds its middleware stack, and registers the spec's routes on the Flask app, on the
    # first request. Built here instead, a mistake in the spec (an unknown operationId) stops the start
    # rather than the first request, and Flask's CLI (`flask routes`) sees every operation.
    middleware = app.middleware
    middleware.app, middleware.middleware_stack = middleware._build_middleware_stack()


def _lifespan(injector: Injector, handler_threads: ThreadPoolExecutor, metrics: ServiceMetrics) -> Callable:
    """Prepare the process when a server starts the app; release its threads and connections when it stops."""

    @asynccontextmanager
    async def lifespan(_app) -> AsyncIterator[None]:
        # Everything built so far (spec, validators, schemas, middleware) lives as long as the process.
        # Left to the collector, each full collection walked all of it: a 30-80 ms pause that was the
        # p99 of every scenario (bench/RESULTS.md). Frozen objects are never scanned again.
        gc.collect()
        gc.freeze()
        stopping = injector.get(Stopping)
        # Set at the stop signal, so long polls answer at once and the requests in flight can finish.
        with stopping_on_signals(stopping):
            yield
        stopping.set()
        gc.unfreeze()
        handler_threads.shutdown(wait=True)
        _close_databases(injector)
        metrics.close()

    return lifespan


def _observability_middleware(settings: Settings, metrics: ServiceMetrics) -> list:
    """The middleware in front of Connexion's stack: request ids, request metrics and the access log; /metrics.

    In front of ServerErrorMiddleware, so every answer is counted and carries the request id, including
    Connexion's own problems (security, validation, routing, 500s). /metrics is served here rather than
    from the spec: it is an operator's endpoint in Prometheus' text format, not part of the API clients
    are generated from, and it answers from the event loop even while every handler thread is busy.
    """
    return [
        partial(RequestTelemetry, access_log=settings.access_log),
        partial(MetricsEndpoint, metrics=metrics),
    ]


def _middleware_stack(settings: Settings) -> list:
    """Connexion's default middleware stack, outermost first, with ours in front of the docs and routing."""
    stack = [
        ServerErrorMiddleware,
        ExceptionMiddleware,
        ControlCharactersInPath,
        partial(RequestFraming, max_bytes=settings.max_body_bytes),
        partial(RootDocsAliases, base_path=BASE_PATH),
        partial(AuthoredSpec, spec_path=SPEC_PATH, base_path=BASE_PATH),
        partial(AuthoredAsyncApi, document_path=ASYNCAPI_PATH, base_path=BASE_PATH),
        partial(SwaggerUIOnDocsPaths, base_path=BASE_PATH),
        RoutingMiddleware,
        SecurityMiddleware,
        RequestValidationMiddleware,
        ResponseValidationMiddleware,
        LifespanMiddleware,
        ContextMiddleware,
    ]
    if not settings.validate_responses:
        # With validation off it only passes every request and response through.
        stack.remove(ResponseValidationMiddleware)
    return stack


def _quiet_connexion_logger() -> None:
    # This logger's one warning ("this operation accepts multiple content types") fires several times
    # per request to every operation that accepts JSON and Avro, which is by design here. A filter
    # would still build each record (about 4 % of a POST's Python calls); a level never does.
    logging.getLogger("connexion.operations.openapi3").setLevel(logging.ERROR)


def dispose_app(app: ServiceApp) -> None:
    """Stop the app's handler threads and close its database connections (for tests and embedding code)."""
    app.injector.get(Stopping).set()
    app.handler_threads.shutdown(wait=True)
    _close_databases(app.injector)
    app.metrics.close()


def _close_databases(injector: Injector) -> None:
    injector.get(Engine).dispose()
    injector.get(Readiness).dispose()


def __getattr__(name: str):
    # PEP 562: `uvicorn app:app` gets an app built from the environment, while importing this
    # module (tests, tools) builds nothing.
    if name == "app":
        built = create_app()
        globals()["app"] = built
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
