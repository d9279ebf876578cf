"""Logging for serve.py and relay.py: human-readable lines, or one JSON object a line (APP_LOG_FORMAT=json)."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from opentelemetry.trace import get_current_span

from observability.request_ids import current_request

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s%(trace)s] %(message)s"
# Members an access-log record carries (observability.telemetry) and a JSON line repeats.
# `principal` only on authenticated requests: who wrote (an API key's or a token subject's digest).
_ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "principal")
_TRACE_FIELDS = ("trace_id", "span_id")  # set by RequestContextFilter when the record was logged in a span


class RequestContextFilter(logging.Filter):
    """Give every record the request id and operationId of the request it was logged in (None outside one),
    and the trace and span ids of the span it was logged in (None when not tracing: observability/tracing.py)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            info = current_request()
            record.request_id = info.request_id if info is not None else None
            record.operation_id = info.operation_id if info is not None else None
        if not hasattr(record, "trace_id"):
            span = get_current_span().get_span_context()
            if span.is_valid:
                record.trace_id = f"{span.trace_id:032x}"
                record.span_id = f"{span.span_id:016x}"
            else:
                record.trace_id = record.span_id = None
        return True


class WebSocketAdviceFilter(logging.Filter):
    """Drop uvicorn's advice to install a WebSocket library, logged with every upgrade request it cannot serve.

    serve.py runs uvicorn without WebSocket support on purpose (`ws="none"`: the service speaks none,
    and web.framing.NoProtocolUpgrades answers such requests with a 400 problem); uvicorn's
    "Unsupported upgrade request." line stays.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "uvicorn.error" and record.getMessage().startswith("No supported WebSocket library"))


def _request_context_filter() -> RequestContextFilter:
    # dictConfig calls this in every process that applies the config, uvicorn's workers included, before
    # they import the app. Python's warnings would otherwise be printed to stderr as they are (Connexion
    # warns at import), breaking one-JSON-object-a-line; captured, they are records of `py.warnings`.
    logging.captureWarnings(True)
    return RequestContextFilter()


class _SecondsCache:
    """The formatted second of the last record: an access line per request would format the same second again."""

    def __init__(self, convert, pattern: str) -> None:
        self._convert = convert
        self._pattern = pattern
        self._second = -1
        self._text = ""

    def text(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            # Handlers format under their lock, so one record at a time reaches this.
            self._text = time.strftime(self._pattern, self._convert(second))
            self._second = second
        return self._text


class TextFormatter(logging.Formatter):
    """The plain format, with `-` for a record logged outside any request."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._seconds = _SecondsCache(time.localtime, "%Y-%m-%d %H:%M:%S")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        return f"{self._seconds.text(record.created)},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "request_id", None) is None:
            record.request_id = "-"
        trace_id = getattr(record, "trace_id", None)
        record.trace = f" trace_id={trace_id} span_id={getattr(record, 'span_id', None)}" if trace_id is not None else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (ISO 8601, UTC), level, logger, message, request_id, operation_id, and more
    (trace_id and span_id when tracing)."""

    def __init__(self) -> None:
        super().__init__()
        self._seconds = _SecondsCache(time.gmtime, "%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": f"{self._seconds.text(record.created)}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "operation_id": getattr(record, "operation_id", None),
        }
        for name in _TRACE_FIELDS + _ACCESS_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                document[name] = value
        if record.exc_info:
            document["exception_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            document["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(document, default=str).decode()


def logging_config(log_format: str = "text", *, level: str = "INFO", stream: Any = "ext://sys.stderr") -> dict:
    """Return the `logging.config.dictConfig` for a process of the service, uvicorn's own loggers included.

    serve.py applies it and hands it to uvicorn as `log_config`, which applies it again in every worker.
    Every logger propagates to the root's one handler, so uvicorn's lines, the access log and the
    application's records share one format and one stream; applying it also routes Python's warnings
    through logging (`logging.captureWarnings`).
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    through_root = {"level": level, "handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": _request_context_filter}, "websocket_advice": {"()": WebSocketAdviceFilter}},
        "formatters": {"default": {"()": formatter}},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "stream": stream, "formatter": "default", "filters": ["request"]},
        },
        "root": {"level": level, "handlers": ["default"]},
        "loggers": {
            "uvicorn": through_root,
            "uvicorn.error": {**through_root, "filters": ["websocket_advice"]},
            "uvicorn.access": through_root,
            "alembic.runtime.plugins": {"level": "WARNING"},
            "pika": {"level": "CRITICAL"},  # the relay logs the broker's absence itself, once per retry
        },
    }
