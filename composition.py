"""The composition root: which implementation serves each interface, decided in one place."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from flask_injector import request
from injector import Binder, Injector, Module, provider, singleton
from sqlalchemy import Engine

from contract.avro import AvroSchemas
from contract.rules import ContractRules
from observability.readiness import Readiness
from providers.availability import DatabaseOutages, Stopping
from providers.database import make_engine, migration_heads
from providers.events import EventFeed, Outbox, TraceContextSource
from providers.idempotency import IdempotencyStore
from providers.items import ItemsProvider
from providers.memory_events import InMemoryEvents
from providers.memory_idempotency import InMemoryIdempotencyStore
from providers.memory_items import InMemoryItemsProvider
from providers.memory_questions import InMemoryQuestionsProvider
from providers.memory_rooms import InMemoryRoomsProvider
from providers.questions import QuestionsProvider
from providers.rooms import RoomsProvider
from providers.sql_events import SqlEventFeed, SqlOutbox
from providers.sql_idempotency import SqlIdempotencyStore
from providers.sql_items import SqlItemsProvider
from providers.sql_questions import SqlQuestionsProvider
from providers.sql_rooms import SqlRoomsProvider
from rest.idempotency import IdempotentCreates
from rest.representation import Representer
from rest.request import RequestFacts
from settings import Settings
from web.injection import Factory
from web.request_facts import FlaskRequestFacts
from web.transactions import RequestTransaction, begin_request_transaction


@dataclass(frozen=True)
class Contract:
    """The contracts loaded once at start-up: the OpenAPI rules, the Avro schemas, the migrations' head."""

    rules: ContractRules
    schemas: AvroSchemas
    migration_heads: frozenset[str] = field(default_factory=migration_heads)


class ConfigModule(Module):
    """Binds the settings and the loaded contracts."""

    def __init__(self, settings: Settings, contract: Contract) -> None:
        self._settings = settings
        self._contract = contract

    def configure(self, binder: Binder) -> None:
        binder.bind(Settings, to=self._settings)
        binder.bind(ContractRules, to=self._contract.rules)
        binder.bind(AvroSchemas, to=self._contract.schemas)
        # One instance each, reading the request being handled (Flask's request is local to it).
        request = FlaskRequestFacts()
        binder.bind(RequestFacts, to=request)
        binder.bind(Representer, to=Representer(self._contract.schemas, request))


class DatabaseModule(Module):
    """One engine per process; per request, one transaction (ended by web.transactions) whose connection opens on first use.

    A Core connection rather than an ORM Session: the providers run Core statements only, and the
    Session's unit of work around them cost about 60 µs a request (bench/RESULTS.md, tuning log).
    """

    @singleton
    @provider
    def engine(self, settings: Settings) -> Engine:
        return make_engine(
            settings.database_url,
            pool_size=settings.pool_size,
            pool_recycle=settings.pool_recycle_seconds,
            pre_ping=settings.pool_pre_ping,
            connect_timeout=settings.db_connect_timeout_seconds,
            sqlite_lock_timeout=settings.sqlite_lock_timeout_seconds,
        )

    def configure(self, binder: Binder) -> None:
        binder.bind(RequestTransaction, to=Factory(lambda injector: begin_request_transaction(injector.get(Engine))), scope=request)


