"""Tracing for tests: the service's Tracing on a tracer provider whose spans are kept in memory, and a caller's context."""

from __future__ import annotations

import os
import re

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from observability.tracing import Tracing

TRACEPARENT = re.compile(r"00-(?P<trace_id>[0-9a-f]{32})-(?P<parent_id>[0-9a-f]{16})-(?P<flags>[0-9a-f]{2})")


class CapturedSpans:
    """A Tracing whose spans are exported, as each ends, to a list the test reads."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracing = Tracing(provider)

    def finished(self) -> list[ReadableSpan]:
        """Every span ended so far, in the order they ended."""
        return list(self.exporter.get_finished_spans())

    def server_spans(self) -> list[ReadableSpan]:
        """The server spans ended so far: one per traced request."""
        return [span for span in self.finished() if span.kind is SpanKind.SERVER]

    def children_of(self, parent: ReadableSpan) -> list[ReadableSpan]:
        """The spans whose parent is `parent`."""
        return [span for span in self.finished() if span.parent is not None and span.parent.span_id == parent.context.span_id]


def trace_id(span: ReadableSpan) -> str:
    """The span's trace id as 32 hex digits, as a traceparent writes it."""
    return f"{span.context.trace_id:032x}"


def span_id(span: ReadableSpan) -> str:
    """The span's id as 16 hex digits, as a traceparent writes it."""
    return f"{span.context.span_id:016x}"


def traceparent_of(span: ReadableSpan) -> str:
    """The W3C traceparent naming `span` as the parent, with its flags (sampled; the SDK's new traces are also random, 02)."""
    return f"00-{trace_id(span)}-{span_id(span)}-{int(span.context.trace_flags):02x}"


def caller_context() -> tuple[str, str, str]:
    """A caller's new trace: (traceparent, its trace id, its span id), sampled."""
    trace, parent = os.urandom(16).hex(), os.urandom(8).hex()
    return f"00-{trace}-{parent}-01", trace, parent
