"""models/sync.py without IO: every strategy settles two offline edits the same way in both sync orders."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.sync import (
    DELETED,
    ROLES,
    STRATEGIES,
    Change,
    Clock,
    FieldRoles,
    FutureVersion,
    MemoryStore,
    Record,
    Stamp,
    UnknownRecord,
    apply_change,
    copy_id,
    external_stamps,
    resolve_review,
    strategy_for,
)
from schema.errors import InvalidInput, NotFound

pytestmark = pytest.mark.fast  # no Ray, no Serve: `./wp test -m fast`

T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
RID = "5c4e1f9a-8d2b-4b0e-9f6a-1c2d3e4f5a6b"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def seeded(entity: str, data: dict[str, Any]) -> MemoryStore:
    store = MemoryStore()
    store.apply(Change("e-seed", "office", "create", RID, 0, at(0), data), strategy_for(entity), ROLES[entity])
    return store


def both_orders(entity: str, seed: dict[str, Any], a: Change, b: Change) -> tuple[MemoryStore, MemoryStore]:
    stores = []
    for first, second in ((a, b), (b, a)):
        store = seeded(entity, seed)
        store.apply(first, strategy_for(entity), ROLES[entity])
        store.apply(second, strategy_for(entity), ROLES[entity])
        stores.append(store)
    return stores[0], stores[1]


def edit(event: str, device: str, seconds: float, data: dict[str, Any], *, op: str = "update",
         base: int = 1) -> Change:
    return Change(event, device, op, RID, base, at(seconds), data)


def same_outcome(x: MemoryStore, y: MemoryStore) -> None:
    assert x.records[RID].state == y.records[RID].state
    assert x.records[RID].version == y.records[RID].version
    assert x.records[RID].pending_review == y.records[RID].pending_review
    assert {k: v.state for k, v in x.copies.items()} == {k: v.state for k, v in y.copies.items()}


READING = {"equipment_id": "PJ-1", "sensor": "tubing_psi", "value": 800.0, "unit": "psi",
           "read_at": "2026-11-22T05:00:00Z", "notes": None}
PRODUCTION = {"well_id": "W-1", "day": "2026-11-21", "oil_bbl": 100.0, "gas_mcf": 50.0, "water_bbl": 20.0,
              "notes": None}
INSPECTION = {"equipment_id": "PJ-1", "inspected_at": "2026-11-22T05:00:00Z", "findings": [], "notes": "ok"}
NOTE = {"text": "pump ok", "title": "", "tags": ["pump"]}
ATTACHMENT = {"filename": "a.jpg", "caption": "wellhead", "sha256": None}


def test_newest_wins_both_orders_and_ties_break_by_event_id() -> None:
    a = edit("ev-a", "tab-a", 5, {"value": 812.0})
    b = edit("ev-b", "tab-b", 9, {"value": 790.0})
    x, y = both_orders("manual_reading", READING, a, b)
    same_outcome(x, y)
    assert x.records[RID].state["value"] == 790.0
    assert [o.kind for o in x.outcomes[1:]] == ["applied", "won"]
    assert [o.kind for o in y.outcomes[1:]] == ["applied", "lost"]
    # Equal client timestamps: the larger event id wins, in both orders.
    a2, b2 = edit("ev-1", "tab-a", 5, {"value": 1.0}), edit("ev-2", "tab-b", 5, {"value": 2.0})
    x, y = both_orders("manual_reading", READING, a2, b2)
    same_outcome(x, y)
    assert x.records[RID].state["value"] == 2.0


def test_highest_value_keeps_the_larger_volume_and_newest_for_the_rest() -> None:
    a = edit("ev-a", "tab-a", 9, {"oil_bbl": 120.0, "notes": "from a"})  # newer, higher oil
    b = edit("ev-b", "tab-b", 5, {"oil_bbl": 95.0, "gas_mcf": 61.0, "notes": "from b"})
    x, y = both_orders("production_record", PRODUCTION, a, b)
    same_outcome(x, y)
    state = x.records[RID].state
    assert (state["oil_bbl"], state["gas_mcf"], state["notes"]) == (120.0, 61.0, "from a")
    # Lowering a volume is fine when nobody else touched it (a correction, not a conflict).
    store = seeded("production_record", PRODUCTION)
    out = store.apply(edit("ev-c", "tab-a", 5, {"oil_bbl": 90.0}), strategy_for("production_record"),
                      ROLES["production_record"])
    assert out.kind == "applied" and store.records[RID].state["oil_bbl"] == 90.0


def test_highest_value_keeps_a_record_another_device_deleted() -> None:
    a = edit("ev-a", "tab-a", 9, {}, op="delete")
    b = edit("ev-b", "tab-b", 5, {"oil_bbl": 130.0})
    x, y = both_orders("production_record", PRODUCTION, a, b)
    same_outcome(x, y)
    assert x.records[RID].state[DELETED] is False and x.records[RID].state["oil_bbl"] == 130.0


def test_manual_review_settles_nothing_and_is_order_independent() -> None:
    a = edit("ev-a", "tab-a", 5, {"notes": "valve leaking", "findings": [{"description": "leak",
                                                                          "severity": "critical"}]})
    b = edit("ev-b", "tab-b", 9, {"notes": "all good"})
    x, y = both_orders("inspection", INSPECTION, a, b)
    same_outcome(x, y)
    record = x.records[RID]
    # Back to the last agreed version, both candidates waiting, identical in both orders.
    assert record.pending_review and record.state["notes"] == "ok" and record.state["findings"] == []
    assert x.outcomes[-1].kind == y.outcomes[-1].kind == "pending"
    assert x.outcomes[-1].candidates == y.outcomes[-1].candidates
    assert set(x.outcomes[-1].candidates) == {"ev-a", "ev-b"}
    # A third edit while pending waits too; a person then decides.
    late = x.apply(edit("ev-c", "tab-c", 12, {"notes": "rechecked"}, base=3), strategy_for("inspection"))
    assert late.kind == "pending" and x.records[RID].state["notes"] == "ok"
    done = resolve_review(x.records[RID], x.outcomes[-2].candidates["ev-a"], reviewer="review:boss",
                          clock=Clock(at(20), "rev-1"))
    assert not done.pending_review and done.state["notes"] == "valve leaking"


def test_merge_keeps_both_texts_and_unions_tags() -> None:
    a = edit("ev-a", "tab-a", 5, {"text": "pump ok\nbelt worn", "tags": ["pump", "belt"]})
    b = edit("ev-b", "tab-b", 9, {"text": "pump ok\noil low", "tags": ["oil"]})
    x, y = both_orders("note", NOTE, a, b)
    same_outcome(x, y)
    state = x.records[RID].state
    assert state["text"] == "pump ok\nbelt worn\noil low"
    assert state["tags"] == ["pump", "belt", "oil"]
    assert x.outcomes[-1].kind == y.outcomes[-1].kind == "merged"


def test_keep_both_keeps_the_losing_version_as_a_copy() -> None:
    a = edit("ev-a", "tab-a", 5, {"caption": "before repair", "sha256": "a" * 64})
    b = edit("ev-b", "tab-b", 9, {"caption": "after repair"})
    x, y = both_orders("attachment", ATTACHMENT, a, b)
    same_outcome(x, y)
    assert x.records[RID].state["caption"] == "after repair"
    assert x.records[RID].state["sha256"] == "a" * 64  # a field only one side wrote is kept
    assert list(x.copies) == [copy_id(RID, "ev-a")]
    assert x.copies[copy_id(RID, "ev-a")].state["caption"] == "before repair"
    assert x.outcomes[-1].kind == "kept_both" and y.outcomes[-1].kind == "kept_both"


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_disjoint_edits_both_apply_with_any_strategy_but_review(name: str) -> None:
    a = edit("ev-a", "tab-a", 5, {"title": "A"})
    b = edit("ev-b", "tab-b", 9, {"text": "B"})
    for first, second in ((a, b), (b, a)):
        store = seeded("note", NOTE)
        store.apply(first, STRATEGIES[name], ROLES["note"])
        out = store.apply(second, STRATEGIES[name], ROLES["note"])
        if name == "manual_review":
            assert out.kind == "pending"
        else:
            assert out.kind == "applied" and not out.conflicts
            assert (store.records[RID].state["title"], store.records[RID].state["text"]) == ("A", "B")


def test_a_device_never_conflicts_with_itself() -> None:
    store = seeded("manual_reading", READING)
    nw = strategy_for("manual_reading")
    store.apply(edit("ev-1", "tab-a", 5, {"value": 1.0}), nw)
    out = store.apply(edit("ev-2", "tab-a", 4, {"value": 2.0}), nw)  # same base, same device, older clock
    assert out.kind == "applied" and store.records[RID].state["value"] == 2.0


def test_unknown_records_and_future_versions_are_refused() -> None:
    nw = strategy_for("manual_reading")
    with pytest.raises(UnknownRecord) as unknown:
        apply_change(None, edit("ev", "tab", 1, {"value": 1.0}), nw)
    assert unknown.value.field == "id" and isinstance(unknown.value, NotFound)
    record = seeded("manual_reading", READING).records[RID]
    with pytest.raises(FutureVersion) as future:
        apply_change(record, edit("ev", "tab", 1, {"value": 1.0}, base=7), nw)
    assert future.value.field == "version" and "version 1" in future.value.message
    assert isinstance(future.value, InvalidInput)


def test_api_writes_are_concurrent_with_stale_device_changes() -> None:
    t = at(30)
    stamps = {"oil_bbl": Stamp(1, "tab", Clock(at(0), "e0"))}
    stamps = external_stamps(stamps, {"oil_bbl": 100.0}, {"oil_bbl": 140.0}, 2, t)
    record = Record({"oil_bbl": 140.0, DELETED: False}, 2, stamps)
    out = apply_change(record, edit("ev", "tab-b", 10, {"oil_bbl": 110.0}), strategy_for("production_record"),
                       ROLES["production_record"])
    assert out.kind == "lost" and out.record.state["oil_bbl"] == 140.0


# ----------------------------------------------------------------------------- properties

TEXTS = st.one_of(st.none(), st.sampled_from(["x", "y", "x\ny", "y\nz"]))
FIELD_VALUES = {"value": st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)), "notes": TEXTS,
                "text": TEXTS, "title": TEXTS,
                "tags": st.one_of(st.none(), st.lists(st.sampled_from(["a", "b", "c"]), max_size=3, unique=True))}
PATCH = st.fixed_dictionaries({}, optional=FIELD_VALUES)
ROLES_ALL = FieldRoles(quantities=frozenset({"value"}), texts=frozenset({"notes", "text"}),
                       lists=frozenset({"tags"}))


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(STRATEGIES)), pa=PATCH, pb=PATCH, ta=st.integers(0, 3), tb=st.integers(0, 3),
       delete_a=st.booleans(), delete_b=st.booleans())
def test_any_two_concurrent_changes_commute(name: str, pa: dict, pb: dict, ta: int, tb: int, delete_a: bool,
                                            delete_b: bool) -> None:
    """Whatever two devices change from the same base, the sync order does not change the result."""
    a = Change("ev-a", "tab-a", "delete" if delete_a else "update", RID, 1, at(ta), pa)
    b = Change("ev-b", "tab-b", "delete" if delete_b else "update", RID, 1, at(tb), pb)
    results = []
    for first, second in ((a, b), (b, a)):
        store = MemoryStore()
        seed = Change("e0", "office", "create", RID, 0, at(0), {"value": 1.0, "notes": "x", "text": "y",
                                                                "tags": ["t"], "title": "z"})
        store.replay([seed, first, second], STRATEGIES[name], ROLES_ALL)
        record = store.records[RID]
        results.append((record.state, record.version, record.pending_review,
                        {k: c.state for k, c in store.copies.items()},
                        store.outcomes[-1].candidates if record.pending_review else None))
    assert results[0] == results[1]
