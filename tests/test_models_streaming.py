"""Issue 6 behaviours of the streaming models: detection delays, drift, failure labels, bad input, checkpoints.

Pure (no IO, no servers, no shared data), deterministic with fixed seeds. Stated delays:
- a spike of +300 psi (about 15 σ) opens the anomaly alert on the 3rd spiked snapshot (for_count=3);
- a slow drift (a ramp of about 0.02 σ per sample) opens an info ``drift_<sensor>`` alert within 400 samples of
  the ramp's start, and the sensor is re-baselined (the drift alert resolves) within `warmup` more samples;
- a stuck sensor is flagged after exactly `min_repeats` (30) identical values;
- a clean series (with a daily cycle) raises no alert at all after warm-up.
"""

from __future__ import annotations

import json
import math
import pickle
import random
from datetime import UTC, datetime, timedelta

import pytest

from models import (
    MODEL_VERSION,
    AnomalyRule,
    EquipmentState,
    FailurePredictor,
    FailureRiskRule,
    Snapshot,
    StuckSensorRule,
    build_rule,
    default_rules,
    replay,
    sensitivity_level,
)

pytestmark = pytest.mark.fast  # no Ray, no Serve: `./wp test -m fast`

T0 = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)


def feed(n: int, *, seed: int = 0, step_s: float = 1.0, start: int = 0, day_cycle: bool = False) -> list[Snapshot]:
    """Two correlated sensors with noise (and optionally a daily cycle)."""
    rng = random.Random(seed)
    out = []
    for i in range(start, start + n):
        t = i * step_s
        day = math.sin(2 * math.pi * t / 86_400.0) if day_cycle else 0.0
        common = rng.gauss(0.0, 1.0)
        values = {
            "pressure": 800.0 + 100.0 * day + 20.0 * common + rng.gauss(0.0, 5.0),
            "current": 40.0 + 5.0 * day + 1.0 * common + rng.gauss(0.0, 0.3),
        }
        out.append(Snapshot(T0 + timedelta(seconds=t), values))
    return out


def opened(changes: list, prefix: str = "") -> list:
    return [c for c in changes if c.kind == "opened" and c.rule_id.startswith(prefix)]


# -- detection delays ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spike_detected_on_third_spiked_snapshot(seed: int) -> None:
    eq = EquipmentState("EQ", "other", [AnomalyRule()], seed=seed)
    base = feed(1_200, seed=seed)
    assert eq.learn_many(base[:1_000]) == []
    spiked = [Snapshot(s.ts, {**s.values, "pressure": s.values["pressure"] + 300.0}) for s in base[1_000:1_005]]
    changes = eq.learn_many(spiked)
    assert [c.ts for c in opened(changes)] == [base[1_002].ts]
    top = changes[0].details["sensors"][0]
    assert top["sensor"] == "pressure" and top["z"] > 5
    rest = eq.learn_many(base[1_005:])
    assert [c.kind for c in rest] == ["resolved"]


def test_slow_drift_is_an_info_event_then_rebaselined() -> None:
    eq = EquipmentState("EQ", "other", [AnomalyRule()], seed=0)
    base = feed(6_000, seed=4)
    assert eq.learn_many(base[:2_000]) == []
    ramp = []
    for k, s in enumerate(base[2_000:]):  # current drifts up by 0.02 per sample (its σ is about 1.04), 800 samples
        ramp.append(Snapshot(s.ts, {**s.values, "current": s.values["current"] + 0.02 * min(k, 800)}))
    changes = eq.learn_many(ramp)
    drift = opened(changes, "drift_")
    assert drift, "the drift was not detected"
    first = drift[0]
    assert first.rule_id == "drift_current" and first.severity == "info"
    delay = next(i for i, s in enumerate(ramp) if s.ts == first.ts)
    assert delay <= 400
    assert first.details["direction"] == "up" and "drifted up" in first.message
    resolved = [c for c in changes if c.rule_id == "drift_current" and c.kind == "resolved"]
    assert resolved and (resolved[0].ts - first.ts).total_seconds() <= eq.warmup
    # The model adapted: after the ramp ends nothing is open, and the predictions say what happened.
    assert eq.alerts.open_alerts() == {}
    p = eq.predictions()
    assert p["anomaly"]["sensors"]["current"]["drifts"] >= 1
    assert p["drift"]["events"]["current"] == drift[-1].ts.isoformat()


def test_level_shift_drift_stops_the_anomaly_alert() -> None:
    eq = EquipmentState("EQ", "other", [AnomalyRule()], seed=0)
    base = feed(4_000, seed=5)
    eq.learn_many(base[:1_500])
    shifted = [Snapshot(s.ts, {**s.values, "current": s.values["current"] + 8.0}) for s in base[1_500:]]
    changes = eq.learn_many(shifted)
    kinds = [(c.rule_id, c.kind) for c in changes]
    assert ("drift_current", "opened") in kinds and ("anomaly", "opened") in kinds
    assert ("anomaly", "resolved") in kinds  # adapts instead of alerting for ever
    assert eq.alerts.open_alerts() == {}


