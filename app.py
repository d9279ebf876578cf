"""The app factory. `create_app(settings)` builds a Connexion app; `app` is built on first access for ASGI servers."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from functools import partial

import anyio.to_thread
import orjson
from connexion import AsyncApp
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
from injector import Injector, Module
from sqlalchemy import Engine

from composition import Contract, build_injector
from contract.avro import AvroSchemas
from settings import Settings
from web.avro_bodies import avro_body_validator
from web.contract import ContractRules, load_spec
from web.injection import InjectingResolver
from web.middleware import BodySizeLimit, ControlCharactersInPath, RootDocsAliases, SwaggerUIOnDocsPaths
from web.problems import register_problem_handlers
from web.security import api_key_security_map
from web.validation import validator_map

BASE_PATH = "/v1"


class _OrjsonModule:
    """The json-module interface Connexion's Jsonifier expects, backed by orjson."""

    @staticmethod
    def dumps(data, **_options) -> str:
        return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS).decode()

    @staticmethod
    def loads(data):
        return orjson.loads(data)


def create_app(settings: Settings | None = None, *, modules: Iterable[Module] = ()) -> AsyncApp:
    """Build the service: spec-driven routing and validation, injected handlers, one transaction per request."""
    settings = settings or Settings.from_env()
    _quiet_connexion_logger()
    spec = load_spec()
    contract = Contract(rules=ContractRules(spec), schemas=AvroSchemas())
    injector = build_injector(settings, contract, overrides=modules)

    app = AsyncApp(
        __name__,
        lifespan=_lifespan(settings, injector),
        middlewares=_middleware_stack(settings),
        jsonifier=Jsonifier(_OrjsonModule),
        validator_map=validator_map(avro_body=avro_body_validator(contract.schemas, contract.rules)),
        security_map=api_key_security_map(settings.api_keys),
    )
    app.add_api(
        spec,
        base_path=BASE_PATH,
        resolver=InjectingResolver(injector),
        strict_validation=True,
        validate_responses=settings.validate_responses,
        swagger_ui_options=SwaggerUIOptions(swagger_ui_config={"persistAuthorization": True}),
    )
    register_problem_handlers(app, spec, BASE_PATH)
    app.injector = injector
    return app


def _lifespan(settings: Settings, injector: Injector) -> Callable:
    """Set the handler thread pool's size when a server starts the app, close the pool's connections when it stops."""

    @asynccontextmanager
    async def lifespan(_app) -> AsyncIterator[None]:
        # Plain handlers run in anyio's worker threads (per event loop, so set from inside it).
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.handler_threads
        # Everything built so far (spec, validators, schemas, middleware) lives as long as the process.
        # Left to the collector, each full collection walked all of it: a 30-80 ms pause that was the
        # p99 of every scenario (bench/RESULTS.md). Frozen objects are never scanned again.
        gc.collect()
        gc.freeze()
        yield
        gc.unfreeze()
        injector.get(Engine).dispose()

    return lifespan


def _middleware_stack(settings: Settings) -> list:
    """Connexion's default middleware stack, outermost first, with ours in front of the docs and routing."""
    stack = [
        ServerErrorMiddleware,
        ExceptionMiddleware,
        ControlCharactersInPath,
        partial(BodySizeLimit, max_bytes=settings.max_body_bytes),
        partial(RootDocsAliases, base_path=BASE_PATH),
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


def dispose_app(app: AsyncApp) -> None:
    """Close the app's database connections (tests and embedding code call this on shutdown)."""
    app.injector.get(Engine).dispose()


def __getattr__(name: str):
    # PEP 562: `uvicorn app:app` gets an app built from the environment, while importing this
    # module (tests, tools) builds nothing.
    if name == "app":
        built = create_app()
        globals()["app"] = built
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
