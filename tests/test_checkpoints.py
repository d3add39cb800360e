"""Durable model checkpoints (issue 19): a versioned document of stable type tags, not a pickle of classes.

Pure tests of the codec (`models.state`) and of the registry (`models.checkpoint`) on fully warmed models of every
equipment type, the committed checkpoint of format 1 (`tests/data/`: every later version must keep restoring it),
the migration from the pickles of earlier versions, and one test against the real actors: an old pickle is
re-written in today's format, a document this version cannot read gives a fresh model.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import subprocess
import sys
import zlib
from collections import Counter, defaultdict, deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import ray

from actors.common import NAMESPACE
from actors.equipment import restore_entity
from config.secrets import sign_blob, verify_blob
from models import MODEL_VERSION, EquipmentState, FailurePredictor, Snapshot
from models.checkpoint import CODEC, StateError, is_pickle
from models.state import StateCodec
from schema.equipment import EquipmentType
from sim import EquipmentSpec, Fault, FaultKind, FeedSimulator
from sim.fleet import FLEET_MIX
from tests.helpers import create_tenant, new_tenant_id, now_utc, publish, snapshot, wait_for

FIXTURE = Path(__file__).parent / "data" / "checkpoint_format1_pump_jack.bin"
T0 = datetime(2026, 3, 2, tzinfo=UTC)
POLL = timedelta(minutes=1)
WARM = 3 * 1_440  # three days: the time-of-day profiles answer and the drift detectors measure off-cycle
AFTER = 720  # twelve hours learned by both the original and its restored copy
KEY = "k" * 40
TYPES = [t for t, _ in FLEET_MIX]
PREFIX = {EquipmentType.PUMP_JACK: "PJ", EquipmentType.COMPRESSOR: "CMP", EquipmentType.SEPARATOR: "SEP",
          EquipmentType.TANK_BATTERY: "TNK", EquipmentType.METER: "MTR"}


def simulated(etype: EquipmentType, ticks: int, seed: int = 1) -> tuple[EquipmentSpec, list[Snapshot]]:
    """`ticks` minutes of the simulator's feed for one equipment, with a spike and a drift before `WARM` (alert
    state to carry over) and a spike and a drift after it (alerts the restored copy must raise too)."""
    spec = EquipmentSpec(f"{PREFIX[etype]}-0001", etype)
    sim = FeedSimulator([spec], seed=seed)
    for at, kind in ((WARM - 300, FaultKind.SPIKE), (WARM - 200, FaultKind.DRIFT), (WARM + 60, FaultKind.SPIKE),
                     (WARM + 200, FaultKind.DRIFT)):
        sim.inject(Fault(kind, spec.equipment_id, start=T0 + at * POLL, duration=timedelta(hours=2)))
    snaps = []
    for k in range(ticks):
        for body in sim.next_snapshots(T0 + k * POLL):
            for r in body.get("readings", [body]):
                snaps.append(Snapshot(datetime.fromisoformat(r["ts"]), r["values"]))
    return spec, snaps


def warmed(etype: EquipmentType) -> tuple[EquipmentState, list[Snapshot]]:
    """An equipment after `WARM` minutes, with every kind of state filled: alerts opened, an operator's verdict
    (its tolerance shared with the scorer), a maintenance, a failure report; and the snapshots that follow."""
    spec, snaps = simulated(etype, WARM + AFTER)
    split = next(i for i, s in enumerate(snaps) if s.ts >= T0 + WARM * POLL)
    eq = EquipmentState(spec.equipment_id, etype.value, seed=7)
    eq.learn_many(snaps[:split])
    eq.apply_verdict(1, "anomaly", "false_alarm", list(eq.detectors)[:1])
    eq.record_maintenance(T0 + timedelta(hours=20), T0 + timedelta(hours=22))
    eq.record_failure(T0 + timedelta(days=2))
    eq.restore_open_alerts([("restored_rule", "warning")])
    return eq, snaps[split:]


def assert_same_future(original: EquipmentState, clone: EquipmentState, snaps: list[Snapshot]) -> int:
    """Feed both the same snapshots one at a time: the same alert changes and scores throughout, the same state
    after. Returns the number of alert changes seen."""
    changes = 0
    for snap in snaps:
        a, b = original.learn_many([snap]), clone.learn_many([snap])
        assert a == b
        assert original.last_scores == clone.last_scores and original.failure_probability == clone.failure_probability
        changes += len(a)
    end = snaps[-1].ts + timedelta(minutes=10)
    assert original.tick(end) == clone.tick(end)
    assert original.predictions() == clone.predictions() and original.summary() == clone.summary()
    assert original.to_bytes() == clone.to_bytes()  # every attribute evolved the same
    return changes


# -- round trips of every equipment type -------------------------------------------------------------------------


@pytest.mark.fast
@pytest.mark.parametrize("etype", TYPES, ids=[t.value for t in TYPES])
def test_a_warmed_state_of_every_type_restores_to_the_same_scores_and_alerts(etype: EquipmentType) -> None:
    eq, after = warmed(etype)
    data = eq.to_bytes()
    assert not is_pickle(data)
    clone = EquipmentState.from_bytes(data)
    assert clone.to_bytes() == data  # deterministic: the restored state writes the same bytes
    assert clone.scorer.tolerance is clone.tolerance  # an object shared in the model is shared again
    assert clone.alerts.open_alerts() == eq.alerts.open_alerts()
    assert assert_same_future(eq, clone, after) > 0


@pytest.mark.fast
def test_an_old_pickle_checkpoint_restores_and_is_written_as_a_document_next() -> None:
    """Migration: checkpoints stored by earlier versions are pickles; they restore to the same model, whose
    next checkpoint is a document."""
    eq, after = warmed(EquipmentType.COMPRESSOR)
    old = pickle.dumps(eq, protocol=pickle.HIGHEST_PROTOCOL)  # what the previous version stored
    assert is_pickle(old)
    restored = restore_entity(sign_blob(KEY, old), KEY)
    assert restored is not None and restored.from_pickle
    clone = restored.entity
    rewritten = clone.to_bytes()
    assert not is_pickle(rewritten) and EquipmentState.from_bytes(rewritten).to_bytes() == rewritten
    assert assert_same_future(eq, clone, after) > 0


@pytest.mark.fast
def test_an_old_pickle_of_the_shared_failure_model_restores() -> None:
    from actors.equipment import shared_model, teach_shared
    from store.predictions import TypeModel

    fp = FailurePredictor()
    fp.learn_examples([({"x": float(i % 7)}, i % 5 == 0) for i in range(200)])
    old = TypeModel("wellpulse-models-6/river-0.26.1", sign_blob(KEY, pickle.dumps(fp)), fp.labels_seen, 0)
    restored = shared_model(old, KEY)
    assert restored is not None and restored.weights() == fp.weights()
    taught = teach_shared(old, [({"x": 1.0}, True)], 1, KEY)
    assert not is_pickle(verify_blob(KEY, taught.state))
    again = shared_model(taught, KEY)
    assert again is not None and again.labels_seen == fp.labels_seen + 1 and again.failures_seen == 1


# -- the committed checkpoint: every later version must restore it ---------------------------------------------


@pytest.mark.fast
def test_the_committed_format_1_checkpoint_restores() -> None:
    """Written by the version that introduced the format (`write_fixture`). Never regenerate the file: when the
    models change, this test says whether a checkpoint stored in the field still restores and learns on."""
    eq = EquipmentState.from_bytes(FIXTURE.read_bytes())
    assert (eq.equipment_id, eq.equipment_type, eq.samples_seen) == ("PJ-0001", "pump_jack", 4_050)
    assert eq.last_learned_ts == T0 + (WARM - 1) * POLL
    assert set(eq.detectors) == {"motor_current_a", "polished_rod_load_lbf", "strokes_per_minute", "tubing_psi",
                                 "casing_psi"}
    assert eq.alerts.open_alerts() == {"restored_rule": "warning"} and eq.verdicts == {1: "false_alarm"}
    assert eq.tolerance == {"motor_current_a": 1.5} and eq.scorer.tolerance is eq.tolerance
    assert eq.failure.failures_seen == 1 and eq.last_maintenance_ts == T0 + timedelta(hours=22)
    _, after = warmed_snapshots_after(EquipmentType.PUMP_JACK)
    eq.learn_many(after[:120])
    assert eq.samples_seen == 4_050 + 120
    assert all(0.0 <= s <= 1.0 for s in eq.last_scores.values())
    json.dumps(eq.predictions())
    assert EquipmentState.from_bytes(eq.to_bytes()).summary() == eq.summary()


def warmed_snapshots_after(etype: EquipmentType) -> tuple[EquipmentSpec, list[Snapshot]]:
    spec, snaps = simulated(etype, WARM + AFTER)
    return spec, [s for s in snaps if s.ts >= T0 + WARM * POLL]


def write_fixture(path: Path = FIXTURE) -> None:
    """Write the committed checkpoint (done once, at format 1: ``python -m tests.test_checkpoints``)."""
    eq, _ = warmed(EquipmentType.PUMP_JACK)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(eq.to_bytes())


# -- what this version cannot read: a clear error, and the actor starts a fresh model --------------------------


@pytest.mark.fast
def test_unknown_tags_newer_formats_and_corrupt_bytes_are_refused_clearly() -> None:
    eq = EquipmentState("PJ-1", "pump_jack")
    eq.learn_many(warmed_snapshots_after(EquipmentType.PUMP_JACK)[1][:50])
    text = CODEC.dumps(eq, compress=False).decode()
    assert '"$type":"ew_stats"' in text
    cases = {
        "unknown type tag 'no_such_model'": text.replace('"$type":"ew_stats"', '"$type":"no_such_model"').encode(),
        "state format 99": text.replace('{"format":1,', '{"format":99,', 1).encode(),
        "not a state document": zlib.compress(text.encode())[:-40],
        "malformed \\$deque": text.replace('"maxlen":', '"maxlen_gone":', 1).encode(),
    }
    for message, data in cases.items():
        with pytest.raises(StateError, match=message):
            EquipmentState.from_bytes(data)
        assert restore_entity(sign_blob(KEY, data), KEY) is None  # the actor's fresh model instead
    with pytest.raises(StateError, match="holds a EquipmentState, not a FailurePredictor"):
        CODEC.loads(text.encode(), FailurePredictor)


# -- in the actors: the migration and the refusal, against the real servers ---------------------------------------


async def test_the_actor_rewrites_an_old_pickle_and_starts_afresh_from_an_unreadable_document(
        stack: Any, db_conn: Any) -> None:
    tenant, key = new_tenant_id("ckpt"), stack.settings.secret("model_signing_key")
    start = now_utc() - timedelta(minutes=30)

    def flows(first: int, count: int) -> list[Snapshot]:
        return [Snapshot(start + timedelta(seconds=i), {"flow_mcfd": 500.0 + i % 13})
                for i in range(first, first + count)]

    old = EquipmentState("MTR-1", "meter", seed=stack.settings.model_seed)
    old.learn_many(flows(0, 100))
    unreadable = CODEC.dumps(old, compress=False).replace(b'"type":"equipment_state"', b'"type":"no_such_model"')
    for eid, state in (("MTR-1", pickle.dumps(old)), ("MTR-2", unreadable)):  # stored before the actors start
        await db_conn.execute(
            "INSERT INTO model_checkpoints (tenant_id, equipment_id, model_version, state, samples_seen)"
            " VALUES ($1, $2, $3, $4, 100)", tenant, eid, MODEL_VERSION, sign_blob(key, state))
    await create_tenant(stack, tenant, [("MTR-1", "meter"), ("MTR-2", "meter")])
    await publish(stack.settings.nats_url, tenant,
                  [(e, snapshot(e, s.ts, s.values)) for e in ("MTR-1", "MTR-2") for s in flows(100, 50)])

    async def saved() -> dict[str, EquipmentState] | None:
        rows = await db_conn.fetch("SELECT equipment_id, state FROM model_checkpoints WHERE tenant_id = $1", tenant)
        payloads = {r["equipment_id"]: verify_blob(key, bytes(r["state"])) for r in rows}
        if any(is_pickle(p) or p == unreadable for p in payloads.values()):
            return None
        models = {e: EquipmentState.from_bytes(p) for e, p in payloads.items()}
        return models if all(m.samples_seen >= 50 for m in models.values()) else None

    models = await wait_for(saved, timeout=90)
    assert models["MTR-1"].samples_seen == 150  # restored from the pickle, then learned on
    assert models["MTR-2"].samples_seen == 50  # a fresh model learned what was stored
    counters = {e: (await ray.get_actor(f"equipment:{tenant}:own-{e}", namespace=NAMESPACE).status.remote())["counters"]
                for e in ("MTR-1", "MTR-2")}
    assert (counters["MTR-1"]["restored"], counters["MTR-1"]["checkpoints_migrated"]) == (1, 1)
    assert (counters["MTR-2"]["restored"], counters["MTR-2"]["checkpoints_refused"]) == (0, 1)


# -- the codec itself ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pair:
    """A value object as models hold them (frozen, slotted)."""

    at: datetime
    value: float


class Probe:
    """A registered class with every kind of value a model holds."""

    def __init__(self, label: str = "p") -> None:
        self.label = label
        self.floats = [0.1, -0.0, math.nan, math.inf, -math.inf, 1e308, 5e-324]
        self.by_int = {3: "c", 1: "a"}
        self.by_tuple = {("a", 1): 2.0}
        self.dollar = {"$type": "not a tag", "x": 1}
        self.stamps = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=-6))),
                       datetime(2026, 1, 1), timedelta(days=1, microseconds=5))
        self.window: deque[float] = deque([1.0, 2.0], maxlen=3)
        self.names = {"b", "a", "c"}
        self.frozen = frozenset({"z", "y"})
        self.counts = Counter({"a": 2})
        self.sums: defaultdict[str, float] = defaultdict(float, {"a": 1.5})
        self.nested: list[Any] = [None, True, 2**70, "é", [[]], {}]
        self.pairs = [Pair(datetime(2026, 1, 1, tzinfo=UTC), math.nan)]


class NewProbe(Probe):
    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("renamed", state.pop("label", "?"))  # a migration a class does itself
        self.__dict__.update(state)


def _codec() -> StateCodec:
    codec = StateCodec()
    codec.register("probe", Probe)
    codec.register("new_probe", NewProbe)
    codec.register("pair", Pair)
    return codec


@pytest.mark.fast
def test_every_kind_of_value_round_trips_exactly() -> None:
    codec, probe = _codec(), Probe()
    back = codec.loads(codec.dumps(probe), Probe)
    for name, value in vars(probe).items():
        got = getattr(back, name)
        assert type(got) is type(value), name
        if name == "floats":
            assert [repr(x) for x in got] == [repr(x) for x in value]  # nan, -0.0 and the extremes too
        elif name == "pairs":
            assert repr(got) == repr(value)  # nan != nan
        else:
            assert got == value, name
    assert back.window.maxlen == 3 and back.sums.default_factory is float
    assert back.stamps[1].utcoffset() == timedelta(hours=-6)
    text = codec.dumps(probe, compress=False).decode()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))  # no NaN literals


@pytest.mark.fast
def test_shared_objects_stay_shared_and_an_unregistered_class_is_named() -> None:
    codec, probe = _codec(), Probe()
    probe.again = probe.window  # type: ignore[attr-defined]
    probe.child = Probe("child")  # type: ignore[attr-defined]
    probe.child_again = [probe.child]  # type: ignore[attr-defined]
    back = codec.loads(codec.dumps(probe), Probe)
    assert back.again is back.window and back.child_again[0] is back.child  # type: ignore[attr-defined]
    probe.stranger = Path("/")  # type: ignore[attr-defined]
    with pytest.raises(StateError, match=r"no state tag for pathlib\.PosixPath"):
        codec.dumps(probe)


@pytest.mark.fast
def test_a_field_missing_from_an_older_document_takes_the_default_and_setstate_migrates() -> None:
    codec = _codec()
    doc = json.loads(codec.dumps(Probe(), compress=False))
    del doc["state"]["counts"]
    back = codec.loads(json.dumps(doc).encode(), Probe)
    assert back.counts == Counter({"a": 2})  # what a default Probe() has
    doc["type"] = "new_probe"  # an older layout of NewProbe: `label` was renamed `renamed`
    back = codec.loads(json.dumps(doc).encode(), NewProbe)
    assert back.renamed == "p" and not hasattr(back, "label")


@pytest.mark.fast
def test_every_registered_model_class_has_defaults_for_new_fields() -> None:
    assert CODEC.missing_defaults() == []


def test_the_same_state_gives_the_same_bytes_in_another_process() -> None:
    """Sets are sorted, attributes too: the bytes do not depend on the hash seed of the process."""
    code = ("import hashlib, tests.test_checkpoints as t;"
            "eq, _ = t.warmed_small(); print(hashlib.sha256(eq.to_bytes()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip() for seed in ("1", "2")}
    eq, _ = warmed_small()
    assert digests == {hashlib.sha256(eq.to_bytes()).hexdigest()}


def warmed_small() -> tuple[EquipmentState, list[Snapshot]]:
    spec, snaps = simulated(EquipmentType.COMPRESSOR, 600)
    eq = EquipmentState(spec.equipment_id, spec.equipment_type.value, seed=3)
    eq.learn_many(snaps)
    return eq, snaps


if __name__ == "__main__":
    write_fixture()