def test_stuck_sensor_flagged_after_min_repeats() -> None:
    eq = EquipmentState("EQ", "other", [StuckSensorRule(min_repeats=30)])
    base = feed(600, seed=6)
    eq.learn_many(base[:500])
    stuck = [Snapshot(s.ts, {**s.values, "pressure": 812.5}) for s in base[500:]]
    changes = eq.learn_many(stuck)
    assert [c.ts for c in opened(changes)] == [stuck[29].ts]


def test_clean_series_raises_no_alert_after_warmup() -> None:
    eq = EquipmentState("EQ", "other", seed=1)  # default rules: anomaly, stale data, stuck sensor; drift on
    assert eq.learn_many(feed(20_000, seed=7)) == []


def test_clean_daily_cycle_raises_no_alert_and_no_drift_once_the_cycle_is_learned() -> None:
    eq = EquipmentState("EQ", "other", seed=1)
    snaps = feed(6 * 1_440, seed=7, step_s=60.0, day_cycle=True)  # 6 days, one a minute, a steep daily cycle
    changes = eq.learn_many(snaps)
    assert [c for c in changes if c.severity != "info"] == []  # no anomaly alert, ever
    # Before the daily profile is known (2 days) the cycle's slope can be taken for a drift (an info event,
    # re-baselined); once it is known, drift is measured off-cycle and stops.
    day2 = snaps[2 * 1_440 + 60].ts
    assert [c for c in changes if c.ts > day2] == []


# -- checkpoints and metadata ----------------------------------------------------------------------------


def test_checkpoint_roundtrip_identical_scores_and_predictions() -> None:
    eq = EquipmentState("EQ", "pump_jack", seed=3)
    base = feed(3_000, seed=8, step_s=60.0, day_cycle=True)
    eq.learn_many(base[:2_000])
    eq.record_maintenance(base[100].ts, base[200].ts)
    clone = EquipmentState.from_bytes(eq.to_bytes())
    for snap in base[2_000:]:
        assert eq.learn_many([snap]) == clone.learn_many([snap])
        assert eq.last_scores == clone.last_scores and eq.equipment_score == clone.equipment_score
    assert eq.predictions() == clone.predictions()
    json.dumps(eq.predictions())
    p = eq.predictions()
    assert p["model_version"] == MODEL_VERSION and p["samples_seen"] == 3_000
    assert p["last_learned_ts"] == base[-1].ts.isoformat()
    assert 0.0 <= p["failure"]["probability"] <= 1.0 and p["failure"]["horizon_days"] == 7.0


def test_old_checkpoint_without_new_attributes_loads() -> None:
    eq = EquipmentState("EQ", "other", seed=1)
    eq.learn_many(feed(300, seed=9))
    state = dict(eq.__dict__)
    for key in ("drift_detectors", "rebaselining", "drift_events", "failure", "failure_probability",
                "runtime_seconds", "anomaly_level", "first_ts", "last_maintenance_ts", "equipment_novelty",
                "sensitivity", "drift", "scorer", "restored_from_version"):
        state.pop(key)
    state["model_version"] = "wellpulse-models-1/river-0.26.1"
    old = object.__new__(EquipmentState)
    old.__dict__.update(state)
    restored = EquipmentState.from_bytes(pickle.dumps(old))
    assert restored.restored_from_version == "wellpulse-models-1/river-0.26.1"
    assert restored.model_version == MODEL_VERSION and restored.samples_seen == 300
    restored.learn_many(feed(100, seed=9, start=300))
    json.dumps(restored.predictions())


# -- bad input -------------------------------------------------------------------------------------------


def _healthy(eq: EquipmentState) -> None:
    for det in eq.detectors.values():
        assert math.isfinite(det.mean) and math.isfinite(det.std)
    assert all(0.0 <= v <= 1.0 for v in eq.last_scores.values())
    assert math.isfinite(eq.equipment_statistic) and 0.0 <= eq.failure_probability <= 1.0
    json.dumps(eq.predictions())
    json.dumps(eq.summary())


def _run_with(mutate) -> tuple[EquipmentState, list]:
    eq = EquipmentState("EQ", "other", seed=0)
    changes = []
    for i, snap in enumerate(feed(1_500, seed=10)):
        changes += eq.learn_many([mutate(i, snap)])
    return eq, changes


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None, "x"])
def test_nan_inf_and_junk_values(bad: object) -> None:
    def mutate(i: int, s: Snapshot) -> Snapshot:
        return Snapshot(s.ts, {**s.values, "pressure": bad}) if i % 10 == 0 else s  # type: ignore[dict-item]

    eq, changes = _run_with(mutate)
    _healthy(eq)
    assert opened(changes) == []
    assert eq.detectors["pressure"].n == 1_350


