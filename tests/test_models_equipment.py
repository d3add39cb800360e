"""Tests of EquipmentState: learning, rules through the state machine, checkpoints (pure, no IO)."""

import json
import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from models import AnomalyRule, EquipmentState, Snapshot, StaleDataRule, ThresholdRule

pytestmark = pytest.mark.fast  # no Ray, no Serve: `./wp test -m fast`

T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


def pump_jack_feed(n: int, seed: int = 0, start: int = 0) -> list[Snapshot]:
    """A noisy sinusoidal pump jack (one snapshot a second)."""
    rng = random.Random(seed)
    out = []
    for i in range(start, start + n):
        a = math.sin(2 * math.pi * i / 60)
        values = {
            "motor_current_a": 42.0 + 5.0 * a + rng.gauss(0.0, 1.0),
            "polished_rod_load_lbf": 15_000.0 + 3_000.0 * a + rng.gauss(0.0, 300.0),
            "strokes_per_minute": 9.0 + rng.gauss(0.0, 0.2),
            "tubing_psi": 800.0 + rng.gauss(0.0, 20.0),
            "casing_psi": 250.0 + rng.gauss(0.0, 10.0),
        }
        out.append(Snapshot(T0 + timedelta(seconds=i), values))
    return out


def test_no_false_alarm_on_5000_normal_snapshots() -> None:
    eq = EquipmentState("PJ-1", "pump_jack", seed=3)
    changes = eq.learn_many(pump_jack_feed(5_000, seed=1))
    assert changes == []
    assert eq.samples_seen == 5_000 and eq.values_seen == 25_000


def test_anomaly_opens_on_spike_and_resolves_with_explanation() -> None:
    eq = EquipmentState("PJ-1", "pump_jack", [AnomalyRule()], seed=3)
    feed = pump_jack_feed(1_100, seed=2)
    assert eq.learn_many(feed[:1_000]) == []
    spiked = [
        Snapshot(s.ts, {**s.values, "tubing_psi": s.values["tubing_psi"] + 300.0}) for s in feed[1_000:1_005]
    ]
    changes = eq.learn_many(spiked)
    assert [c.kind for c in changes] == ["opened"]
    opened = changes[0]
    assert opened.rule_id == "anomaly" and opened.severity == "critical" and opened.ts == feed[1_002].ts
    top = opened.details["sensors"][0]
    assert top["sensor"] == "tubing_psi" and top["z"] > 10 and abs(top["expected_mean"] - 800.0) < 20.0
    assert "tubing_psi" in opened.message
    json.dumps(opened.details)  # JSON-safe
    changes = eq.learn_many(feed[1_005:])
    assert [c.kind for c in changes] == ["resolved"]
    # The smoothed equipment score decays within about 15 snapshots of the spike's end (+3 to clear).
    assert feed[1_007].ts <= changes[0].ts <= feed[1_025].ts


def test_threshold_through_equipment_and_stale_tick() -> None:
    rules = [ThresholdRule("t_high", "tubing_psi", high=1000.0, for_seconds=5.0), StaleDataRule()]
    eq = EquipmentState("PJ-1", "pump_jack", rules)
    snaps = [Snapshot(T0 + timedelta(seconds=i), {"tubing_psi": 1100.0}) for i in range(7)]
    changes = eq.learn_many(snaps)
    assert [(c.kind, c.ts) for c in changes] == [("opened", T0 + timedelta(seconds=5))]
    assert changes[0].message == "tubing_psi 1100.0 above 1000.0 for 5s"
    assert eq.tick(T0 + timedelta(seconds=30)) == []
    stale = eq.tick(T0 + timedelta(seconds=67))
    assert [(c.kind, c.rule_id) for c in stale] == [("opened", "stale_data")]
    assert eq.tick(T0 + timedelta(seconds=68)) == []
    back = eq.learn_many([Snapshot(T0 + timedelta(seconds=69), {"tubing_psi": 900.0})])
    assert sorted((c.kind, c.rule_id) for c in back) == [("resolved", "stale_data"), ("resolved", "t_high")]


def test_skip_at_or_before_last_learned_ts() -> None:
    eq = EquipmentState("PJ-1", "pump_jack")
    feed = pump_jack_feed(100)
    eq.learn_many(feed[:50])
    assert eq.last_learned_ts == feed[49].ts
    eq.learn_many(feed[40:60])
    assert (eq.samples_seen, eq.skipped, eq.last_learned_ts) == (60, 10, feed[59].ts)
    eq.learn_many([feed[10], feed[60], feed[55]])  # out of order within a batch too
    assert (eq.samples_seen, eq.skipped) == (61, 12)


