"""How the app is served: its handlers run in a thread pool whose size APP_THREADS sets."""

from __future__ import annotations

import dataclasses
import threading
import time

import httpx
import pytest

from app import create_app, dispose_app
from settings import Settings
from tests.conftest import LiveServer


def seconds_for_a_search_while_a_long_poll_waits(settings, handler_threads: int) -> float:
    app = create_app(dataclasses.replace(settings, handler_threads=handler_threads))
    try:
        with LiveServer(app) as server:
            # A long poll on the empty feed holds a handler thread for its whole wait.
            poll = threading.Thread(target=httpx.get, args=(f"{server.url}/v1/events?wait=1.5",), kwargs={"timeout": 10})
            poll.start()
            time.sleep(0.3)
            began = time.monotonic()
            response = httpx.get(f"{server.url}/v1/rooms", timeout=10)
            took = time.monotonic() - began
            poll.join()
        assert response.status_code == 200
        return took
    finally:
        dispose_app(app)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_one_handler_thread_makes_a_search_wait_for_the_long_poll(settings):
    assert seconds_for_a_search_while_a_long_poll_waits(settings, handler_threads=1) >= 0.9


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_two_handler_threads_serve_a_search_during_a_long_poll(settings):
    assert seconds_for_a_search_while_a_long_poll_waits(settings, handler_threads=2) < 0.9


def test_app_threads_is_read_from_the_environment():
    assert Settings.from_env({"APP_THREADS": "12"}).handler_threads == 12
    assert Settings.from_env({}).handler_threads == Settings.handler_threads
