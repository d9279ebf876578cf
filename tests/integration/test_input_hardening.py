"""Inputs the fuzz test found answered with 500 or accepted wrongly: each is now a clear 400, on both backends."""

from __future__ import annotations

import re
import uuid

import pytest

from contract.spec import load_spec
from tests.integration.test_hostile_input import count_rows
from tests.integration.test_rooms_api import assert_problem
from tests.support.factories import new_room

INT64_OVERFLOW = 2**63


@pytest.mark.parametrize(
    "path",
    [f"/v1/rooms?min_price={INT64_OVERFLOW}", f"/v1/rooms?max_price={INT64_OVERFLOW}", f"/v1/events?after={INT64_OVERFLOW}"],
)
def test_integers_beyond_int64_are_400(client, path):
    assert_problem(client.get(path), 400)


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("POST", "/v1/rooms", new_room(name="a\x00b")),
        ("POST", "/v1/items", {"name": "a\x00"}),
        ("POST", "/v1/questions", {"question_code": "1", "category": "c", "message": "m\x00"}),
        ("GET", "/v1/rooms?city=a%00b", None),
        ("GET", "/v1/items?name=a%00b", None),
        ("GET", "/v1/questions?category=a%00", None),
    ],
)
def test_nul_characters_are_refused_everywhere(client, auth, method, path, body):
    response = client.request(method, path, json=body, headers=auth)
    problem = assert_problem(response, 400)
    assert "NUL" in problem["detail"]


def test_a_nul_in_a_merge_patch_is_refused(client, auth):
    room = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    response = client.patch(f"/v1/rooms/{room['id']}", content=b'{"name": "a\\u0000"}',
                            headers={**auth, "Content-Type": "application/merge-patch+json"})
    assert_problem(response, 400)


