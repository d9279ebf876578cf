"""SQLAlchemy QuestionsProvider."""

from __future__ import annotations

from sqlalchemy import Index, String, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from contract.errors import Conflict, NotFound
from providers.database import Base, ConnectionSource, OnConnection
from providers.events import Outbox
from providers.paging import Page
from providers.questions import Question, QuestionQuery, QuestionsProvider, known_fields, question_page

QUESTION_SCHEMA = "roomservice.Question"


class QuestionRow(Base):
    """One stored question, keyed by its client-assigned code."""

    __tablename__ = "questions"
    __table_args__ = (Index("ix_questions_category_code", "category", "question_code"),)

    question_code: Mapped[str] = mapped_column(String(10), primary_key=True)
    category: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(String(100))


_SELECT_QUESTION = select(QuestionRow.question_code, QuestionRow.category, QuestionRow.message)


class SqlQuestionsProvider(OnConnection, QuestionsProvider):
    """Questions through the request's database connection; the caller owns the transaction."""

    def __init__(self, connect: ConnectionSource, outbox: Outbox) -> None:
        super().__init__(connect)
        self._outbox = outbox

    def create(self, question: Question) -> Question:
        values = known_fields(question)
        insert = postgresql.insert if self._connection.dialect.name == "postgresql" else sqlite.insert
        # A concurrent insert of the same code makes this wait, then insert nothing: 409, not an error.
        statement = insert(QuestionRow).values(values).on_conflict_do_nothing(index_elements=["question_code"])
        if self._connection.execute(statement.returning(QuestionRow.question_code)).one_or_none() is None:
            raise Conflict(f"A question with code {values['question_code']} already exists.", values["question_code"])
        self._outbox.append("question.created", QUESTION_SCHEMA, values["question_code"], values)
        return values

    def get(self, question_code: str) -> Question:
        row = self._connection.execute(_SELECT_QUESTION.where(QuestionRow.question_code == question_code)).one_or_none()
        if row is None:
            raise NotFound(f"Question {question_code} does not exist.")
        return dict(row._mapping)

    def delete(self, question_code: str) -> None:
        result = self._connection.execute(delete(QuestionRow).where(QuestionRow.question_code == question_code))
        if result.rowcount == 0:
            raise NotFound(f"Question {question_code} does not exist.")
        self._outbox.append("question.deleted", QUESTION_SCHEMA, question_code, None)

    def search(self, query: QuestionQuery) -> Page[Question]:
        statement = _SELECT_QUESTION
        if query.category is not None:
            statement = statement.where(QuestionRow.category == query.category)
        if query.after_code is not None:
            statement = statement.where(QuestionRow.question_code > query.after_code)
        rows = self._connection.execute(statement.order_by(QuestionRow.question_code).limit(query.limit + 1)).all()
        return question_page([dict(row._mapping) for row in rows], query.limit)
