"""Domain refusals (`schema.errors`) get their status and code in one table, `serve.errors.REFUSALS` (no server)."""

import inspect

import pytest

import schema.errors
from models.sync import FutureVersion, UnknownRecord
from schema.errors import Conflict, DomainError, EventIdReused, InvalidInput, NotFound
from serve.errors import REFUSALS, ApiError

pytestmark = pytest.mark.fast  # no Ray, no Serve: `./wp test -m fast`


@pytest.mark.parametrize("kind", [c for _, c in inspect.getmembers(schema.errors, inspect.isclass)
                                  if issubclass(c, DomainError) and c is not DomainError])
def test_every_refusal_has_a_status(kind: type[DomainError]) -> None:
    assert ApiError.refusal(kind("no")).status in (404, 409, 422)


@pytest.mark.parametrize(("error", "status", "code"), [
    (NotFound("upload 7 not found"), 404, "NOT_FOUND"),
    (Conflict.on("state", "the alert is resolved"), 409, "CONFLICT"),
    (InvalidInput("cursor is ahead of the server"), 422, "VALIDATION_ERROR"),
    (EventIdReused("an event id was reused with different content"), 409, "DUPLICATE_EVENT"),
    (UnknownRecord("id", "no record r to update"), 404, "NOT_FOUND"),
    (FutureVersion("version", "record r is at version 1"), 422, "VALIDATION_ERROR"),
])
def test_the_envelope_says_what_the_domain_said(error: DomainError, status: int, code: str) -> None:
    answer = ApiError.refusal(error)
    assert (answer.status, answer.code, answer.message, answer.details) == (status, code, error.message, error.details)


def test_a_refusal_without_a_status_is_a_bug_not_a_client_error() -> None:
    class Unmapped(DomainError):
        pass

    assert (ApiError.refusal(Unmapped("?")).status, ApiError.refusal(Unmapped("?")).code) == (500, "INTERNAL")
    assert set(REFUSALS) <= {c for _, c in inspect.getmembers(schema.errors, inspect.isclass)}
