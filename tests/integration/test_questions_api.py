"""Every /questions operation through the real app on SQLite and PostgreSQL, keeping the original contract."""

from __future__ import annotations

from collections import Counter

import pytest
import sqlalchemy as sa

from tests.integration.test_concurrency import race
from tests.integration.test_rooms_api import assert_problem


def question(code="1001", category="general", message="How far is the station?", **extra):
    return {"question_code": code, "category": category, "message": message, **extra}


def test_create_returns_the_question_with_location(client, auth):
    response = client.post("/v1/questions", json=question(), headers=auth)
    assert response.status_code == 201, response.text
    assert response.json() == question()
    assert response.headers["Location"] == "/v1/questions/1001"
    assert client.get("/v1/questions/1001").json() == question()


def test_unknown_fields_are_accepted_but_neither_stored_nor_echoed(client, auth, engine):
    response = client.post("/v1/questions", json=question(colour="red", nested={"a": 1}), headers=auth)
    assert response.status_code == 201 and response.json() == question()
    assert client.get("/v1/questions/1001").json() == question()


def test_the_originals_bad_input_lists_both_failures_with_their_paths(client, auth, engine):
    body = {"question_code": "99999999990000000", "category": "", "message": "hello"}
    problem = assert_problem(client.post("/v1/questions", json=body, headers=auth), 400)
    errors = {e["path"]: e["message"] for e in problem["errors"]}
    assert set(errors) == {"$.question_code", "$.category"}
    assert "too long" in errors["$.question_code"] and "non-empty" in errors["$.category"]
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM questions")).scalar_one() == 0


@pytest.mark.parametrize(
    "body, path",
    [
        (question(code="12a"), "$.question_code"),
        (question(code=""), "$.question_code"),
        (question(code=1001), "$.question_code"),
        (question(category="x" * 11), "$.category"),
        (question(message=""), "$.message"),
        (question(message="x" * 101), "$.message"),
        ({"category": "a", "message": "b"}, "$.question_code"),
    ],
)
def test_create_rejects_bodies_that_break_the_contract(client, auth, body, path):
    problem = assert_problem(client.post("/v1/questions", json=body, headers=auth), 400)
    assert path in {e["path"] for e in problem["errors"]}


def test_post_post_delete_post_the_originals_scenario(client, auth):
    assert client.post("/v1/questions", json=question(), headers=auth).status_code == 201
    duplicate = assert_problem(client.post("/v1/questions", json=question(message="again"), headers=auth), 409)
    assert "1001" in duplicate["detail"] and duplicate["conflicting_id"] == "1001"
    assert client.get("/v1/questions/1001").json()["message"] == "How far is the station?"
    assert client.delete("/v1/questions/1001", headers=auth).status_code == 204
    again = client.post("/v1/questions", json=question(message="again"), headers=auth)
    assert again.status_code == 201 and again.json()["message"] == "again"


def test_get_and_delete_unknown_question_are_404(client, auth):
    assert_problem(client.get("/v1/questions/777"), 404)
    assert_problem(client.delete("/v1/questions/777", headers=auth), 404)


@pytest.mark.parametrize("code", ["abc", "12345678901", "-1"])
def test_a_malformed_code_in_the_path_is_400(client, code):
    assert_problem(client.get(f"/v1/questions/{code}"), 400)


def test_writes_need_the_api_key(client, auth):
    assert_problem(client.post("/v1/questions", json=question()), 401)
    client.post("/v1/questions", json=question(), headers=auth)
    assert_problem(client.delete("/v1/questions/1001"), 401)
    assert client.get("/v1/questions/1001").status_code == 200


def test_list_filters_by_category_and_pages_in_code_order(client, auth):
    for code in ["5", "40", "300", "2000", "1"]:
        client.post("/v1/questions", json=question(code=code, category="a"), headers=auth)
    client.post("/v1/questions", json=question(code="7", category="b"), headers=auth)
    seen, url = [], "/v1/questions?category=a&limit=2"
    while url:
        response = client.get(url)
        assert response.status_code == 200
        seen += [q["question_code"] for q in response.json()["data"]]
        link = response.headers.get("Link")
        url = link[1 : link.index(">")] if link else None
    assert seen == sorted(["5", "40", "300", "2000", "1"])
    assert [q["question_code"] for q in client.get("/v1/questions").json()["data"]] == sorted(
        ["5", "40", "300", "2000", "1", "7"]
    )


@pytest.mark.parametrize("database_url", ["postgresql", "sqlite"], indirect=True)
def test_concurrent_creates_of_one_code_give_one_201_and_the_rest_409(live_server, auth, engine):
    responses = race(live_server.url, [("POST", "/v1/questions", question(code="42"), auth)] * 20)
    assert Counter(r.status_code for r in responses) == {201: 1, 409: 19}
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM questions")).scalar_one() == 1