def test_missing_sensors_and_sensor_appearing_late() -> None:
    def mutate(i: int, s: Snapshot) -> Snapshot:
        values = dict(s.values)
        if i % 4 == 0:
            del values["current"]
        if i >= 700:
            values["late"] = 5.0 + 0.1 * math.sin(i)
        if i == 900:
            values = {}
        return Snapshot(s.ts, values)

    eq, changes = _run_with(mutate)
    _healthy(eq)
    assert opened(changes, "anomaly") == []
    assert eq.detectors["late"].n == 799


def test_out_of_order_and_duplicate_readings_do_not_change_the_model() -> None:
    clean = EquipmentState("EQ", "other", seed=0)
    snaps = feed(1_000, seed=11)
    clean.learn_many(snaps)
    messy = EquipmentState("EQ", "other", seed=0)
    for i, s in enumerate(snaps):
        batch = [s, s] if i % 5 == 0 else [s]  # duplicated
        if i > 10 and i % 7 == 0:
            batch.append(snaps[i - 10])  # late (older) reading
        messy.learn_many(batch)
    assert messy.last_scores == clean.last_scores and messy.samples_seen == 1_000
    assert messy.skipped > 0
    assert messy.to_bytes() != clean.to_bytes()  # only the skip counter differs
    messy.skipped = clean.skipped
    assert messy.to_bytes() == clean.to_bytes()


def test_constant_sensor() -> None:
    def mutate(i: int, s: Snapshot) -> Snapshot:
        return Snapshot(s.ts, {**s.values, "flat": 3.0, "zero": 0.0})

    eq, changes = _run_with(mutate)
    _healthy(eq)
    assert changes == []
    assert eq.last_scores["flat"] == 0.0 and eq.last_scores["zero"] == 0.0
    # A constant sensor that then moves is anomalous, not a division by zero.
    later = eq.learn_many([Snapshot(T0 + timedelta(days=1, seconds=i), {"flat": 4.0, "zero": 1.0}) for i in range(3)])
    assert opened(later, "anomaly")


# -- failure prediction ----------------------------------------------------------------------------------


def run_to_failure(eq: EquipmentState, cycle: int, days: int = 20, wear_days: int = 4) -> datetime:
    """`days` of operation every 10 minutes, vibration rising over the last `wear_days`; returns the failure time."""
    rng = random.Random(cycle)
    start = T0 + timedelta(days=(days + 1) * cycle)
    snaps = []
    for k in range(days * 144):
        ts = start + timedelta(minutes=10 * k)
        worn = max(0.0, (k - (days - wear_days) * 144) / (wear_days * 144))
        values = {"vibration": 1.0 + 3.0 * worn + rng.gauss(0.0, 0.1), "temp": 60.0 + rng.gauss(0, 1)}
        snaps.append(Snapshot(ts, values))
    eq.learn_many(snaps)
    return snaps[-1].ts


def test_failure_labels_raise_the_probability_on_a_run_to_failure_series() -> None:
    eq = EquipmentState("PJ", "pump_jack", [FailureRiskRule(level=0.5)], seed=0, drift=False)
    fail_ts = run_to_failure(eq, 0)
    before = eq.failure_probability
    assert before < 0.02  # the prior, lowered by the healthy days already learned as negatives
    shared = FailurePredictor()
    for cycle in range(1, 4):
        shared.learn_examples(eq.record_failure(fail_ts))
        eq.record_maintenance(fail_ts, fail_ts + timedelta(days=1))
        fail_ts = run_to_failure(eq, cycle)
    near_failure = eq.failure_probability
    assert eq.failure.failures_seen == 3 and eq.failure.positives_seen > 0
    assert near_failure > 0.5 > before
    healthy = eq.failure.predict_proba_one({**eq.failure_features(), "level_vibration": 1.0})
    assert healthy < near_failure
    p = eq.predictions()["failure"]
    assert p["failures_seen"] == 3 and p["horizon_days"] == 7.0
    # A new equipment of the same type starts from the shared model: useful on day one.
    new = EquipmentState("PJ-new", "pump_jack", failure_model=shared)
    assert new.failure.predict_proba_one({"level_vibration": 3.5, "spread_vibration": 0.1}) > before


# -- sensitivity and replay ------------------------------------------------------------------------------


