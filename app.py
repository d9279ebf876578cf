"""The app factory. `create_app(settings)` builds a Connexion FlaskApp; `app` is built on first access for ASGI servers.

What `create_app` returns can still be extended before it serves, through the public APIs of the parts:
`app.add_middleware(...)` and `app.add_error_handler(...)` (Connexion), hooks and extensions on `app.app`
(Flask), bindings through `modules=` (injector). docs/architecture.md shows each.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from functools import partial

from connexion.middleware.main import ConnexionMiddleware
from connexion.middleware.response_validation import ResponseValidationMiddleware
from connexion.middleware.routing import RoutingMiddleware
from connexion.middleware.server_error import ServerErrorMiddleware
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from connexion.options import SwaggerUIOptions
from flask import Flask
from flask_injector import FlaskInjector
from injector import Injector, Module
from sqlalchemy import Engine

from composition import Contract, build_injector
from contract.avro import AvroSchemas
from contract.avro_bounds import AvroLimits
from contract.limits import InputLimits
from contract.rules import ContractRules, validator_for
from contract.spec import ASYNCAPI_PATH, SPEC_PATH, load_spec, with_path_parameters_in_operations
from observability.metrics import MetricsEndpoint, ServiceMetrics
from observability.readiness import Readiness
from observability.telemetry import RequestTelemetry, install_request_id_in_g
from observability.tracing import Tracing, operation_routes, process_tracing
from providers.availability import DatabaseOutages, Stopping
from providers.database import pool_capacity
from settings import Settings
from web.availability import register_availability_handlers, stopping_on_signals
from web.avro_bodies import avro_body_validator
from web.cors import Cors, spec_methods
from web.docs import AuthoredAsyncApi, AuthoredSpec, RootDocsAliases
from web.framing import NoProtocolUpgrades, RequestFraming, UnroutablePaths
from web.injection import InjectingResolver
from web.problems import register_problem_handlers
from web.routing import integer_path_parameters
from web.security import BearerTokens, register_security_problem_handlers, security_map
from web.service_app import ServiceApp
from web.speedups import Speedups
from web.speedups.injection import inject_with_bindings_read_once
from web.speedups.json import orjson_jsonifier
from web.speedups.precheck import prechecked_validator_for
from web.transactions import install_transaction_boundary
from web.validation import validator_map

BASE_PATH = "/v1"


SERVICE_NAME = "rooms-service"
"""OpenTelemetry's service.name of the service's spans unless OTEL_SERVICE_NAME says otherwise."""


def create_app(settings: Settings | None = None, *, modules: Iterable[Module] = (),
               speedups: Speedups | None = None, tracing: Tracing | None = None) -> ServiceApp:
    """Build the service: spec-driven routing and validation, injected handlers, one transaction per request.

    `modules` are injector modules whose bindings replace the defaults (tests swap in fakes this way);
    `speedups` overrides APP_SPEEDUPS (bench/paired.py turns them off one at a time); with `tracing`, each
    request, its statements and its events are traced (observability/tracing.py; the `app` servers import
    gets the process's tracing from the OTEL_* variables, off by default).
    """
    settings = settings or Settings.from_env()
    speedups = speedups or Speedups.switched(settings.speedups)
    _quiet_connexion_logger()
    spec = load_spec()
    limits = InputLimits(max_json_depth=settings.max_json_depth, max_json_values=settings.max_json_values,
                         max_problem_errors=settings.max_problem_errors)
    request_validators = prechecked_validator_for if speedups.validation_precheck else validator_for
    rules = ContractRules(spec, limits, request_validators)
    contract = Contract(rules=rules, schemas=AvroSchemas(limits=avro_limits(settings)))
    injector = build_injector(settings, contract, overrides=modules,
                              trace_context=tracing.trace_context if tracing is not None else None)
    metrics = ServiceMetrics(injector.get(Engine), settings.database_url, pool_capacity(settings.pool_size))
    if tracing is not None:
        tracing.instrument_engine(injector.get(Engine))
    bearer = BearerTokens(settings.oauth)

    built: list[ServiceApp] = []  # the lifespan needs the app's threads, and the app its lifespan
    app = ServiceApp(
        __name__,
        threads=settings.handler_threads,
        speedups=speedups,
        lifespan=_lifespan(lambda: built[0], injector, metrics, speedups, tracing, bearer),
        middlewares=middleware_stack(settings, metrics, spec, tracing),
        validator_map=validator_map(limits, avro_body_validator(contract.schemas, rules), request_validators),
        security_map=security_map(settings.api_keys, bearer),
        **({"jsonifier": orjson_jsonifier()} if speedups.orjson else {}),
    )
    built.append(app)
    FlaskInjector(app=app.app, injector=injector)
    # After FlaskInjector: it wraps every annotated hook it finds for injection (a signature inspection
    # per call), and these need none. Its request-scope cleanup still runs after them.
    install_transaction_boundary(app.app, injector.get(DatabaseOutages))
    install_request_id_in_g(app.app)
    app.add_api(
        with_path_parameters_in_operations(spec),
        base_path=BASE_PATH,
        resolver=InjectingResolver(injector, inject_with_bindings_read_once if speedups.bindings_once else None),
        strict_validation=True,
        validate_responses=settings.validate_responses,
        # The spec itself is served as written by AuthoredSpec (web/docs.py).
        swagger_ui_options=SwaggerUIOptions(serve_spec=False, swagger_ui_config={"persistAuthorization": True}),
    )
    register_problem_handlers(app, spec, BASE_PATH)
    register_security_problem_handlers(app)
    register_availability_handlers(app, injector.get(DatabaseOutages), settings.retry_after_seconds)
    app.injector = injector
    app.metrics = metrics
    app.bearer_tokens = bearer
    return app


def middleware_stack(settings: Settings, metrics: ServiceMetrics, spec: dict | None = None,
                     tracing: Tracing | None = None) -> list:
    """Connexion's own default middleware list (`ConnexionMiddleware.default_middlewares`), with ours in place.

    In front of all of it (so every answer is counted and carries its request id, also Connexion's own
    problems): the telemetry, /metrics (an operator's endpoint, not part of the API, answered from the
    event loop even while every handler thread is busy) and the refusal of protocol upgrades; with
    `tracing`, the server span in front of those, so the access log line carries its trace id; then CORS
    when origins are configured (web/cors.py: preflights answered before routing and security, and every
    answer, Connexion's 500 and the docs' routes too, carries its headers). In front of
    Swagger UI: the request's framing and the docs' routes; in front of routing, the `int` path convertor
    registered in Connexion's stead (web/routing.py). A middleware a Connexion release adds to its
    list is in the stack without a change here; one this list is placed against going missing stops the
    start.
    """
    outermost = [
        *(tracing.server_middleware(operation_routes(spec or load_spec(), BASE_PATH)) if tracing is not None else ()),
        partial(RequestTelemetry, access_log=settings.access_log),
        partial(MetricsEndpoint, metrics=metrics),
        NoProtocolUpgrades,
    ]
    if settings.cors_origins:
        outermost.append(partial(Cors, origins=settings.cors_origins, methods=spec_methods(spec or load_spec())))
    before_docs = [
        UnroutablePaths,
        partial(RequestFraming, max_bytes=settings.max_body_bytes),
        partial(RootDocsAliases, base_path=BASE_PATH),
        partial(AuthoredSpec, spec_path=SPEC_PATH, base_path=BASE_PATH,
                token_url=settings.oauth.token_url if settings.oauth else None),
        partial(AuthoredAsyncApi, document_path=ASYNCAPI_PATH, base_path=BASE_PATH),
    ]
    stack = list(ConnexionMiddleware.default_middlewares)
    _insert_before(stack, ServerErrorMiddleware, outermost)
    _insert_before(stack, SwaggerUIMiddleware, before_docs)
    _insert_before(stack, RoutingMiddleware, [integer_path_parameters])
    if not settings.validate_responses:
        # With validation off it only passes every request and response through.
        stack.remove(ResponseValidationMiddleware)
    return stack


def _insert_before(stack: list, anchor: type, middleware: list) -> None:
    if anchor not in stack:
        raise RuntimeError(f"Connexion's default middleware list no longer has {anchor.__name__}; see app.middleware_stack")
    position = stack.index(anchor)
    stack[position:position] = middleware


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
    service = create_app()
    # Connexion registers the spec's routes on the Flask app when it builds its middleware stack, which a
    # server does at start-up (the lifespan) and a test client at the first request; the CLI does neither.
    middleware = service.middleware
    middleware.app, middleware.middleware_stack = middleware._build_middleware_stack()
    flask: Flask = service.app
    return flask


def _lifespan(app: Callable[[], ServiceApp], injector: Injector, metrics: ServiceMetrics, speedups: Speedups,
              tracing: Tracing | None, bearer: BearerTokens) -> Callable:
    """Prepare the process when a server starts the app; release its threads and connections when it stops."""

    @asynccontextmanager
    async def lifespan(_app) -> AsyncIterator[None]:
        if speedups.gc_freeze:
            # Everything built so far (spec, validators, schemas, middleware) lives as long as the process.
            # Left to the collector, each full collection walked all of it: a 30-80 ms pause that was the
            # p99 of every scenario (bench/RESULTS.md). Frozen objects are never scanned again.
            gc.collect()
            gc.freeze()
        bearer.start()  # the issuer's keys, fetched in the background
        stopping = injector.get(Stopping)
        # Set at the stop signal, so long polls answer at once and the requests in flight can finish.
        with stopping_on_signals(stopping):
            yield
        stopping.set()
        if speedups.gc_freeze:
            gc.unfreeze()
        app().handler_threads.shutdown(wait=True)
        _close_databases(injector)
        metrics.close()
        if tracing is not None:
            tracing.force_flush()  # the last requests' spans, before the worker exits

    return lifespan


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
        built = create_app(tracing=process_tracing(SERVICE_NAME))
        globals()["app"] = built
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
