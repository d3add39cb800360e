"""Who is on call: a schedule's rotations and overrides, read at an instant in the tenant's time zone (pure).

A rotation hands the pager from one member to the next, in order, every day (``daily``) or every seven days
(``weekly``, on the weekday of its ``start``) at ``handoff_time``, wall-clock time in the tenant's zone, from its
``start`` date on. A schedule holds rotations in the order they take effect: each runs from its start until the
next one starts (a new roster replaces the old one on a date), so once the first has started there is no gap.
Before the first rotation starts nobody is on call (the stated behaviour for that gap: an escalation step naming
the schedule reaches nobody through it, and the chain's next step still fires). An override puts one user on call
from ``start`` to ``end`` (instants) over whatever the rotations say; overrides may not overlap.

Handoffs follow the wall clock across daylight-saving changes: an 08:00 handoff is at 08:00 local on both sides
of the change (so the shift around it is 23 or 25 hours long). A handoff at a wall time the clock skips (02:30 on
the night the clocks go forward) happens at the instant that time would have been (03:30 new time); one at a
time that occurs twice happens at its first occurrence.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = ["HANDOFFS", "OnCall", "Override", "Rotation", "Schedule", "ScheduleError"]

HANDOFFS = {"daily": 1, "weekly": 7}


class ScheduleError(ValueError):
    """A schedule that cannot be used; ``field`` is the offending value's path (``overrides[1].start``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Rotation:
    """Members in order, handing off every ``handoff`` (``daily``/``weekly``) at ``handoff_time`` from ``start``."""

    members: tuple[str, ...]
    handoff: str
    handoff_time: time
    start: date

    def handoff_at(self, day: date, zone: ZoneInfo) -> datetime:
        """The instant of the handoff on ``day``, in UTC (fold 0: the first of a repeated wall time; a skipped one
        is read with the offset before the change). In UTC because Python compares two datetimes of one tzinfo by
        their wall clocks, which is wrong across a change."""
        return datetime.combine(day, self.handoff_time, zone).astimezone(UTC)

    def shift(self, at: datetime, zone: ZoneInfo) -> tuple[int, datetime] | None:
        """(index of the shift holding ``at``, when that shift ends); None before the rotation starts.

        >>> rota = Rotation(("ann", "bob"), "daily", time(8), date(2026, 3, 7))
        >>> chicago = ZoneInfo("America/Chicago")
        >>> rota.shift(datetime(2026, 3, 8, 7, 59, tzinfo=chicago), chicago)[0]
        0
        >>> n, ends = rota.shift(datetime(2026, 3, 8, 8, 0, tzinfo=chicago), chicago); n, ends.isoformat()
        (1, '2026-03-09T13:00:00+00:00')
        """
        period = HANDOFFS[self.handoff]
        at = at.astimezone(UTC)
        first = self.handoff_at(self.start, zone)
        if at < first:
            return None
        local = at.astimezone(zone)
        days = (local.date() - self.start).days
        if at < self.handoff_at(local.date(), zone):
            days -= 1
        index = days // period
        return index, self.handoff_at(self.start + timedelta(days=(index + 1) * period), zone)

    def member_at(self, at: datetime, zone: ZoneInfo) -> tuple[str, datetime] | None:
        """(who holds the pager at ``at``, until when); None before the start.

        >>> rota = Rotation(("ann", "bob", "cy"), "weekly", time(9), date(2026, 1, 5))
        >>> utc = ZoneInfo("UTC")
        >>> [rota.member_at(datetime(2026, 1, d, 12, tzinfo=utc), utc)[0] for d in (5, 11, 12, 19, 26)]
        ['ann', 'ann', 'bob', 'cy', 'ann']
        """
        found = self.shift(at, zone)
        if found is None:
            return None
        index, ends = found
        return self.members[index % len(self.members)], ends


@dataclass(frozen=True)
class Override:
    """``user`` on call from ``start`` (inclusive) to ``end`` (exclusive)."""

    user: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class OnCall:
    """Who is on call at an instant (None: nobody), why (``override``, ``rotation`` or ``none``), and until when
    that answer holds (None: for good, as far as the schedule says)."""

    user: str | None
    source: str
    until: datetime | None
    rotation: int | None = None