def test_sensitivity_presets_and_overrides() -> None:
    assert [sensitivity_level(s) for s in ("low", "medium", "high")] == [0.999, 0.99, 0.9]
    assert build_rule("a", "anomaly", {}, sensitivity="high").effective_level == 0.9
    assert build_rule("a", "anomaly", {"level": 0.95}, sensitivity="high").effective_level == 0.95
    assert build_rule("a", "anomaly", {"sensitivity": "low"}, sensitivity="high").effective_level == 0.999
    assert build_rule("t", "threshold", {"sensor": "p", "high": 1.0}, sensitivity="high").params()["high"] == 1.0
    assert default_rules("pump_jack", "low")[0].effective_level == 0.999
    with pytest.raises(ValueError, match="sensitivity"):
        build_rule("a", "anomaly", {"sensitivity": "extreme"})
    with pytest.raises(ValueError, match="sensitivity"):
        AnomalyRule(sensitivity=2.0)
    counts = {}
    for s in ("low", "high"):
        eq = EquipmentState("EQ", "other", [AnomalyRule(sensitivity=s, for_count=1)], seed=0)
        counts[s] = len(opened(eq.learn_many(feed(3_000, seed=12))))
    assert counts["high"] >= counts["low"]


def test_replay_is_pure_and_has_no_look_ahead() -> None:
    snaps = feed(800, seed=13)
    snaps[600] = Snapshot(snaps[600].ts, {**snaps[600].values, "pressure": 2_000.0})
    full = replay(snaps)
    part = replay(snaps[:601])
    assert [r.anomaly_score for r in full[:601]] == [r.anomaly_score for r in part]
    assert len(full) == 800 and all(0.0 <= r.anomaly_score <= 1.0 for r in full)
    assert full[600].anomaly_score > 0.999 and full[600].sensor_scores["pressure"] > 0.999


# -- collective anomalies, resets and the shared failure model ---------------------------------------------


def test_collective_anomaly_keeps_its_alert_while_it_lasts() -> None:
    """A +3 sigma shift of one sensor for 400 snapshots (a valve half closed): alerted within 20 snapshots and
    held for most of it, because an incident is learned five times more slowly; nothing once it is over."""
    held = {}
    for every in (5, 1):
        eq = EquipmentState("EQ", "other", [AnomalyRule()], seed=0)
        eq.scorer.incident_learn_every = every
        base = feed(3_000, seed=21)  # pressure's sigma is about 20.6
        assert eq.learn_many(base[:2_000]) == []
        shifted = [Snapshot(s.ts, {**s.values, "pressure": s.values["pressure"] + 60.0}) for s in base[2_000:2_400]]
        open_at = []
        for snap in shifted:
            eq.learn_many([snap])
            open_at.append(eq.alerts.is_open("anomaly"))
        assert open_at.index(True) <= 20
        held[every] = sum(open_at)
        after = [c for c in eq.learn_many(base[2_400:]) if c.kind == "opened"]
        assert after == [] and not eq.alerts.is_open("anomaly")
    # The rule's deadband holds the alert in both cases; learning the incident at full speed still ends it sooner.
    assert held[5] >= 250 and held[5] > held[1]


def test_reset_model_resumes_after_what_was_learned() -> None:
    eq = EquipmentState("EQ", "pump_jack", seed=0)
    snaps = feed(500, seed=22)
    eq.learn_many(snaps[:400])
    fresh = EquipmentState("EQ", "pump_jack", seed=0)
    fresh.resume_after(eq.last_learned_ts)
    assert fresh.learn_many(snaps[:400]) == [] and fresh.samples_seen == 0 and fresh.skipped == 400
    fresh.learn_many(snaps[400:])
    assert fresh.samples_seen == 100 and fresh.first_ts == snaps[400].ts
    p = fresh.predictions()
    assert p["warming_up"] is False and p["samples_seen"] == 100
    with pytest.raises(ValueError, match="learned nothing"):
        fresh.resume_after(snaps[0].ts)


def test_labels_reach_the_shared_model_once() -> None:
    eq = EquipmentState("PJ", "pump_jack", [FailureRiskRule(level=0.5)], seed=0, drift=False)
    fail_ts = run_to_failure(eq, 0)  # 20 days: the first 10 are past horizon + label delay, healthy
    negatives, failures = eq.shared_examples()
    assert failures == 0 and len(negatives) >= 9 * 24 and not any(y for _, y in negatives)
    first = eq.record_failure(fail_ts)
    assert first and eq.record_failure(fail_ts) == []  # the same report twice: learned once
    examples, failures = eq.shared_examples()
    assert failures == 1 and examples == first and all(y for _, y in examples)
    assert eq.shared_examples() == ([], 0)
    shared = FailurePredictor()
    shared.learn_examples(examples + negatives)
    assert shared.labels_seen == len(examples) + len(negatives) and shared.positives_seen == len(examples)
    worn = examples[-1][0]
    assert shared.predict_proba_one(worn) > shared.predict_proba_one(negatives[-1][0])
    restored = EquipmentState.from_bytes(eq.to_bytes())
    assert restored.record_failure(fail_ts) == [] and restored.failure.failures_seen == 1