def test_checkpoint_roundtrip_gives_identical_scores() -> None:
    eq = EquipmentState("PJ-1", "pump_jack", seed=5)
    feed = pump_jack_feed(900, seed=4)
    eq.learn_many(feed[:600])
    eq.restore_open_alerts([("tubing_psi_high", "critical")])
    clone = EquipmentState.from_bytes(eq.to_bytes())
    for snap in feed[600:]:
        a = eq.learn_many([snap])
        b = clone.learn_many([snap])
        assert a == b
        assert eq.last_scores == clone.last_scores
    assert eq.summary() == clone.summary()
    assert eq.last_scores["_multivariate"] > 0.0


def test_determinism_with_same_seed() -> None:
    feed = pump_jack_feed(700, seed=9)
    a, b = EquipmentState("X", "pump_jack", seed=1), EquipmentState("X", "pump_jack", seed=1)
    a.learn_many(feed)
    b.learn_many(feed)
    assert a.last_scores == b.last_scores and a.to_bytes() == b.to_bytes()


def test_nan_inf_missing_and_new_sensors_never_raise() -> None:
    eq = EquipmentState("EQ-1", "other", seed=0)
    rng = random.Random(0)
    snaps = []
    for i in range(800):
        values: dict[str, float] = {"a": rng.gauss(0.0, 1.0)}
        if i % 3:
            values["b"] = rng.gauss(10.0, 1.0)
        if i % 50 == 0:
            values["a"] = math.nan
            values["b"] = math.inf
        if i > 400:
            values["late"] = rng.gauss(-5.0, 0.5)
        if i == 500:
            values["junk"] = "not a number"  # type: ignore[assignment]
        snaps.append(Snapshot(T0 + timedelta(seconds=i), values))
    eq.learn_many(snaps)
    eq.learn_many([Snapshot(T0 + timedelta(seconds=900), {})])
    summary = eq.summary()
    json.dumps(summary)
    assert summary["samples_seen"] == 801
    assert set(summary["last_scores"]) == {"a", "b", "late", "_multivariate", "_equipment"}
    assert all(0.0 <= s <= 1.0 for s in summary["last_scores"].values())


def test_set_rules_resolves_orphans_and_keeps_state() -> None:
    keep = ThresholdRule("t_high", "p", high=10.0, for_seconds=2.0)
    eq = EquipmentState("EQ-1", rules=[keep, ThresholdRule("gone", "p", high=1.0)])
    changes = eq.learn_many([Snapshot(T0 + timedelta(seconds=i), {"p": 20.0}) for i in range(2)])
    assert [c.rule_id for c in changes] == ["gone"]
    eq.set_rules([ThresholdRule("t_high", "p", high=10.0, for_seconds=2.0)])  # same settings: timer kept
    changes = eq.learn_many([Snapshot(T0 + timedelta(seconds=2), {"p": 20.0})])
    assert sorted((c.kind, c.rule_id) for c in changes) == [("opened", "t_high"), ("resolved", "gone")]
    eq.restore_open_alerts([("deleted_while_down", "warning")])
    assert [(c.kind, c.rule_id) for c in eq.tick(T0 + timedelta(seconds=3))] == [
        ("resolved", "deleted_while_down")
    ]


def test_restored_open_alert_does_not_flap() -> None:
    eq = EquipmentState(
        "EQ-1", rules=[ThresholdRule("t_high", "p", high=10.0, hysteresis=1.0, for_seconds=5.0)]
    )
    eq.restore_open_alerts([("t_high", "warning")])
    assert eq.learn_many([Snapshot(T0, {"p": 20.0}), Snapshot(T0 + timedelta(seconds=1), {"p": 9.5})]) == []
    assert [c.kind for c in eq.learn_many([Snapshot(T0 + timedelta(seconds=2), {"p": 8.0})])] == ["resolved"]


def test_cost_pump_jack_10000_snapshots_runs() -> None:
    eq = EquipmentState("PJ-9", "pump_jack", seed=0)
    eq.learn_many(pump_jack_feed(10_000, seed=8))
    assert eq.samples_seen == 10_000


def test_a_checkpoint_this_version_cannot_read_restores_as_a_fresh_model() -> None:
    """A signed checkpoint naming a class that no longer exists: a fresh model, not an actor failing on every
    message of the equipment; a readable one restores."""
    from actors.equipment import restore_entity
    from config.secrets import sign_blob

    key = "k" * 32
    gone = b"\x80\x04cmodels.no_such_module\nGone\n)\x81."  # an old pickle of models.no_such_module.Gone()
    assert restore_entity(sign_blob(key, gone), key) is None
    eq = EquipmentState("PJ-1", "pump_jack")
    eq.learn_many(pump_jack_feed(50))
    restored = restore_entity(sign_blob(key, eq.to_bytes()), key)
    assert restored is not None and restored.entity.samples_seen == 50 and not restored.from_pickle