class SqlProvidersModule(Module):
    """The real providers, on the request's connection; every change also lands in the outbox (with `trace_context`'s context)."""

    def __init__(self, trace_context: TraceContextSource | None = None) -> None:
        self._trace_context = trace_context

    def configure(self, binder: Binder) -> None:
        trace_context = self._trace_context

        def on_transaction(provider_class):
            return Factory(lambda injector: provider_class(injector.get(RequestTransaction).connection, injector.get(Outbox)))

        outbox: Factory[Outbox] = Factory(lambda injector: SqlOutbox(injector.get(RequestTransaction).connection, injector.get(AvroSchemas),
                                                                    trace_context))
        binder.bind(Outbox, to=outbox, scope=request)
        rooms: Factory[RoomsProvider] = Factory(lambda injector: SqlRoomsProvider(
            injector.get(RequestTransaction).connection, injector.get(Outbox), max_page_bytes=injector.get(Settings).max_page_bytes))
        binder.bind(RoomsProvider, to=rooms, scope=request)
        binder.bind(ItemsProvider, to=on_transaction(SqlItemsProvider), scope=request)
        binder.bind(QuestionsProvider, to=on_transaction(SqlQuestionsProvider), scope=request)
        idempotency_store: Factory[IdempotencyStore] = Factory(lambda injector: SqlIdempotencyStore(injector.get(RequestTransaction).connection))
        binder.bind(IdempotencyStore, to=idempotency_store, scope=request)

    @singleton
    @provider
    def event_feed(self, engine: Engine, stopping: Stopping, settings: Settings) -> EventFeed:
        return SqlEventFeed(engine, stopping, max_page_bytes=settings.max_page_bytes)


class AvailabilityModule(Module):
    """Per process: the stopping signal, the log of database outages, and the readiness check."""

    def __init__(self, heads: frozenset[str]) -> None:
        self._heads = heads

    def configure(self, binder: Binder) -> None:
        binder.bind(Stopping, to=Stopping())
        binder.bind(DatabaseOutages, to=DatabaseOutages())

    @singleton
    @provider
    def readiness(self, settings: Settings, outages: DatabaseOutages, stopping: Stopping) -> Readiness:
        return Readiness(
            settings.database_url, self._heads,
            timeout_seconds=settings.ready_timeout_seconds, outages=outages, stopping=stopping,
        )


class InMemoryProvidersModule(Module):
    """In-memory providers for unit tests; list it after the defaults to override them."""

    def __init__(self, schemas: AvroSchemas | None = None, trace_context: TraceContextSource | None = None) -> None:
        self.events = InMemoryEvents(schemas or AvroSchemas(), trace_context)
        self.rooms = InMemoryRoomsProvider(self.events)
        self.items = InMemoryItemsProvider(self.events)
        self.questions = InMemoryQuestionsProvider(self.events)
        self.idempotency = InMemoryIdempotencyStore()

    def configure(self, binder: Binder) -> None:
        binder.bind(Outbox, to=self.events)
        binder.bind(EventFeed, to=self.events)
        binder.bind(RoomsProvider, to=self.rooms)
        binder.bind(ItemsProvider, to=self.items)
        binder.bind(QuestionsProvider, to=self.questions)
        binder.bind(IdempotencyStore, to=self.idempotency)


class IdempotencyModule(Module):
    """Idempotent creates: one guard per process, which asks for the request's key store only when a key is sent."""

    def __init__(self, settings: Settings, schemas: AvroSchemas) -> None:
        self._settings = settings
        self._schemas = schemas

    def configure(self, binder: Binder) -> None:
        # Built here, once, and bound as an instance: every create asks for it, and an instance binding's
        # look-up skips the singleton scope's cache and its second acquisition of injector's lock.
        injector = binder.injector
        guard = IdempotentCreates(lambda: injector.get(IdempotencyStore), self._schemas,
                                  self._settings.idempotency_ttl_seconds, FlaskRequestFacts())
        binder.bind(IdempotentCreates, to=guard)


def build_injector(settings: Settings, contract: Contract, overrides: Iterable[Module] = (),
                   trace_context: TraceContextSource | None = None) -> Injector:
    """Return the injector for one app; modules in `overrides` replace earlier bindings; events record `trace_context`'s context."""
    return Injector([
        ConfigModule(settings, contract), DatabaseModule(), SqlProvidersModule(trace_context),
        AvailabilityModule(contract.migration_heads), IdempotencyModule(settings, contract.schemas), *overrides,
    ])
