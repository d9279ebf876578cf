"""Unit tests of single pieces: settings, merge patch, preconditions, geography, the docs aliases."""

from __future__ import annotations

import math

import pytest

from contract.errors import PreconditionFailed
from providers.rooms import EARTH_RADIUS_KM, GeoCircle, distance_km, haversine_term
from rest.conditional import require_match
from rest.merge_patch import merge_patch
from settings import ConfigurationError, Settings


def test_settings_default_to_a_local_sqlite_file_and_port_9090():
    settings = Settings.from_env({})
    assert settings.database_url.startswith("sqlite:///") and settings.database_url.endswith("var/rooms.sqlite3")
    assert settings.port == 9090 and settings.api_keys == frozenset()


def test_database_url_wins_over_app_db_variables():
    settings = Settings.from_env({"DATABASE_URL": "postgresql://a@b/c", "APP_DB_HOST": "ignored"})
    assert settings.database_url == "postgresql://a@b/c"


def test_app_db_variables_build_a_postgresql_url_with_escaped_credentials():
    settings = Settings.from_env(
        {"APP_DB_HOST": "db", "APP_DB_PORT": "6543", "APP_DB_DATABASE": "rooms", "APP_DB_USER": "svc",
         "APP_DB_PASSWORD": "p@ss:word", "APP_DB_CONNECTIONS": "7", "APP_DB_STALE_TIMEOUT": "60"}
    )
    assert settings.database_url == "postgresql+psycopg2://svc:p%40ss%3Aword@db:6543/rooms"
    assert settings.pool_size == 7 and settings.pool_recycle_seconds == 60
    assert Settings.from_env({"APP_DB_PRE_PING": "true"}).pool_pre_ping is True
    assert Settings.from_env({}).pool_pre_ping is False


def test_api_keys_are_comma_separated_and_trimmed():
    assert Settings.from_env({"APP_API_KEYS": " a, b ,,"}).api_keys == frozenset({"a", "b"})


@pytest.mark.parametrize("name, value", [("APP_PORT", "http"), ("APP_DB_CONNECTIONS", "0"), ("APP_VALIDATE_RESPONSES", "perhaps")])
def test_unusable_settings_fail_loudly_naming_the_variable(name, value):
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({name: value})


def test_merge_patch_follows_rfc_7396_examples():
    # The examples of RFC 7396, appendix A.
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": "b", "b": "c"}, {"a": None}) == {"b": "c"}
    assert merge_patch({"a": ["b"]}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch([1, 2], {"a": "b", "c": None}) == {"a": "b"}
    assert merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}


def test_merge_patch_does_not_modify_its_inputs():
    target, patch = {"a": {"b": 1}}, {"a": {"c": 2}}
    merge_patch(target, patch)
    assert target == {"a": {"b": 1}} and patch == {"a": {"c": 2}}


@pytest.mark.parametrize("header", [None, "*", '"3"', '"1", "3"'])
def test_if_match_that_matches_lets_the_change_through(header):
    require_match(header, 3)


@pytest.mark.parametrize("header", ['"2"', 'W/"3"', "3", '"1", "2"'])
def test_if_match_that_does_not_match_strongly_is_412(header):
    with pytest.raises(PreconditionFailed):
        require_match(header, 3)


def test_distance_matches_a_known_pair_of_cities():
    # Berlin to Munich is about 504 km as the crow flies.
    assert distance_km(52.52, 13.405, 48.137, 11.575) == pytest.approx(504, abs=2)


def test_haversine_bound_is_the_radius_on_the_sphere():
    circle = GeoCircle(10.0, 20.0, 100.0)
    north = 10.0 + math.degrees(100.0 / EARTH_RADIUS_KM)
    assert haversine_term(10.0, 20.0, north, 20.0) == pytest.approx(circle.haversine_bound())
    assert GeoCircle(0, 0, 20037.6).haversine_bound() is None


def test_longitude_band_is_dropped_near_poles_and_antimeridian():
    assert GeoCircle(89.99, 0, 10).longitude_band() is None
    assert GeoCircle(0, 179.99, 10).longitude_band() is None
    low, high = GeoCircle(52.5, 13.4, 10).longitude_band()
    assert low < 13.4 < high


def test_fault_settings_are_read_from_the_environment_and_checked():
    settings = Settings.from_env({
        "APP_RETRY_AFTER_SECONDS": "9", "APP_READY_TIMEOUT_SECONDS": "3",
        "APP_DB_CONNECT_TIMEOUT_SECONDS": "4", "APP_GRACEFUL_SHUTDOWN_SECONDS": "30",
    })
    assert (settings.retry_after_seconds, settings.ready_timeout_seconds) == (9, 3)
    assert (settings.db_connect_timeout_seconds, settings.graceful_shutdown_seconds) == (4, 30)
    defaults = Settings.from_env({})
    assert (defaults.retry_after_seconds, defaults.ready_timeout_seconds) == (5, 2)
    assert (defaults.db_connect_timeout_seconds, defaults.graceful_shutdown_seconds) == (5, 20)
    with pytest.raises(ConfigurationError, match="APP_RETRY_AFTER_SECONDS"):
        Settings.from_env({"APP_RETRY_AFTER_SECONDS": "0"})


def test_request_read_timeouts_are_read_from_the_environment_and_bounded():
    settings = Settings.from_env({"APP_REQUEST_HEAD_TIMEOUT_SECONDS": "3", "APP_REQUEST_BODY_TIMEOUT_SECONDS": "7"})
    assert (settings.request_head_timeout_seconds, settings.request_body_timeout_seconds) == (3, 7)
    defaults = Settings.from_env({})
    assert (defaults.request_head_timeout_seconds, defaults.request_body_timeout_seconds) == (10, 30)
    for name in ("APP_REQUEST_HEAD_TIMEOUT_SECONDS", "APP_REQUEST_BODY_TIMEOUT_SECONDS"):
        for value in ("0", "3601", "1.5"):
            with pytest.raises(ConfigurationError, match=name):
                Settings.from_env({name: value})
