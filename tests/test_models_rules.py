"""Tests of the alert rules, rule building and the alert state machine (pure, no IO)."""

from datetime import UTC, datetime, timedelta

import pytest

from models import (
    AlertStateMachine,
    AnomalyRule,
    Observation,
    StaleDataRule,
    StuckSensorRule,
    ThresholdRule,
    build_rule,
    default_rules,
)

T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


def _obs(second: float, **values: float) -> Observation:
    return Observation(T0 + timedelta(seconds=second), values)


def test_threshold_for_seconds_hysteresis_no_flap() -> None:
    rule = ThresholdRule("p_high", "p", high=1000.0, hysteresis=50.0, for_seconds=30.0)
    sm = AlertStateMachine("PJ-1")
    trace = [
        (0, 1100),
        (10, 1100),
        (20, 990),
        (30, 1100),
        (50, 1100),
        (60, 1100),
        (70, 990),
        (80, 1010),
        (90, 960),
        (100, 940),
        (110, 1001),
    ]
    kinds = []
    for s, v in trace:
        verdict = rule.observe(_obs(s, p=float(v)))
        assert verdict is not None
        active, sev = verdict
        c = sm.evaluate("p_high", active=active, severity=sev, ts=T0 + timedelta(seconds=s), message="m")
        kinds.append((s, c.kind if c else None))
    # 20 s dip resets the timer; opens 30 s after 30 s; hovering in the hysteresis band does not resolve.
    assert [k for k in kinds if k[1]] == [(60, "opened"), (100, "resolved")]
    assert rule.observe(_obs(120, other=1.0)) is None  # missing sensor: no opinion


def test_threshold_low_and_message() -> None:
    rule = ThresholdRule("p_low", "p", low=10.0, hysteresis=1.0, severity="critical")
    assert rule.observe(_obs(0, p=5.0)) == (True, "critical")
    msg, details = rule.describe(True, _obs(0, p=5.0), T0)
    assert msg == "p 5.0 below 10.0 for 0s" and details["threshold"] == 10.0
    assert rule.observe(_obs(1, p=10.5)) == (True, "critical")
    assert rule.observe(_obs(2, p=11.5)) == (False, "critical")


def test_anomaly_rule_counts_and_escalates() -> None:
    rule = AnomalyRule(for_count=3)
    seq = [0.995, 0.995, 0.995, 0.9995, 0.995, 0.1, 0.1, 0.995, 0.1]
    out = [rule.observe(Observation(T0, {"x": 1.0}, scores={"x": s})) for s in seq]
    assert [a for a, _ in out] == [False, False, True, True, True, True, True, True, True]
    assert out[3][1] == "critical" and out[4][1] == "critical"  # escalate only, no flap back to warning
    for _ in range(2):
        active, sev = rule.observe(Observation(T0, {"x": 1.0}, scores={"x": 0.0}))
    assert (active, sev) == (False, "warning")


def test_stuck_sensor() -> None:
    rule = StuckSensorRule(min_repeats=5)
    verdicts = [rule.observe(_obs(i, a=float(i), c=7.0))[0] for i in range(3)]  # c constant by nature
    verdicts += [rule.observe(_obs(3 + i, a=42.0, c=7.0))[0] for i in range(6)]
    assert verdicts == [False] * 7 + [True, True]
    assert rule.observe(_obs(10, c=7.0))[0] is True  # missing sensor keeps the run
    msg, details = rule.describe(True, None, T0)
    assert details["sensors"][0]["sensor"] == "a" and "a at 42.0" in msg
    assert rule.observe(_obs(11, a=43.0, c=7.0))[0] is False


def test_stale_data_via_tick() -> None:
    rule = StaleDataRule(max_silence_seconds=60.0)
    assert rule.tick(T0) is None
    assert rule.observe(_obs(0, a=1.0)) == (False, "warning")
    assert rule.tick(T0 + timedelta(seconds=30)) == (False, "warning")
    assert rule.tick(T0 + timedelta(seconds=90)) == (True, "warning")
    assert rule.observe(_obs(5, a=1.0)) is None  # backfilled old data does not clear
    assert rule.observe(_obs(88, a=1.0)) == (False, "warning")


def test_state_machine_one_open_per_key() -> None:
    sm = AlertStateMachine("CMP-1")
    kw = {"ts": T0, "message": "m"}
    assert sm.evaluate("a", active=False, severity="warning", **kw) is None
    c = sm.evaluate("a", active=True, severity="warning", details={"v": 1.0}, **kw)
    assert c is not None and c.kind == "opened" and c.equipment_id == "CMP-1" and c.details == {"v": 1.0}
    assert sm.evaluate("a", active=True, severity="warning", **kw) is None
    assert sm.evaluate("b", active=True, severity="info", **kw).kind == "opened"
    assert sm.evaluate("a", active=True, severity="critical", **kw).kind == "updated"
    assert sm.open_alerts() == {"a": "critical", "b": "info"}
    assert sm.evaluate("a", active=False, severity="critical", **kw).kind == "resolved"
    sm.restore_open("c", "warning")
    assert sm.evaluate("c", active=True, severity="warning", **kw) is None
    sm.forget("c")
    assert sm.open_alerts() == {"b": "info"}


def test_build_rule_and_errors() -> None:
    r = build_rule("t", "threshold", {"sensor": "p", "high": 5, "for_seconds": 2})
    assert isinstance(r, ThresholdRule) and r.params()["high"] == 5
    assert isinstance(build_rule("s", "stale_data", {"max_silence_seconds": 30}), StaleDataRule)
    assert isinstance(build_rule("k", "stuck_sensor", {}), StuckSensorRule)
    assert isinstance(build_rule("an", "anomaly", {"level": 0.9}), AnomalyRule)
    for kind, params, text in [
        ("nope", {}, "unknown rule kind"),
        ("threshold", {"sensor": "p"}, "needs high, low"),
        ("threshold", {"high": 1.0}, "sensor"),
        ("threshold", {"sensor": "p", "high": "x"}, "high must be a finite number"),
        ("threshold", {"sensor": "p", "high": 1.0, "low": 2.0}, r"low \(2\.0\) must be below"),
        ("anomaly", {"for_count": 0}, "for_count"),
        ("anomaly", {"severity": "bad"}, "severity"),
        ("stale_data", {"foo": 1}, "unknown parameter"),
    ]:
        with pytest.raises(ValueError, match=text):
            build_rule("r", kind, params)


def test_default_rules() -> None:
    rules = default_rules("pump_jack")
    ids = [r.rule_id for r in rules]
    assert ids[:3] == ["anomaly", "stale_data", "stuck_sensor"]
    tubing = next(r for r in rules if r.rule_id == "tubing_psi_high")
    assert isinstance(tubing, ThresholdRule)
    assert (tubing.high, tubing.hysteresis, tubing.for_seconds, tubing.severity) == (
        1200.0,
        20.0,
        5.0,
        "critical",
    )
    assert len(ids) == len(set(ids))
    assert [r.rule_id for r in default_rules("unknown-type")] == ids[:3]
