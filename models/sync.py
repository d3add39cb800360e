"""Conflict resolution for offline sync: pure, deterministic, no IO.

A synced record is a dict of field values plus, per field, a :class:`Stamp`: the record version
that last wrote the field, the device that wrote it, and that writer's :class:`Clock` (client
timestamp, then event id: a total order, so ties between equal timestamps break the same way
everywhere). Deletion is the pseudo-field ``_deleted``: a delete writes ``True``, every create or
update writes ``False``, so a delete and a concurrent edit meet like any two writes of one field.

A :class:`Change` names the version it was based on. A field written after that version by
*another* device is concurrent with it; only such fields can conflict. Fields the change's device
wrote itself, or that nobody touched since its base, are simply written. Where both sides wrote a
field with different values, the entity type's :class:`Strategy` settles it:

- :class:`NewestWins`: the write with the later clock.
- :class:`HighestValue`: the larger number for quantity fields (production volumes), newest for the
  rest; keeping a record beats deleting it.
- :class:`Merge`: texts keep the lines of both versions, lists the union; newest for the rest.
- :class:`KeepBoth`: newest wins on the record, and each version that lost a field is kept whole
  as a copy (a record of its own, with an id derived from the record's and the version's).
- :class:`ManualReview`: nothing is settled. The record goes back to its state at the change's
  base (the last version everyone agreed on), every concurrent version waits in the conflict, and
  later changes queue there too until a person chooses (:func:`resolve_review`).

Every settlement depends only on the two versions and their clocks, never on which one arrived
first, so two devices that edited the same record offline end in the same state whichever syncs
first (the :class:`MemoryStore` doctest below, and tests/test_models_sync.py for every strategy).

>>> from datetime import datetime, UTC
>>> t = lambda s: datetime(2026, 11, 22, 6, 0, s, tzinfo=UTC)
>>> def run(order):
...     store = MemoryStore()
...     store.apply(Change("e0", "tablet-0", "create", "r1", 0, t(0), {"value": 10.0}), NewestWins())
...     edits = {"a": Change("ea", "tablet-a", "update", "r1", 1, t(5), {"value": 12.5}),
...              "b": Change("eb", "tablet-b", "update", "r1", 1, t(9), {"value": 11.0})}
...     kinds = [store.apply(edits[k], NewestWins()).kind for k in order]
...     return store.records["r1"].state["value"], kinds
>>> run("ab"), run("ba")
((11.0, ['applied', 'won']), (11.0, ['applied', 'lost']))
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ClassVar

from schema.errors import DomainError, InvalidInput, NotFound
from schema.sync import DEFAULT_STRATEGIES

__all__ = [
    "API_DEVICE",
    "DELETED",
    "ROLES",
    "STRATEGIES",
    "Change",
    "Clock",
    "Copy",
    "FieldConflict",
    "FieldRoles",
    "FutureVersion",
    "HighestValue",
    "History",
    "KeepBoth",
    "ManualReview",
    "MemoryStore",
    "Merge",
    "NewestWins",
    "Outcome",
    "Record",
    "Stamp",
    "Strategy",
    "SyncRuleError",
    "UnknownRecord",
    "apply_change",
    "concurrent_events",
    "copy_id",
    "decode_stamps",
    "encode_stamps",
    "external_stamps",
    "history_needed",
    "merge_lists",
    "merge_text",
    "new_record",
    "resolve_review",
    "strategy_for",
]

DELETED = "_deleted"
API_DEVICE = "api"  # writes made outside sync (the REST API): no device, clock = the row's updated_at
_COPY_NAMESPACE = uuid.UUID("6f1c2a57-58d0-4c39-9a55-2f0c3d0a9e11")


class SyncRuleError(DomainError):
    """A change that cannot be applied at all; ``field`` names what is wrong with it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, [{"field": field, "message": message}])
        self.field = field


class UnknownRecord(SyncRuleError, NotFound):
    """An update or delete of a record that does not exist."""


class FutureVersion(SyncRuleError, InvalidInput):
    """A change based on a version the record has not reached."""