class Schedule:
    """A checked schedule; `on_call` answers who holds the pager.

    >>> zone = "Europe/Oslo"
    >>> schedule = Schedule([Rotation(("ann", "bob"), "daily", time(8), date(2026, 1, 1))], [
    ...     Override("cy", datetime(2026, 1, 2, 12, tzinfo=ZoneInfo("UTC")),
    ...              datetime(2026, 1, 2, 14, tzinfo=ZoneInfo("UTC")))], zone)
    >>> [schedule.on_call(datetime(2026, 1, 2, h, tzinfo=ZoneInfo("UTC"))).user for h in (6, 7, 12, 14)]
    ['ann', 'bob', 'cy', 'bob']
    >>> schedule.on_call(datetime(2025, 12, 31, tzinfo=ZoneInfo("UTC"))).source  # before the first rotation
    'none'
    """

    def __init__(self, rotations: Sequence[Rotation], overrides: Sequence[Override], zone: str) -> None:
        self.rotations = tuple(rotations)
        self.overrides = tuple(sorted(overrides, key=lambda o: o.start))
        self.zone = zone
        self._zone = ZoneInfo(zone)
        check(self.rotations, list(overrides))

    def on_call(self, at: datetime) -> OnCall:
        if at.tzinfo is None:
            raise ValueError("an instant with its offset is required")
        at = at.astimezone(UTC)
        for override in self.overrides:
            if override.start <= at < override.end:
                return OnCall(override.user, "override", override.end)
        next_override = next((o.start for o in self.overrides if o.start > at), None)
        for i in range(len(self.rotations) - 1, -1, -1):
            found = self.rotations[i].member_at(at, self._zone)
            if found is None:
                continue
            user, ends = found
            if i + 1 < len(self.rotations):
                ends = min(ends, self.rotations[i + 1].handoff_at(self.rotations[i + 1].start, self._zone))
            return OnCall(user, "rotation", _earliest(ends, next_override), rotation=i)
        first = self.rotations[0].handoff_at(self.rotations[0].start, self._zone) if self.rotations else None
        return OnCall(None, "none", _earliest(first, next_override))


def _earliest(*instants: datetime | None) -> datetime | None:
    known = [i for i in instants if i is not None]
    return min(known) if known else None


def check(rotations: Sequence[Rotation], overrides: Sequence[Override]) -> None:
    """Refuse what cannot be used, naming the field: a rotation without members or with one twice, rotations not
    in the order they start, an override that ends before it starts or overlaps another.

    >>> utc = ZoneInfo("UTC")
    >>> check([Rotation(("ann",), "daily", time(8), date(2026, 1, 1))], [  # doctest: +ELLIPSIS
    ...     Override("bob", datetime(2026, 1, 2, tzinfo=utc), datetime(2026, 1, 4, tzinfo=utc)),
    ...     Override("cy", datetime(2026, 1, 3, tzinfo=utc), datetime(2026, 1, 5, tzinfo=utc))])
    Traceback (most recent call last):
    ...
    notify.oncall.ScheduleError: overrides[1].start: overlaps overrides[0] (2026-01-02T00:00:00+00:00 to ...)
    """
    if not rotations:
        raise ScheduleError("rotations", "at least one rotation is required")
    for i, rotation in enumerate(rotations):
        if not rotation.members:
            raise ScheduleError(f"rotations[{i}].members", "at least one member is required")
        if len(set(rotation.members)) != len(rotation.members):
            raise ScheduleError(f"rotations[{i}].members", "a member is listed twice")
        if rotation.handoff not in HANDOFFS:
            raise ScheduleError(f"rotations[{i}].handoff", "daily or weekly")
        if i and rotation.start <= rotations[i - 1].start:
            raise ScheduleError(f"rotations[{i}].start", f"must be after rotations[{i - 1}].start (rotations are"
                                " listed in the order they take effect)")
    for i, override in enumerate(overrides):
        if override.start.tzinfo is None or override.end.tzinfo is None:
            raise ScheduleError(f"overrides[{i}].start", "instants with their UTC offset are required")
        if override.end <= override.start:
            raise ScheduleError(f"overrides[{i}].end", "must be after start")
        for j, other in enumerate(overrides[:i]):
            if override.start < other.end and other.start < override.end:
                raise ScheduleError(f"overrides[{i}].start", f"overlaps overrides[{j}] ({other.start.isoformat()}"
                                    f" to {other.end.isoformat()})")
