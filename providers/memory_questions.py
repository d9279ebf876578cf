"""In-memory QuestionsProvider for unit tests."""

from __future__ import annotations

import threading

from contract.errors import Conflict, NotFound
from providers.events import Outbox
from providers.paging import Page
from providers.questions import Question, QuestionQuery, QuestionsProvider, known_fields, question_page


class InMemoryQuestionsProvider(QuestionsProvider):
    """Questions in a dict keyed by code."""

    def __init__(self, outbox: Outbox | None = None) -> None:
        self._outbox = outbox
        self._questions: dict[str, Question] = {}
        self._lock = threading.Lock()

    def create(self, question: Question) -> Question:
        with self._lock:
            code = question["question_code"]
            if code in self._questions:
                raise Conflict(f"A question with code {code} already exists.", code)
            self._questions[code] = known_fields(question)
            if self._outbox is not None:
                self._outbox.append("question.created", "roomservice.Question", code, self._questions[code])
            return dict(self._questions[code])

    def get(self, question_code: str) -> Question:
        question = self._questions.get(question_code)
        if question is None:
            raise NotFound(f"Question {question_code} does not exist.")
        return dict(question)

    def delete(self, question_code: str) -> None:
        with self._lock:
            if self._questions.pop(question_code, None) is None:
                raise NotFound(f"Question {question_code} does not exist.")
            if self._outbox is not None:
                self._outbox.append("question.deleted", "roomservice.Question", question_code, None)

    def search(self, query: QuestionQuery) -> Page[Question]:
        rows = [
            dict(q)
            for code, q in sorted(self._questions.items())
            if (query.after_code is None or code > query.after_code)
            and (query.category is None or q["category"] == query.category)
        ]
        return question_page(rows[: query.limit + 1], query.limit)
