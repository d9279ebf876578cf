"""The Questions aggregate: client-assigned natural keys; its provider interface and listing query."""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass
from typing import Any

from providers.paging import Page, decode_cursor, encode_cursor, page_of

Question = dict[str, Any]
"""A question in its API shape: `question_code`, `category`, `message`."""

QUESTION_FIELDS = ("question_code", "category", "message")
QUESTION_CODE = re.compile(r"[0-9]{1,10}")
"""What a question code is (the spec's pattern); a cursor's code must be one too."""


def known_fields(document: dict[str, Any]) -> Question:
    """Keep the contract's fields only: the original service accepted and ignored any others."""
    return {name: document[name] for name in QUESTION_FIELDS}


@dataclass(frozen=True, slots=True)
class QuestionQuery:
    """Questions of `category` (any if None) after code `after_code`, in code order."""

    category: str | None = None
    limit: int = 20
    after_code: str | None = None


def decode_question_cursor(token: str) -> str:
    """Return the last code of the previous page from a client's cursor, or raise InvalidInput."""

    def parse(payload: dict[str, Any]) -> str:
        after = payload["c"]
        if not isinstance(after, str) or not QUESTION_CODE.fullmatch(after):
            raise ValueError("code must be 1 to 10 digits")
        return after

    return decode_cursor(token, parse)


def question_page(rows: list[Question], limit: int) -> Page[Question]:
    """Cut `limit + 1` rows in code order into a page and its next cursor."""
    return page_of(rows, limit, lambda last: encode_cursor({"c": last["question_code"]}))


class QuestionsProvider(abc.ABC):
    """Persistence of questions. Implementations join the caller's transaction and never commit."""

    @abc.abstractmethod
    def create(self, question: Question) -> Question:
        """Store a validated question; raise Conflict if its code exists."""

    @abc.abstractmethod
    def get(self, question_code: str) -> Question:
        """Return the question; raise NotFound."""

    @abc.abstractmethod
    def delete(self, question_code: str) -> None:
        """Remove the question; raise NotFound."""

    @abc.abstractmethod
    def search(self, query: QuestionQuery) -> Page[Question]:
        """Return one page of questions in code order."""
