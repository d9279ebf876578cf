"""Domain errors raised by providers and handlers; the web layer maps each to one HTTP problem."""

from __future__ import annotations

import typing as t
from collections.abc import Sequence
from dataclasses import dataclass


class DomainError(Exception):
    """Base of every error a client can cause."""

    status = 400
    title = "Bad Request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def extensions(self) -> dict[str, t.Any]:
        """Return extra problem members for this error."""
        return {}


class NotFound(DomainError):
    """The addressed resource does not exist."""

    status = 404
    title = "Not Found"


class Conflict(DomainError):
    """The change would violate a uniqueness rule; names the resource it collides with."""

    status = 409
    title = "Conflict"

    def __init__(self, detail: str, conflicting_id: str | None = None) -> None:
        super().__init__(detail)
        self.conflicting_id = conflicting_id

    def extensions(self) -> dict[str, t.Any]:
        return {"conflicting_id": self.conflicting_id} if self.conflicting_id else {}


class PreconditionFailed(DomainError):
    """An If-Match precondition does not hold."""

    status = 412
    title = "Precondition Failed"


@dataclass(frozen=True)
class FieldError:
    """One failing field: a JSON path into the checked document and what is wrong there."""

    path: str
    message: str


class InvalidInput(DomainError):
    """Input that breaks the contract; lists its failing fields (all of them, or the first of `total`)."""

    def __init__(self, detail: str, errors: Sequence[FieldError] = (), total: int | None = None) -> None:
        super().__init__(detail)
        self.errors = list(errors)
        self.total = len(self.errors) if total is None else total

    def extensions(self) -> dict[str, t.Any]:
        return problem_errors(self.errors, self.total)


def problem_errors(errors: Sequence[FieldError], total: int) -> dict[str, t.Any]:
    """Return the problem members that list failing fields: `errors`, and when the list is cut, the total."""
    if not errors:
        return {}
    members: dict[str, t.Any] = {"errors": [{"path": e.path, "message": e.message} for e in errors]}
    if total > len(errors):
        members["errors_total"] = total
        members["errors_truncated"] = True
    return members
