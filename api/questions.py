"""Handlers of the /questions operations."""

from __future__ import annotations

from typing import Any

from connexion import NoContent, request
from injector import Inject

from providers.questions import QuestionQuery, QuestionsProvider, decode_question_cursor
from web.http import json_response, next_page_link


def search_questions(
    questions: Inject[QuestionsProvider], category: str | None = None, limit: int = 20, cursor: str | None = None
):
    """Return one page of questions, optionally of one category."""
    after = decode_question_cursor(cursor) if cursor else None
    page = questions.search(QuestionQuery(category=category, limit=limit, after_code=after))
    headers = {}
    if page.next_cursor:
        headers["Link"] = next_page_link(request.url.path, dict(request.query_params), page.next_cursor)
    return json_response({"data": page.items, "next_cursor": page.next_cursor}, 200, headers)


def create_question(body: dict[str, Any], questions: Inject[QuestionsProvider]):
    """Store a new question under its client-chosen code."""
    question = questions.create(body)
    location = f"{request.url.path.rstrip('/')}/{question['question_code']}"
    return json_response(question, 201, {"Location": location})


def get_question(question_code: str, questions: Inject[QuestionsProvider]):
    """Return one question."""
    return json_response(questions.get(question_code))


def delete_question(question_code: str, questions: Inject[QuestionsProvider]):
    """Delete a question; its code becomes free again."""
    questions.delete(question_code)
    return NoContent, 204