# ---------------------------------------------------------------- value objects


@dataclass(frozen=True, order=True)
class Clock:
    """When a version was written: client timestamp, then event id (unique), so never a tie."""

    ts: datetime
    event_id: str


@dataclass(frozen=True)
class Stamp:
    """Who last wrote a field: at which record version, from which device, with which clock."""

    version: int
    device: str
    clock: Clock

    def to_json(self) -> list[Any]:
        """``[version, device, ts, event_id]``, the shape the store keeps.

        >>> from datetime import UTC
        >>> s = Stamp(2, "tab-1", Clock(datetime(2026, 1, 2, tzinfo=UTC), "ev"))
        >>> Stamp.from_json(s.to_json()) == s
        True
        """
        return [self.version, self.device, self.clock.ts.isoformat(), self.clock.event_id]

    @classmethod
    def from_json(cls, value: list[Any]) -> Stamp:
        version, device, ts, event_id = value
        return cls(int(version), str(device), Clock(datetime.fromisoformat(ts), str(event_id)))


@dataclass(frozen=True)
class Change:
    """One change from a device. ``data`` holds JSON values (the fields set; nothing for a delete)."""

    event_id: str
    device: str
    op: str  # create | update | delete
    record_id: str
    base_version: int
    ts: datetime
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def clock(self) -> Clock:
        return Clock(self.ts, self.event_id)

    def patch(self) -> dict[str, Any]:
        """The fields this change writes, ``_deleted`` included."""
        if self.op == "delete":
            return {DELETED: True}
        return {**self.data, DELETED: False}


@dataclass
class Record:
    """The synced state of one record: values, version, a stamp per field, a pending review."""

    state: dict[str, Any]
    version: int
    stamps: dict[str, Stamp]
    pending_review: bool = False


@dataclass(frozen=True)
class FieldRoles:
    """Which fields of an entity the value-aware strategies treat specially."""

    quantities: frozenset[str] = frozenset()  # HighestValue keeps the larger
    texts: frozenset[str] = frozenset()  # Merge keeps the lines of both
    lists: frozenset[str] = frozenset()  # Merge keeps the union


ROLES: dict[str, FieldRoles] = {
    "manual_reading": FieldRoles(quantities=frozenset({"value"}), texts=frozenset({"notes"})),
    "production_record": FieldRoles(quantities=frozenset({"oil_bbl", "gas_mcf", "water_bbl"}),
                                    texts=frozenset({"notes"})),
    "maintenance_record": FieldRoles(texts=frozenset({"description"})),
    "inspection": FieldRoles(texts=frozenset({"notes"}), lists=frozenset({"findings"})),
    "note": FieldRoles(texts=frozenset({"text"}), lists=frozenset({"tags"})),
    "attachment": FieldRoles(texts=frozenset({"caption"})),
}


@dataclass(frozen=True)
class FieldConflict:
    """One field both sides wrote differently, and what it became."""

    field: str
    server: Any
    client: Any
    result: Any


@dataclass(frozen=True)
class Copy:
    """KeepBoth: a losing version kept as a record of its own."""

    record_id: str
    of_record: str
    event_id: str
    device: str
    clock: Clock
    state: dict[str, Any]


@dataclass(frozen=True)
class History:
    """What ManualReview and KeepBoth need beyond the record: its state at the change's base version
    (None: it did not exist then) and the concurrent versions already applied, by event id."""

    base: Mapping[str, Any] | None
    changes: Mapping[str, Change]


@dataclass(frozen=True)
class Outcome:
    """``kind``: applied (nothing concurrent, or no field in dispute), won, lost, merged (some of
    each, or values combined), kept_both, pending (held for review)."""

    kind: str
    record: Record
    conflicts: tuple[FieldConflict, ...] = ()
    concurrent: tuple[str, ...] = ()  # event ids of the concurrent versions (review: those that wait)
    copies: tuple[Copy, ...] = ()
    candidates: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # review: event id -> whole state

    @property
    def is_conflict(self) -> bool:
        return bool(self.conflicts) or self.kind in ("pending", "kept_both")


