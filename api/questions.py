"""Handlers of the /questions operations."""

from __future__ import annotations

from typing import Any

from connexion import NoContent
from injector import Inject

from providers.questions import QuestionQuery, QuestionsProvider, decode_question_cursor
from rest.idempotency import IdempotentCreates
from rest.representation import Answer, HandlerResult, Representer


def search_questions(
    questions: Inject[QuestionsProvider],
    represent: Inject[Representer],
    category: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> HandlerResult:
    """Return one page of questions, optionally of one category."""
    after = decode_question_cursor(cursor) if cursor else None
    page = questions.search(QuestionQuery(category=category, limit=limit, after_code=after))
    return represent.many("Question", page.items, page.next_cursor)


def create_question(body: dict[str, Any], questions: Inject[QuestionsProvider], represent: Inject[Representer],
                    once: Inject[IdempotentCreates]) -> Answer:
    """Store a new question under its client-chosen code; a keyed retry gets the first answer again."""

    def create() -> HandlerResult:
        question = questions.create(body)
        return represent.created("Question", question, question["question_code"])

    return once.run("create_question", "roomservice.NewQuestion", body, create)


def get_question(question_code: str, questions: Inject[QuestionsProvider], represent: Inject[Representer]) -> HandlerResult:
    """Return one question."""
    return represent.one("Question", questions.get(question_code))


def delete_question(question_code: str, questions: Inject[QuestionsProvider]) -> tuple[Any, int]:
    """Delete a question; its code becomes free again."""
    questions.delete(question_code)
    return NoContent, 204
