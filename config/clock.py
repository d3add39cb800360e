"""The clock that decisions read: escalation, shelve ends, silence ends (housekeeping).

Code that decides something by the time of day takes a `Clock` (or a ``now`` from one) instead of calling
``datetime.now`` itself, so that a test can move time forward with `ManualClock` and check at once what a real
clock would only show after minutes: an alert escalating, a shelve running out, a silence ending. Production
passes nothing and gets `SYSTEM_CLOCK`.

>>> from datetime import UTC, datetime, timedelta
>>> clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
>>> clock.advance(timedelta(minutes=15)).isoformat()
'2026-01-01T00:15:00+00:00'
>>> clock.monotonic()
900.0
"""

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["SYSTEM_CLOCK", "Clock", "ManualClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Wall time for decisions (aware, UTC) and a monotonic reading for intervals."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock (what production runs)."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to: a test's way to make an hour pass in no time.

    Both readings move together, so an interval measured with `monotonic` sees the same time pass as `now`.
    """

    def __init__(self, start: datetime | None = None) -> None:
        start = start if start is not None else datetime.now(UTC)
        if start.tzinfo is None:
            raise ValueError("a ManualClock starts at an aware datetime")
        self.start = start
        self.elapsed = 0.0  # seconds since `start`

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        return self.elapsed

    def advance(self, by: timedelta | float) -> datetime:
        """Move forward by `by` (a timedelta, or seconds); returns the new time. Time never runs backwards."""
        seconds = by.total_seconds() if isinstance(by, timedelta) else float(by)
        if seconds < 0:
            raise ValueError("a clock does not run backwards")
        self.elapsed += seconds
        return self.now()


SYSTEM_CLOCK = SystemClock()
