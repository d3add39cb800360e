"""Tests of the alert rules, rule building and the alert state machine (pure, no IO)."""

from datetime import UTC, datetime, timedelta

import pytest

from models import (
    RULE_KINDS,
    AlertStateMachine,
    AnomalyRule,
    EquipmentState,
    FailureRiskRule,
    Observation,
    RateOfChangeRule,
    Snapshot,
    StaleDataRule,
    StuckSensorRule,
    ThresholdRule,
    build_rule,
    default_rules,
)

pytestmark = pytest.mark.fast  # no Ray, no Serve: `./wp test -m fast`

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


def test_rate_of_change_directions_window_and_hysteresis() -> None:
    # 2 units a second for a minute: 120 units per minute.
    def run(rule: RateOfChangeRule, values: list[float]) -> list[tuple[bool, str] | None]:
        return [rule.observe(_obs(10 * i, p=v)) for i, v in enumerate(values)]

    climb = [100.0 + 20.0 * i for i in range(10)]  # +20 every 10 s
    assert run(RateOfChangeRule("r", "p", max_rate=100.0), climb)[:8] == [None] * 6 + [(True, "warning")] * 2
    assert all(v in (None, (False, "warning")) for v in run(RateOfChangeRule("r", "p", max_rate=100.0,
                                                                             direction="falling"), climb))
    falling = run(RateOfChangeRule("r", "p", max_rate=100.0, direction="falling", severity="critical"),
                  list(reversed(climb)))
    assert falling[6:] == [(True, "critical")] * 4
    # Hysteresis: 120/min opens; 90/min holds (> 100 - 20); 60/min clears.
    rule = RateOfChangeRule("r", "p", max_rate=100.0, hysteresis=20.0, window_seconds=60)
    values = [0.0] * 6 + [120.0, 210.0, 270.0]  # 1/s steps: rate vs. 60 s earlier
    out = [rule.observe(_obs(60 * i, p=v)) for i, v in enumerate(values)]
    assert out == [None] + [(False, "warning")] * 5 + [(True, "warning"), (True, "warning"), (False, "warning")]
    msg, details = rule.describe(False, _obs(480, p=270.0), T0)
    assert details["rate_per_minute"] == 60.0 and details["reference_value"] == 210.0 and "back to 60/min" in msg
    assert rule.observe(_obs(600, other=1.0)) is None  # missing sensor: no opinion


def test_rate_of_change_history_is_bounded_and_state_copies() -> None:
    import pickle

    rule = RateOfChangeRule("r", "p", max_rate=1000.0, window_seconds=3600.0)
    for i in range(20_000):  # 5.5 hours at 1 Hz
        rule.observe(_obs(i, p=float(i % 7)))
    assert len(rule._history) <= RateOfChangeRule.HISTORY_POINTS + 2
    clone = pickle.loads(pickle.dumps(rule))
    assert clone.observe(_obs(20_000, p=3.0)) == rule.observe(_obs(20_000, p=3.0))
    fresh = rule.clone()
    assert fresh.params() == rule.params() and len(fresh._history) == 0
    for bad, text in [({"max_rate": 0}, "max_rate"), ({"max_rate": 1, "window_seconds": 0}, "window_seconds"),
                      ({"max_rate": 1, "direction": "up"}, "direction"), ({}, "max_rate")]:
        with pytest.raises(ValueError, match=text):
            build_rule("r", "rate_of_change", {"sensor": "p", **bad})


def test_every_kind_builds_and_runs_in_an_equipment() -> None:
    assert set(RULE_KINDS) == {"threshold", "rate_of_change", "stale_data", "stuck_sensor", "anomaly",
                               "failure_risk"}
    rules = [
        build_rule("jump", "rate_of_change", {"sensor": "p", "max_rate": 30.0, "window_seconds": 10,
                                              "severity": "critical"}),
        build_rule("risk", "failure_risk", {"level": 0.9}),
    ]
    assert isinstance(rules[1], FailureRiskRule)
    eq = EquipmentState("EQ-1", "other", rules)
    snaps = [Snapshot(T0 + timedelta(seconds=i), {"p": 10.0 if i < 20 else 100.0}) for i in range(25)]
    changes = eq.learn_many(snaps)
    jump = [c for c in changes if c.rule_id == "jump"]
    assert [(c.kind, c.severity) for c in jump] == [("opened", "critical")]
    assert jump[0].details["direction"] == "both" and "rising" in jump[0].message
