"""Logging: text by default or JSON lines, the access log, and the settings; tests/e2e/test_serve_observability.py runs serve.py."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import sys
from datetime import UTC, datetime

import pytest

import serve
from app import create_app, dispose_app
from observability.logs import JsonFormatter, RequestContextFilter, TextFormatter, logging_config
from settings import ConfigurationError, Settings


@pytest.fixture
def captured_access_log():
    """The access logger's records, written by a handler built from logging_config's own formatter and filter."""

    def attach(log_format: str) -> io.StringIO:
        config = logging_config(log_format)
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.addFilter(RequestContextFilter())  # the config's factory would also capture this process's warnings
        handler.setFormatter(config["formatters"]["default"]["()"]())
        access.addHandler(handler)
        handlers.append(handler)
        return stream

    access = logging.getLogger("rooms.access")
    previous = access.level
    access.setLevel(logging.INFO)
    handlers: list[logging.Handler] = []
    yield attach
    for handler in handlers:
        access.removeHandler(handler)
    access.setLevel(previous)


def test_the_log_format_is_read_from_the_environment_and_a_bad_one_names_the_variable():
    assert Settings.from_env({}).log_format == "text"
    assert Settings.from_env({"APP_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ConfigurationError, match="APP_LOG_FORMAT must be one of text, json, got 'yaml'"):
        Settings.from_env({"APP_LOG_FORMAT": "yaml"})
    assert Settings.from_env({"APP_ACCESS_LOG": "false"}).access_log is False
    with pytest.raises(ConfigurationError, match="APP_ACCESS_LOG"):
        Settings.from_env({"APP_ACCESS_LOG": "sometimes"})
    with pytest.raises(ValueError, match="log format"):
        logging_config("xml")


def test_serve_stops_before_starting_on_a_malformed_log_format(monkeypatch, caplog):
    monkeypatch.setenv("APP_LOG_FORMAT", "yaml")
    with caplog.at_level(logging.ERROR, logger="serve"):
        assert serve.main() == 2
    assert "APP_LOG_FORMAT must be one of text, json" in caplog.text


def test_a_json_line_has_iso_utc_time_and_the_exception():
    formatter = JsonFormatter()
    try:
        raise RuntimeError("it broke")
    except RuntimeError:
        record = logging.getLogger("web.test").makeRecord(
            "web.test", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info())
    RequestContextFilter().filter(record)
    line = json.loads(formatter.format(record))
    assert line["message"] == "failed here" and line["level"] == "ERROR" and line["logger"] == "web.test"
    assert line["time"].endswith("Z")
    assert abs(datetime.fromisoformat(line["time"]).timestamp() - datetime.now(UTC).timestamp()) < 60
    assert line["exception_type"] == "RuntimeError"
    assert "Traceback" in line["exception"] and "it broke" in line["exception"]
    assert line["request_id"] is None and line["operation_id"] is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_each_request_writes_one_json_access_line(client, captured_access_log):
    stream = captured_access_log("json")
    client.get("/v1/health", headers={"X-Request-ID": "access-1"})
    client.get("/v1/rooms/not-a-uuid")
    client.get("/nowhere")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 3
    health, invalid, unknown = lines
    assert {k: health[k] for k in ("logger", "level", "request_id", "operation_id", "method", "path", "status")} == {
        "logger": "rooms.access", "level": "INFO", "request_id": "access-1", "operation_id": "check_health",
        "method": "GET", "path": "/v1/health", "status": 200,
    }
    assert isinstance(health["duration_ms"], float) and 0 < health["duration_ms"] < 10_000
    assert (invalid["operation_id"], invalid["status"]) == ("get_room", 400)
    assert (unknown["operation_id"], unknown["status"]) == ("none", 404)
    assert len({line["request_id"] for line in lines}) == 3


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_text_access_line_is_one_readable_line_even_for_a_hostile_path(client, captured_access_log):
    stream = captured_access_log("text")
    client.get("/v1/health", headers={"X-Request-ID": "text-1"})
    client.get("/v1/rooms/%0Afake%20line")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert " INFO rooms.access [text-1] GET /v1/health 200 " in lines[0] and lines[0].endswith(" ms check_health")
    assert "GET /v1/rooms/\\nfake line 400" in lines[1]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_access_log_can_be_turned_off(settings, captured_access_log):
    stream = captured_access_log("json")
    app = create_app(dataclasses.replace(settings, access_log=False))
    try:
        assert app.test_client().get("/v1/health").status_code == 200
    finally:
        dispose_app(app)
    assert stream.getvalue() == ""


def test_the_text_format_marks_records_outside_a_request():
    record = logging.getLogger("serve").makeRecord("serve", logging.INFO, __file__, 1, "Serving", (), None)
    RequestContextFilter().filter(record)
    assert TextFormatter().format(record).endswith(" INFO serve [-] Serving")

