"""The liveness check answers without the database."""

from __future__ import annotations

import dataclasses

import pytest

from app import create_app, dispose_app


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_health_answers_ok(client):
    response = client.get("/v1/health")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_health_answers_while_the_database_is_unreachable(settings):
    # Port 9 (discard) on loopback: nothing listens, so every connection attempt fails at once.
    unreachable = dataclasses.replace(settings, database_url="postgresql+psycopg2://rooms@127.0.0.1:9/rooms")
    app = create_app(unreachable)
    try:
        client = app.test_client(raise_server_exceptions=False)
        assert client.get("/v1/health").json() == {"status": "ok"}
        # The same app does need the database elsewhere, and says so: 503, worth retrying, not a 500.
        rooms = client.get("/v1/rooms")
        assert rooms.status_code == 503
        assert rooms.headers["content-type"] == "application/problem+json"
        assert rooms.headers["retry-after"] == str(settings.retry_after_seconds)
    finally:
        dispose_app(app)