@pytest.mark.parametrize("method", ["GET", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", ["/v1/rooms/a%0Ab", f"/v1/rooms/{uuid.uuid4()}%0A", "/v1/questions/1%0A2", "/v1/items/1%09"])
def test_control_characters_in_the_path_are_400_not_500(client, method, path):
    assert_problem(client.request(method, path), 400)


def test_a_trailing_newline_does_not_satisfy_a_pattern(client, auth):
    assert_problem(client.post("/v1/questions", json={"question_code": "1001\n", "category": "c", "message": "m"},
                               headers=auth), 400)
    assert_problem(client.post("/v1/rooms", json=new_room(url="https://example.com/x\n"), headers=auth), 400)


@pytest.mark.parametrize("url", ["https://exa\x1cmple.com/x", "https://example.com/a\x85b", "https://example.com/\x7f"])
def test_urls_with_control_characters_are_refused(client, auth, url):
    assert_problem(client.post("/v1/rooms", json=new_room(url=url), headers=auth), 400)


@pytest.mark.parametrize(
    "method, path",
    [("GET", "/v1/rooms/not-a-uuid"), ("PATCH", "/v1/rooms/not-a-uuid"), ("DELETE", "/v1/rooms/not-a-uuid"),
     ("GET", "/v1/items/0"), ("PUT", "/v1/items/0"), ("DELETE", "/v1/items/0"), ("GET", "/v1/questions/x")],
)
def test_a_malformed_path_parameter_is_reported_once(client, auth, method, path):
    # Operations with header parameters of their own (If-Match, If-None-Match) once listed it five times.
    headers = {**auth, "Content-Type": "application/merge-patch+json" if method == "PATCH" else "application/json"}
    body = b'{"name": "x"}' if method in ("PUT", "PATCH") else None
    problem = assert_problem(client.request(method, path, content=body, headers=headers), 400)
    assert len(problem["errors"]) == 1, problem["errors"]
    assert problem["errors"][0]["path"].startswith("path.")


SPEC_OPERATIONS = [(method.upper(), path) for path, item in load_spec()["paths"].items()
                   for method in item if method in ("get", "put", "post", "patch", "delete")]


def _doubled_slash_variants(path: str) -> list[str]:
    """`//` in front, and each of the path's slashes doubled in turn."""
    slashes = [match.start() for match in re.finditer("/", path)]
    return ["/" + path, *(path[:at] + "/" + path[at:] for at in slashes[1:]), path + "//"]


def _encoded_slash_variants(path: str) -> list[str]:
    """Each of the path's slashes but the first sent encoded in turn (`/v1%2Frooms`), in either case."""
    slashes = [match.start() for match in re.finditer("/", path)][1:]
    return [path[:at] + encoded + path[at + 1:] for at in slashes for encoded in ("%2F", "%2f")]


@pytest.mark.parametrize("method, template", SPEC_OPERATIONS)
def test_a_path_with_an_empty_segment_or_an_encoded_slash_is_404_for_every_operation_and_changes_nothing(
        client, auth, engine, method, template):
    # Werkzeug matched the first to the operation's Flask view, which then ran without Connexion's routing (a 500),
    # or redirected with a 308 and no Location; the server decoded the second into a path both routers served.
    room = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    item = client.post("/v1/items", json={"name": "lamp"}, headers=auth).json()
    question = client.post("/v1/questions", json={"question_code": "1001", "category": "c", "message": "m"},
                           headers=auth).json()
    path = "/v1" + template.format(room_id=room["id"], item_id=item["id"], question_code="1001",
                                   name="roomservice.Room")
    bodies = {"/v1/rooms": new_room(url="https://example.com/other"), "/v1/items": {"name": "x"},
              "/v1/questions": {"question_code": "1002", "category": "c", "message": "m"}}
    content_type = "application/merge-patch+json" if method == "PATCH" else "application/json"
    body = b'{"name": "changed"}' if method in ("PUT", "PATCH") else None
    variants = [(variant, "empty segment") for variant in _doubled_slash_variants(path)]
    variants += [(variant, "encoded slash") for variant in _encoded_slash_variants(path)]
    for variant, reason in variants:
        json_body = bodies.get(path) if method == "POST" else None
        response = client.request(method, "http://testserver" + variant, content=body, json=json_body,
                                  headers={**auth, "Content-Type": content_type})
        assert reason in assert_problem(response, 404)["detail"], variant
    assert [count_rows(engine, table) for table in ("rooms", "items", "questions")] == [1, 1, 1]
    assert client.get(f"/v1/rooms/{room['id']}").json() == room
    assert client.get(f"/v1/items/{item['id']}").json() == item
    assert client.get("/v1/questions/1001").json() == question


LONG_NUMBERS = ["9" * 4_301, "-" + "9" * 4_301, "9" * 50_000]  # int() refuses more than 4,300 digits


@pytest.mark.parametrize("number", LONG_NUMBERS, ids=["4301-digits", "negative", "50000-digits"])
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE"])
def test_an_integer_path_parameter_of_any_length_is_400_on_the_parameter(client, auth, engine, method, number):
    item = client.post("/v1/items", json={"name": "lamp"}, headers=auth).json()
    body = b'{"name": "x"}' if method == "PUT" else None
    response = client.request(method, f"/v1/items/{number}", content=body,
                              headers={**auth, "Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    if method != "HEAD":
        assert [error["path"] for error in assert_problem(response, 400)["errors"]] == ["path.item_id"]
    assert count_rows(engine, "items") == 1 and client.get(f"/v1/items/{item['id']}").json() == item


@pytest.mark.parametrize("parameter", ["/v1/items?limit", "/v1/rooms?min_price", "/v1/rooms?max_price", "/v1/rooms?limit",
                                       "/v1/questions?limit", "/v1/events?after"])
def test_an_integer_query_parameter_of_any_length_is_400_on_the_parameter(client, parameter):
    path, name = parameter.split("?")
    problem = assert_problem(client.get(f"{path}?{name}={'9' * 5_000}"), 400)
    assert [error["path"] for error in problem["errors"]] == [f"query.{name}"]