# ---------------------------------------------------------------- strategies


class Strategy(ABC):
    """How a field written differently by two concurrent versions is settled.

    ``resolve`` gets the server's value and clock, then the incoming ones, and must give the
    same answer with the two sides swapped (that is what makes the sync order irrelevant).
    """

    name: ClassVar[str]
    review: ClassVar[bool] = False
    keeps_both: ClassVar[bool] = False

    @abstractmethod
    def resolve(self, name: str, roles: FieldRoles, ours: Any, our_clock: Clock, theirs: Any,
                their_clock: Clock) -> Any: ...


class NewestWins(Strategy):
    """The later clock wins.

    >>> from datetime import UTC
    >>> a, b = Clock(datetime(2026, 1, 1, tzinfo=UTC), "a"), Clock(datetime(2026, 1, 1, tzinfo=UTC), "b")
    >>> nw = NewestWins()
    >>> nw.resolve("value", FieldRoles(), 1.0, a, 2.0, b), nw.resolve("value", FieldRoles(), 2.0, b, 1.0, a)
    (2.0, 2.0)
    """

    name = "newest_wins"

    def resolve(self, name: str, roles: FieldRoles, ours: Any, our_clock: Clock, theirs: Any,
                their_clock: Clock) -> Any:
        return theirs if their_clock > our_clock else ours


class HighestValue(NewestWins):
    """Quantities keep the larger value (a missing one counts as lowest); a record is kept rather than deleted.

    >>> from datetime import UTC
    >>> c, hv, roles = Clock(datetime(2026, 1, 1, tzinfo=UTC), "x"), HighestValue(), ROLES["production_record"]
    >>> hv.resolve("oil_bbl", roles, 120.0, c, 95.5, c), hv.resolve(DELETED, roles, True, c, False, c)
    (120.0, False)
    """

    name = "highest_value"

    def resolve(self, name: str, roles: FieldRoles, ours: Any, our_clock: Clock, theirs: Any,
                their_clock: Clock) -> Any:
        if name in roles.quantities:
            return _highest(ours, theirs)
        if name == DELETED:
            return bool(ours) and bool(theirs)
        return super().resolve(name, roles, ours, our_clock, theirs, their_clock)


class Merge(NewestWins):
    """Texts keep the lines of both versions (older first), lists their union; a record is kept
    rather than deleted; other fields newest wins.

    >>> from datetime import UTC
    >>> old, new = Clock(datetime(2026, 1, 1, tzinfo=UTC), "a"), Clock(datetime(2026, 1, 2, tzinfo=UTC), "b")
    >>> Merge().resolve("text", ROLES["note"], "pump ok\\nbelt worn", old, "pump ok\\noil low", new)
    'pump ok\\nbelt worn\\noil low'
    """

    name = "merge"

    def resolve(self, name: str, roles: FieldRoles, ours: Any, our_clock: Clock, theirs: Any,
                their_clock: Clock) -> Any:
        older, newer = (ours, theirs) if our_clock < their_clock else (theirs, ours)
        if name in roles.texts:
            return merge_text(older, newer)
        if name in roles.lists:
            return merge_lists(older, newer)
        if name == DELETED:
            return bool(ours) and bool(theirs)
        return super().resolve(name, roles, ours, our_clock, theirs, their_clock)


class KeepBoth(NewestWins):
    """Newest wins on the record; every version that lost a field is kept whole as a copy."""

    name = "keep_both"
    keeps_both = True


class ManualReview(Strategy):
    """Never settled automatically: see the module docstring."""

    name = "manual_review"
    review = True

    def resolve(self, name: str, roles: FieldRoles, ours: Any, our_clock: Clock, theirs: Any,
                their_clock: Clock) -> Any:
        raise AssertionError("manual review settles nothing by itself")


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (NewestWins(), HighestValue(), Merge(), KeepBoth(),
                                                       ManualReview())}


