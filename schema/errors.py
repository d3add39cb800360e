"""What a request can be refused for, said without HTTP.

The domain (`models`) and the store raise these; the API's entry points map each class to a status and an error
code in one table (``serve/errors.py``). ``message`` says what is wrong; ``details`` name each field at fault, as
the error envelope shows them.

>>> err = Conflict.on("state", "the alert is resolved")
>>> isinstance(err, DomainError), err.message, err.details
(True, 'the alert is resolved', [{'field': 'state', 'message': 'the alert is resolved'}])
"""

from typing import Self

__all__ = [
    "ChunkOutOfOrder",
    "Conflict",
    "DomainError",
    "EventIdReused",
    "IdempotencyKeyReused",
    "InvalidInput",
    "NotFound",
]


class DomainError(Exception):
    """A request refused: ``message`` for people, ``details`` (``[{"field", "message"}]``) per field at fault."""

    def __init__(self, message: str, details: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    @classmethod
    def on(cls, field: str, message: str) -> Self:
        """Refused because of one field, which the message is about."""
        return cls(message, [{"field": field, "message": message}])


class NotFound(DomainError):
    """Something the request names does not exist (or is not the caller's tenant's)."""


class Conflict(DomainError):
    """The current state refuses the request: valid in itself, it collides with what is stored."""


class InvalidInput(DomainError, ValueError):
    """The request itself is invalid, whatever is stored."""


class EventIdReused(Conflict):
    """A field event's id already stands for other content."""


class ChunkOutOfOrder(Conflict):
    """An upload session's chunk sent before the one the server expects next."""


class IdempotencyKeyReused(Conflict):
    """An idempotency key already used for a request with another body."""