def strategy_for(entity: str, overrides: Mapping[str, str] | None = None) -> Strategy:
    """The tenant's strategy for an entity type: its ``sync_strategies`` setting over the defaults.

    >>> strategy_for("note").name, strategy_for("note", {"note": "newest_wins"}).name
    ('merge', 'newest_wins')
    """
    name = (overrides or {}).get(entity) or DEFAULT_STRATEGIES[entity]
    return STRATEGIES[name]


def _highest(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return b if a is None else a
    return max(a, b)


def merge_text(older: str | None, newer: str | None) -> str | None:
    """Both texts kept: the older one, then the lines of the newer one it does not have.

    >>> merge_text("pump ok", "pump ok\\nbelt worn")
    'pump ok\\nbelt worn'
    >>> merge_text("pump ok\\nbelt worn", "pump ok")
    'pump ok\\nbelt worn'
    >>> merge_text("gauge stuck", "replaced gauge")
    'gauge stuck\\nreplaced gauge'
    >>> merge_text(None, "x"), merge_text("x", None)
    ('x', 'x')
    """
    if not older or not newer:
        return newer or older
    lines = older.splitlines()
    seen = set(lines)
    extra = [line for line in newer.splitlines() if line not in seen]
    return "\n".join(lines + extra) if extra else older


def merge_lists(older: list[Any] | None, newer: list[Any] | None) -> list[Any]:
    """Union, older items first.

    >>> merge_lists(["pump", "leak"], ["leak", "urgent"])
    ['pump', 'leak', 'urgent']
    """
    out = list(older or [])
    out.extend(item for item in (newer or []) if item not in out)
    return out


# ---------------------------------------------------------------- applying a change


def copy_id(record_id: str, event_id: str) -> str:
    """The id of the copy KeepBoth makes of a losing version: the same whichever order they came in.

    >>> copy_id("0b9f7f4e-1a0e-4c3e-9a57-3f3c1d2e4b5a", "ev-1")
    '673f2fc1-98dd-51ef-884b-80d02435280b'
    """
    return str(uuid.uuid5(_COPY_NAMESPACE, f"{record_id}:{event_id}"))


def new_record(change: Change, defaults: Mapping[str, Any] | None = None) -> Record:
    """A record created by ``change``: the defaults, then its fields, all stamped with it."""
    state = {**(defaults or {}), **change.patch()}
    stamp = Stamp(1, change.device, change.clock)
    return Record(state=state, version=1, stamps={name: stamp for name in state})


def _concurrent(record: Record, change: Change) -> dict[str, Stamp]:
    """Fields another device wrote after the change's base version."""
    return {name: s for name, s in record.stamps.items()
            if s.version > change.base_version and s.device != change.device}


def history_needed(record: Record | None, change: Change, strategy: Strategy) -> bool:
    """Whether `apply_change` needs a `History` (the record's base state and concurrent versions)."""
    if record is None or record.pending_review:
        return False
    return (strategy.review or strategy.keeps_both) and bool(_concurrent(record, change))


def concurrent_events(record: Record, change: Change) -> set[str]:
    """Event ids of the versions concurrent with ``change`` (API writes have none)."""
    return {s.clock.event_id for s in _concurrent(record, change).values() if s.device != API_DEVICE}


def apply_change(record: Record | None, change: Change, strategy: Strategy, roles: FieldRoles = FieldRoles(), *,
                 defaults: Mapping[str, Any] | None = None, history: History | None = None) -> Outcome:
    """The record after ``change`` (a new `Record`; the argument is not modified).

    Raises `UnknownRecord` for an update or delete of a record that does not exist, and
    `FutureVersion` for a change based on a version the record has not reached.
    """
    if record is None:
        if change.op != "create":
            raise UnknownRecord("id", f"no record {change.record_id} to {change.op}")
        if change.base_version != 0:
            raise FutureVersion("version", f"record {change.record_id} does not exist: a create is based on version 0")
        return Outcome("applied", new_record(change, defaults))
    if change.base_version > record.version:
        raise FutureVersion("version", f"record {change.record_id} is at version {record.version}; "
                            f"this change is based on version {change.base_version}")
    version = record.version + 1
    concurrent = _concurrent(record, change)
    if record.pending_review or (strategy.review and concurrent):
        return _hold_for_review(record, change, concurrent, version, history)
    state, stamps = dict(record.state), dict(record.stamps)
    mine = Stamp(version, change.device, change.clock)
    conflicts: list[FieldConflict] = []
    lost: set[str] = set()  # event ids of versions that lost at least one field
    for name, value in change.patch().items():
        theirs = concurrent.get(name)
        if theirs is None:
            state[name], stamps[name] = value, mine
            continue
        current = record.state.get(name)
        later = max(theirs, mine, key=lambda s: s.clock)
        stamps[name] = Stamp(version, later.device, later.clock)
        if current == value:
            continue
        result = strategy.resolve(name, roles, current, theirs.clock, value, change.clock)
        state[name] = result
        conflicts.append(FieldConflict(name, current, value, result))
        if result != value:
            lost.add(change.event_id)
        if result != current:
            lost.add(theirs.clock.event_id)
    new = Record(state=state, version=version, stamps=stamps)
    if not conflicts:
        return Outcome("applied", new)
    concurrent_ids = tuple(sorted({s.clock.event_id for s in concurrent.values()}))
    if strategy.keeps_both:
        copies = _copies(record, change, lost, history)
        if copies:
            return Outcome("kept_both", new, tuple(conflicts), concurrent_ids, copies)
    won = all(c.result == c.client for c in conflicts)
    kept = all(c.result == c.server for c in conflicts)
    kind = "won" if won else "lost" if kept else "merged"
    return Outcome(kind, new, tuple(conflicts), concurrent_ids)


def _copies(record: Record, change: Change, losers: set[str], history: History | None) -> tuple[Copy, ...]:
    base = dict(history.base) if history and history.base is not None else {}
    versions = {change.event_id: change, **(dict(history.changes) if history else {})}
    out = []
    for event_id in sorted(losers):
        version = versions.get(event_id)
        if version is None:  # an API write: no device version to keep
            continue
        state = {**base, **version.patch()}
        out.append(Copy(copy_id(record_id=version.record_id, event_id=event_id), version.record_id, event_id,
                        version.device, version.clock, state))
    return tuple(out)


def _hold_for_review(record: Record, change: Change, concurrent: Mapping[str, Stamp], version: int,
                     history: History | None) -> Outcome:
    if record.pending_review:
        # Already waiting for a person: this version joins the others, the record stays as it is.
        state = dict(record.state)
        new = replace(record, version=version, stamps=dict(record.stamps))
        return Outcome("pending", new, (), (change.event_id,), (), {change.event_id: {**state, **change.patch()}})
    base = history.base if history else None
    state = dict(record.state)
    for name in concurrent:  # back to the last version both sides agreed on
        state[name] = (base or {}).get(name) if base is not None else state[name]
    if base is None:
        state[DELETED] = True  # no agreed version yet: nothing is shown until a person decides
    waiting = dict(history.changes) if history else {}
    waiting[change.event_id] = change
    candidates = {eid: {**state, **c.patch()} for eid, c in sorted(waiting.items())}
    new = Record(state=state, version=version, stamps=dict(record.stamps), pending_review=True)
    return Outcome("pending", new, (), tuple(sorted(waiting)), (), candidates)


def resolve_review(record: Record, chosen: Mapping[str, Any], *, reviewer: str, clock: Clock) -> Record:
    """The record after a person settled its review with the whole state ``chosen``.

    >>> from datetime import UTC
    >>> r = Record({"notes": "a", DELETED: False}, 3, {}, pending_review=True)
    >>> c = Clock(datetime(2026, 1, 1, tzinfo=UTC), "rev")
    >>> done = resolve_review(r, {"notes": "b", DELETED: False}, reviewer="review:ann", clock=c)
    >>> done.state["notes"], done.version, done.pending_review, done.stamps["notes"].device
    ('b', 4, False, 'review:ann')
    """
    version = record.version + 1
    state = {**record.state, **chosen}
    stamp = Stamp(version, reviewer, clock)
    return Record(state=state, version=version, stamps={name: stamp for name in state})


def external_stamps(stamps: Mapping[str, Stamp], known: Mapping[str, Any] | None, current: Mapping[str, Any],
                    version: int, updated_at: datetime) -> dict[str, Stamp]:
    """Stamps for fields changed outside sync (the REST API) since sync last wrote the record.

    ``known`` is the state sync left (None: sync never wrote it, so every field counts as written
    by the API). Such fields are stamped at the record's current ``version`` by `API_DEVICE`.

    >>> from datetime import UTC
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> old = {"oil_bbl": Stamp(2, "tab", Clock(t, "e1"))}
    >>> new = external_stamps(old, {"oil_bbl": 10.0, "notes": None}, {"oil_bbl": 10.0, "notes": "fixed"}, 3, t)
    >>> new["oil_bbl"].device, new["notes"].device, new["notes"].version
    ('tab', 'api', 3)
    """
    out = dict(stamps)
    api = Stamp(version, API_DEVICE, Clock(updated_at, ""))
    for name, value in current.items():
        if known is None or name not in known or known[name] != value:
            out[name] = api
    return out


def encode_stamps(stamps: Mapping[str, Stamp]) -> dict[str, list[Any]]:
    """Stamps as the store keeps them: the most common one under ``*``, the others by field.

    >>> from datetime import UTC
    >>> a = Stamp(1, "t", Clock(datetime(2026, 1, 1, tzinfo=UTC), "e1"))
    >>> b = Stamp(2, "u", Clock(datetime(2026, 1, 2, tzinfo=UTC), "e2"))
    >>> packed = encode_stamps({"x": a, "y": a, "z": b})
    >>> sorted(packed), decode_stamps(packed, ["x", "y", "z"]) == {"x": a, "y": a, "z": b}
    (['*', 'z'], True)
    """
    if not stamps:
        return {}
    values = list(stamps.values())
    first = values[0]
    if all(s is first for s in values):  # a new record: one stamp for every field
        return {"*": first.to_json()}
    counts = Counter(values)
    common = max(counts, key=lambda s: counts[s])
    out = {"*": common.to_json()}
    out.update({name: s.to_json() for name, s in stamps.items() if s != common})
    return out


def decode_stamps(packed: Mapping[str, list[Any]], fields: Iterable[str]) -> dict[str, Stamp]:
    star = Stamp.from_json(packed["*"]) if "*" in packed else None
    out: dict[str, Stamp] = {}
    for name in fields:
        if name in packed:
            out[name] = Stamp.from_json(packed[name])
        elif star is not None:
            out[name] = star
    return out


# ---------------------------------------------------------------- an in-memory store


class MemoryStore:
    """The records, their past states and the applied changes, in memory: the projection that the
    database holds, for tests and replays. ``apply`` fetches the `History` a strategy needs."""

    def __init__(self) -> None:
        self.records: dict[str, Record] = {}
        self.states: dict[tuple[str, int], dict[str, Any]] = {}  # (record id, version) -> state
        self.changes: dict[str, Change] = {}
        self.copies: dict[str, Copy] = {}
        self.outcomes: list[Outcome] = []

    def apply(self, change: Change, strategy: Strategy, roles: FieldRoles = FieldRoles()) -> Outcome:
        record = self.records.get(change.record_id)
        history = None
        if history_needed(record, change, strategy):
            assert record is not None  # noqa: S101  narrows a type; not a check of input
            base = self.states.get((change.record_id, change.base_version))
            ids = concurrent_events(record, change)
            history = History(base, {e: self.changes[e] for e in ids if e in self.changes})
        outcome = apply_change(record, change, strategy, roles, history=history)
        self.records[change.record_id] = outcome.record
        self.states[(change.record_id, outcome.record.version)] = dict(outcome.record.state)
        self.changes[change.event_id] = change
        for c in outcome.copies:
            self.copies[c.record_id] = c
        self.outcomes.append(outcome)
        return outcome

    def replay(self, changes: Iterable[Change], strategy: Strategy, roles: FieldRoles = FieldRoles()) -> MemoryStore:
        for change in changes:
            self.apply(change, strategy, roles)
        return self

