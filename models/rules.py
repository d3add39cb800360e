"""Alert rules: small stateful objects that turn observations into (active, severity) verdicts.

A rule sees every learned snapshot through `observe` and the caller's wall clock through `tick`. It
returns ``(active, severity)`` or None ("no opinion": e.g. its sensor is missing). The verdicts go through
the `AlertStateMachine`; only when that would change an alert does the caller ask the rule to
`describe` itself, so the hot path formats no strings. Rules keep per-equipment state: give each
equipment its own instances (`Rule.clone`).

"""

from __future__ import annotations

import abc
import inspect
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import NormalDist
from typing import Any, Literal, NamedTuple

from models.detectors import DEFAULT_Z_SCALE
from models.events import SEVERITIES, Severity, max_severity
from schema.equipment import SENSORS_BY_TYPE, EquipmentType

__all__ = [
    "RULE_KINDS",
    "RULE_OPTIONS",
    "SENSITIVITIES",
    "AnomalyRule",
    "EquipmentRules",
    "FailureRiskRule",
    "Observation",
    "RateOfChangeRule",
    "RejectedRule",
    "Rule",
    "RuleSpec",
    "Sensitivity",
    "StaleDataRule",
    "StuckSensorRule",
    "ThresholdRule",
    "Verdict",
    "build_rule",
    "default_rules",
    "rules_for_equipment",
    "sensitivity_level",
    "tenant_rules_for",
    "with_options",
]

Verdict = tuple[bool, Severity]
Sensitivity = str | float
SENSITIVITIES: dict[str, float] = {"low": 0.0, "medium": 0.5, "high": 1.0}


def sensitivity_level(sensitivity: Sensitivity) -> float:
    """Anomaly score level of a sensitivity: "low", "medium", "high" or a number in [0, 1] (higher: more alerts).

    ``level = 1 - 10 ** (2 * s - 3)``: low (0) alerts at 0.999, medium (0.5) at 0.99, high (1) at 0.9. The
    scores are calibrated so that a level is a tail probability: for the per-sensor score, 0.99 is a
    deviation of about 5.2 standard deviations, 0.999 of 6.6, 0.9 of 3.3. Raises `ValueError` otherwise.

    >>> [sensitivity_level(s) for s in ("low", "medium", "high")]
    [0.999, 0.99, 0.9]
    >>> round(sensitivity_level(0.75), 4)
    0.9684

    """
    if isinstance(sensitivity, str):
        if sensitivity not in SENSITIVITIES:
            raise ValueError(f"sensitivity must be one of {', '.join(SENSITIVITIES)} or a number in [0, 1], "
                             f"got {sensitivity!r}")
        s = SENSITIVITIES[sensitivity]
    elif isinstance(sensitivity, bool) or not isinstance(sensitivity, int | float) or not 0.0 <= sensitivity <= 1.0:
        raise ValueError(f"sensitivity must be low, medium, high or a number in [0, 1], got {sensitivity!r}")
    else:
        s = float(sensitivity)
    tail: float = 10.0 ** (2.0 * s - 3.0)  # a real power of ten (typeshed allows complex)
    return round(1.0 - tail, 12)


@dataclass(frozen=True, slots=True)
class Observation:
    """What the rules see of one learned snapshot.

    Parameters
    ----------
    ts
        Reading time (UTC).
    values
        The snapshot's finite values.
    scores
        Per-sensor anomaly scores in [0, 1], computed before learning.
    baselines
        Per-sensor ``(expected_mean, expected_std)`` before learning.
    multivariate_score
        The equipment's multivariate anomaly score in [0, 1] (Half-Space Trees).
    equipment_score
        The equipment's calibrated anomaly score in [0, 1] (`EquipmentAnomalyScorer`).
    failure_probability
        Latest probability of failure within the horizon (None: not predicted).

    """

    ts: datetime
    values: Mapping[str, float]
    scores: Mapping[str, float] = field(default_factory=dict)
    baselines: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    multivariate_score: float = 0.0
    equipment_score: float = 0.0
    failure_probability: float | None = None


def _check_severity(severity: str) -> None:
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")


def _check_number(name: str, value: Any, *, optional: bool = False, minimum: float | None = None) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_id(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")


def _r(x: float) -> float:
    """Round for humans and JSON (finite in, finite out)."""
    return float(f"{x:.6g}")


class Rule(abc.ABC):
    """Base class of the alert rules.

    Subclasses store their settings under their constructor argument names (so `params` and `clone`
    work) and their working state in attributes starting with an underscore.

    """

    rule_id: str
    severity: Severity
    # Alarm options of any rule (`RULE_OPTIONS`, set by `with_options`): the store applies them (latched: the
    # alert stays until acknowledged; requires_running: suppressed while the equipment is not running).
    latched: bool = False
    requires_running: bool = False

    def observe(self, obs: Observation) -> Verdict | None:
        """Verdict after one learned snapshot, or None for no opinion."""
        return None

    def tick(self, now: datetime) -> Verdict | None:
        """Verdict at wall-clock time `now`, or None for no opinion."""
        return None

    @abc.abstractmethod
    def describe(self, active: bool, obs: Observation | None, ts: datetime) -> tuple[str, dict[str, Any]]:
        """Message and JSON-safe details for a change caused by `obs` (or by a tick at `ts`)."""

    @abc.abstractmethod
    def restore_active(self, severity: Severity) -> None:
        """Start as active (an alert was open before a restart), so it does not resolve then reopen."""

    def params(self) -> dict[str, Any]:
        """The constructor arguments of this rule, then its alarm options that are set."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {**{name: getattr(self, name) for name in names},
                **{name: True for name in RULE_OPTIONS if getattr(self, name)}}

    def clone(self) -> Rule:
        """A fresh rule with the same settings and no state."""
        params = self.params()
        options = {name: params.pop(name) for name in RULE_OPTIONS if name in params}
        return with_options(type(self)(**params), **options)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


class ThresholdRule(Rule):
    """Active when a sensor stays above `high` (or below `low`) for `for_seconds` of reading time.

    Once active it clears only when the value is back inside by `hysteresis`
    (``value < high - hysteresis`` and ``value > low + hysteresis``), so a value hovering at the limit
    does not flap. A snapshot without the sensor changes nothing.

    Parameters
    ----------
    rule_id
        Dedup key of the alert.
    sensor
        The sensor to watch.
    high
        Upper limit (None: no upper limit).
    low
        Lower limit (None: no lower limit).
    hysteresis
        How far back inside the value must come to clear.
    for_seconds
        How long (reading timestamps) the value must stay outside before the rule is active.
    severity
        Severity of the alert.

    Examples
    --------
    >>> from datetime import UTC, datetime, timedelta
    >>> rule = ThresholdRule("tubing_psi_high", "tubing_psi", high=1000.0, hysteresis=50.0, for_seconds=30)
    >>> t0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
    >>> for s, v in [(0, 1450.0), (10, 1450.0), (30, 1450.0), (40, 980.0), (50, 940.0)]:
    ...     print(s, rule.observe(Observation(t0 + timedelta(seconds=s), {"tubing_psi": v})))
    0 (False, 'warning')
    10 (False, 'warning')
    30 (True, 'warning')
    40 (True, 'warning')
    50 (False, 'warning')

    """

    def __init__(
        self,
        rule_id: str,
        sensor: str,
        high: float | None = None,
        low: float | None = None,
        hysteresis: float = 0.0,
        for_seconds: float = 0.0,
        severity: Severity = "warning",
    ) -> None:
        _check_id("rule_id", rule_id)
        _check_id("sensor", sensor)
        _check_number("high", high, optional=True)
        _check_number("low", low, optional=True)
        _check_number("hysteresis", hysteresis, minimum=0.0)
        _check_number("for_seconds", for_seconds, minimum=0.0)
        _check_severity(severity)
        if high is None and low is None:
            raise ValueError("a threshold rule needs high, low or both")
        if high is not None and low is not None and not low < high:
            raise ValueError(f"low ({low}) must be below high ({high})")
        self.rule_id = rule_id
        self.sensor = sensor
        self.high = high
        self.low = low
        self.hysteresis = hysteresis
        self.for_seconds = for_seconds
        self.severity = severity
        self._active = False
        self._since: datetime | None = None

    def observe(self, obs: Observation) -> Verdict | None:
        v = obs.values.get(self.sensor)
        if v is None:
            return None
        high, low = self.high, self.low
        if self._active:
            h = self.hysteresis
            if (high is None or v < high - h) and (low is None or v > low + h):
                self._active = False
                self._since = None
            return self._active, self.severity
        if (high is not None and v > high) or (low is not None and v < low):
            if self._since is None:
                self._since = obs.ts
            if (obs.ts - self._since).total_seconds() >= self.for_seconds:
                self._active = True
        else:
            self._since = None
        return self._active, self.severity

    def describe(self, active: bool, obs: Observation | None, ts: datetime) -> tuple[str, dict[str, Any]]:
        v = None if obs is None else obs.values.get(self.sensor)
        mid = None if self.low is None or self.high is None else (self.high + self.low) / 2
        above = v is not None and self.high is not None and (mid is None or v > mid)
        threshold = self.high if above else self.low
        details: dict[str, Any] = {
            "sensor": self.sensor,
            "value": v,
            "direction": "above" if above else "below",
            "threshold": threshold,
            "high": self.high,
            "low": self.low,
            "hysteresis": self.hysteresis,
            "for_seconds": self.for_seconds,
        }
        if active:
            held = 0.0 if self._since is None else (ts - self._since).total_seconds()
            details["held_seconds"] = held
            return f"{self.sensor} {v} {details['direction']} {threshold} for {held:g}s", details
        if above:
            clear = None if self.high is None else self.high - self.hysteresis
            return f"{self.sensor} {v} back below {clear}", details
        clear = None if self.low is None else self.low + self.hysteresis
        return f"{self.sensor} {v} back above {clear}", details

    def restore_active(self, severity: Severity) -> None:
        self._active = True


class AnomalyRule(Rule):
    """Active when the equipment's anomaly score stays ≥ `level` for `for_count` snapshots in a row.

    The score of a snapshot is the maximum of the per-sensor scores, the multivariate score and the
    equipment's calibrated score. The rule clears after `for_count` snapshots in a row below
    `clear_level`, a deadband below `level` (ISA-18.2): by default ``1 - sqrt(1 - level)`` (0.9 for the
    medium 0.99), the score whose rarity is the square root of the opening one's, so an incident whose score
    wavers around `level` stays one alert instead of clearing and opening again.
    Its severity is `severity`, raised to critical once a score ≥ `critical_level` is seen; it only
    escalates while the alert is open, so a score hovering around `critical_level` does not flap between
    warning and critical. The alert explains itself: the sensors furthest from normal, each with its
    value, z-score and expected mean ± std.

    Parameters
    ----------
    rule_id
        Dedup key of the alert.
    level
        Score at or above which a snapshot counts as anomalous (None: from `sensitivity`).
    for_count
        Consecutive anomalous (normal) snapshots needed to activate (clear).
    severity
        Severity below `critical_level`.
    critical_level
        Score at or above which the alert is critical (None: ``1 - (1 - level) / 10``).
    sensitivity
        "low", "medium", "high" or a number in [0, 1]; sets `level` when it is None (`sensitivity_level`).
    clear_level
        Score below which a snapshot counts towards clearing (None: ``1 - sqrt(1 - level)``).

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> rule = AnomalyRule(for_count=2)
    >>> t = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
    >>> for s in [0.2, 0.995, 0.9995, 0.95, 0.5, 0.3]:
    ...     print(rule.observe(Observation(t, {"x": 1.0}, scores={"x": s})))
    (False, 'warning')
    (False, 'warning')
    (True, 'critical')
    (True, 'critical')
    (True, 'critical')
    (False, 'warning')

    """

    sensitivity: Sensitivity = "medium"  # checkpoints written before it existed

    def __init__(
        self,
        rule_id: str = "anomaly",
        level: float | None = None,
        for_count: int = 3,
        severity: Severity = "warning",
        critical_level: float | None = None,
        sensitivity: Sensitivity = "medium",
        clear_level: float | None = None,
    ) -> None:
        _check_id("rule_id", rule_id)
        _check_number("level", level, minimum=0.0, optional=True)
        _check_number("critical_level", critical_level, minimum=0.0, optional=True)
        _check_number("clear_level", clear_level, minimum=0.0, optional=True)
        _check_int("for_count", for_count, 1)
        _check_severity(severity)
        base = sensitivity_level(sensitivity)
        lvl = base if level is None else level
        crit = 1.0 - (1.0 - lvl) / 10.0 if critical_level is None else critical_level
        if lvl > 1.0 or crit > 1.0:
            raise ValueError("level and critical_level must be in [0, 1]")
        clear = 1.0 - math.sqrt(1.0 - lvl) if clear_level is None else clear_level
        if clear > lvl:
            raise ValueError("clear_level must not be above level")
        self.rule_id = rule_id
        self.level = level
        self.for_count = for_count
        self.severity = severity
        self.critical_level = critical_level
        self.sensitivity = sensitivity
        self.clear_level = clear_level
        self._level = lvl
        self._clear = round(clear, 12)
        self._critical = round(crit, 12)
        self._active = False
        self._high = 0
        self._low = 0
        self._peak: Severity = severity

    @property
    def effective_level(self) -> float:
        """The level in use (`level`, or the one of `sensitivity`)."""
        lvl: float | None = self.__dict__.get("_level")
        lvl = self.level if lvl is None else lvl
        if lvl is None:  # neither worked out nor given (was a TypeError at the first score): what __init__ works out
            return sensitivity_level(self.sensitivity)
        return lvl

    @property
    def effective_critical_level(self) -> float:
        """The critical level in use."""
        crit: float | None = self.__dict__.get("_critical")
        crit = self.critical_level if crit is None else crit
        if crit is None:  # as for `effective_level`
            return round(1.0 - (1.0 - self.effective_level) / 10.0, 12)
        return crit

    def observe(self, obs: Observation) -> Verdict | None:
        score = obs.multivariate_score
        if obs.equipment_score > score:
            score = obs.equipment_score
        for s in obs.scores.values():
            if s > score:
                score = s
        level = self.effective_level
        clear = self.__dict__.get("_clear", level)  # rules pickled before the deadband clear at `level`
        if score >= level:
            self._high += 1
            if score >= self.effective_critical_level:
                self._peak = "critical"
            if not self._active and self._high >= self.for_count:
                self._active = True
        else:
            self._high = 0
        if score >= clear:
            self._low = 0
        else:
            self._low += 1
            if self._active and self._low >= self.for_count:
                self._active = False
        if not self._active and score < level:
            self._peak = self.severity
        return self._active, max_severity(self._peak, self.severity)

    def describe(self, active: bool, obs: Observation | None, ts: datetime) -> tuple[str, dict[str, Any]]:
        level = self.effective_level
        if obs is None:
            return "anomaly score unknown", {"level": level}
        # The band a sensor's value may move in before its own score reaches `level` (the baselines' spread is
        # already widened by operators' false-alarm verdicts).
        half_width = NormalDist().inv_cdf((1.0 + min(level, 1.0 - 1e-12)) / 2.0) * DEFAULT_Z_SCALE
        explained: list[dict[str, Any]] = []
        for name, value in obs.values.items():
            mean, std = obs.baselines.get(name, (value, 0.0))
            z = (value - mean) / std if std > 0 else 0.0
            band = [round(mean - half_width * std, 3), round(mean + half_width * std, 3)]
            explained.append(
                {
                    "sensor": name,
                    "value": value,
                    "score": _r(obs.scores.get(name, 0.0)),
                    "z": _r(z),
                    "expected_mean": _r(mean),
                    "expected_std": _r(std),
                    "expected_band": band,
                    "outside_band": not band[0] <= value <= band[1],
                }
            )
        explained.sort(key=lambda e: (-e["score"], -abs(e["z"])))
        top = [e for e in explained if e["score"] >= level] or explained[:3]
        score = max([obs.multivariate_score, obs.equipment_score, *obs.scores.values()])
        details: dict[str, Any] = {
            "score": _r(score),
            "multivariate_score": _r(obs.multivariate_score),
            "equipment_score": _r(obs.equipment_score),
            "level": level,
            "critical_level": self.effective_critical_level,
            "sensitivity": self.sensitivity,
            "for_count": self.for_count,
            "sensors": top,
        }
        if not active:
            return f"anomaly score {_r(score)} below {level} for {self.for_count} snapshots", details
        parts = [
            f"{e['sensor']} {e['value']} (z={e['z']:+.1f}, "
            f"expected {e['expected_mean']} ± {e['expected_std']})"
            for e in top
        ]
        who = "; ".join(parts) if parts else "multivariate"
        return f"anomaly score {_r(score)} ≥ {level} for {self.for_count} snapshots: {who}", details

    def restore_active(self, severity: Severity) -> None:
        self._active = True
        self._peak = max_severity(severity, self.severity)


class StaleDataRule(Rule):
    """Active when no snapshot has arrived for more than `max_silence_seconds` (checked on `tick`).

    Silence is measured from the newest reading timestamp seen to the `now` given by the caller. Fresh
    data clears the alert; a backfilled snapshot already older than the silence limit (relative to
    the last tick) gives no opinion, so store-and-forward data does not make the alert flap.

    Parameters
    ----------
    rule_id
        Dedup key of the alert.
    max_silence_seconds
        Longest silence that is still fine.
    severity
        Severity of the alert.

    Examples
    --------
    >>> from datetime import UTC, datetime, timedelta
    >>> rule = StaleDataRule(max_silence_seconds=60)
    >>> t0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
    >>> rule.tick(t0) is None  # nothing seen yet
    True
    >>> rule.observe(Observation(t0, {"x": 1.0}))
    (False, 'warning')
    >>> rule.tick(t0 + timedelta(seconds=60)), rule.tick(t0 + timedelta(seconds=61))
    ((False, 'warning'), (True, 'warning'))

    """

    def __init__(
        self, rule_id: str = "stale_data", max_silence_seconds: float = 60.0, severity: Severity = "warning"
    ) -> None:
        _check_id("rule_id", rule_id)
        _check_number("max_silence_seconds", max_silence_seconds, minimum=0.0)
        _check_severity(severity)
        self.rule_id = rule_id
        self.max_silence_seconds = max_silence_seconds
        self.severity = severity
        self._last_seen: datetime | None = None
        self._last_now: datetime | None = None

    def observe(self, obs: Observation) -> Verdict | None:
        if self._last_seen is None or obs.ts > self._last_seen:
            self._last_seen = obs.ts
        now = self._last_now
        if now is not None and (now - obs.ts).total_seconds() > self.max_silence_seconds:
            return None
        return False, self.severity

    def tick(self, now: datetime) -> Verdict | None:
        self._last_now = now
        if self._last_seen is None:
            return None
        return (now - self._last_seen).total_seconds() > self.max_silence_seconds, self.severity

    def describe(self, active: bool, obs: Observation | None, ts: datetime) -> tuple[str, dict[str, Any]]:
        last = None if self._last_seen is None else self._last_seen.isoformat()
        silence = None if self._last_seen is None else (ts - self._last_seen).total_seconds()
        details = {
            "last_reading_ts": last,
            "silence_seconds": silence,
            "max_silence_seconds": self.max_silence_seconds,
        }
        if active:
            return f"no data for {silence:g}s (limit {self.max_silence_seconds:g}s)", details
        return "data arriving again", details

    def restore_active(self, severity: Severity) -> None:
        """Nothing to do: the next tick or fresh snapshot decides."""


class StuckSensorRule(Rule):
    """Active when a sensor that has varied reports the exact same value `min_repeats` times in a row.

    A sensor that never changed since it was first seen is taken as constant by nature and ignored.
    The alert clears when every stuck sensor changes. A snapshot without a sensor does not break its
    run. After a restart with an open alert, the rule holds it for `min_repeats` snapshots, the time
    it needs to see again whether a sensor is stuck.

    Parameters
    ----------
    rule_id
        Dedup key of the alert.
    min_repeats
        Number of identical consecutive values that make a sensor stuck.
    severity
        Severity of the alert.

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> rule = StuckSensorRule(min_repeats=3)
    >>> t = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
    >>> [rule.observe(Observation(t, {"x": v}))[0] for v in [1.0, 2.0, 2.0, 2.0, 2.0, 3.0]]
    [False, False, False, True, True, False]

    """

    def __init__(
        self, rule_id: str = "stuck_sensor", min_repeats: int = 30, severity: Severity = "warning"
    ) -> None:
        _check_id("rule_id", rule_id)
        _check_int("min_repeats", min_repeats, 2)
        _check_severity(severity)
        self.rule_id = rule_id
        self.min_repeats = min_repeats
        self.severity = severity
        self._last: dict[str, float] = {}
        self._repeats: dict[str, int] = {}
        self._varied: set[str] = set()
        self._stuck: set[str] = set()
        self._hold = 0

    def observe(self, obs: Observation) -> Verdict | None:
        last, repeats = self._last, self._repeats
        for name, v in obs.values.items():
            prev = last.get(name)
            if prev is None:
                last[name] = v
                repeats[name] = 1
            elif prev == v:
                n = repeats[name] = repeats[name] + 1
                if n == self.min_repeats and name in self._varied:
                    self._stuck.add(name)
            else:
                last[name] = v
                repeats[name] = 1
                self._varied.add(name)
                self._stuck.discard(name)
        if self._hold:
            self._hold -= 1
        return bool(self._stuck) or self._hold > 0, self.severity

    def describe(self, active: bool, obs: Observation | None, ts: datetime) -> tuple[str, dict[str, Any]]:
        stuck = [
            {"sensor": s, "value": self._last[s], "repeats": self._repeats[s]} for s in sorted(self._stuck)
        ]
        details = {"sensors": stuck, "min_repeats": self.min_repeats}
        if active and stuck:
            text = ", ".join(f"{e['sensor']} at {e['value']} x{e['repeats']}" for e in stuck)
            return f"stuck sensor: {text}", details
        if active:
            return "stuck sensor (restored, re-checking)", details
        return "no stuck sensor", details

    def restore_active(self, severity: Severity) -> None:
        self._hold = self.min_repeats


class FailureRiskRule(Rule):
    """Active while the predicted probability of failure within the horizon is ≥ `level`.

    The probability comes from the equipment's `FailurePredictor` (re-computed every sampling period of
    its features, carried on every observation); it clears below ``level - hysteresis``. No opinion while
    no probability is known.

    Parameters
    ----------
    rule_id
        Dedup key of the alert.
    level
        Probability at or above which the rule is active.
    hysteresis
        How far below `level` the probability must fall to clear.
    severity
        Severity of the alert.

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> rule = FailureRiskRule(level=0.5)
    >>> t = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
    >>> [rule.observe(Observation(t, {}, failure_probability=p)) for p in (None, 0.2, 0.6, 0.45, 0.3)]
    [None, (False, 'warning'), (True, 'warning'), (True, 'warning'), (False, 'warning')]

    """

    def __init__(
        self, rule_id: str = "failure_risk", level: float = 0.5, hysteresis: float = 0.1, severity: Severity = "warning"
    ) -> None:
        _check_id("rule_id", rule_id)
        _check_number("level", level, minimum=0.0)
        _check_number("hysteresis", hysteresis, minimum=0.0)
        _check_severity(severity)
        if level > 1.0:
            raise ValueError("level must be in [0, 1]")
        self.rule_id = rule_id
        self.level = level
        self.hysteresis = hysteresis
        self.severity = severity
        self._active = False
        self._p: float | None = None

    def observe(self, obs: Observation) -> Verdict | None:
        p = obs.failure_probability
        if p is None:
            return None
        self._p = p
        if self._active:
            self._active = p >= self.level - self.hysteresis
        else:
            self._active = p >= self.level
        return self._active, self.severity

    def describe(self, active: bool, obs: Observation | None, ts: datetime) -> tuple[str, dict[str, Any]]:
        p = self._p
        details = {"probability": None if p is None else _r(p), "level": self.level}
        if active:
            return f"failure probability {p:.2f} ≥ {self.level}", details
        return f"failure probability {p if p is None else round(p, 2)} back below {self.level}", details

    def restore_active(self, severity: Severity) -> None:
        self._active = True


Direction = Literal["rising", "falling", "both"]
DIRECTIONS: tuple[str, ...] = ("rising", "falling", "both")


class RateOfChangeRule(Rule):
    """Active when a sensor changes faster than `max_rate` units per minute.

    The rate of a snapshot is measured against the sensor's newest earlier value that is at least
    `window_seconds` older (reading time): ``(value - reference) / elapsed``, per minute. Measuring over a
    window, not between neighbours, keeps one noisy sample from reading as a jump. `direction` picks rises,
    falls or both. Once active, the rule clears when the rate is back to ``max_rate - hysteresis`` or less.
    No opinion until a value old enough has been seen, nor on a snapshot without the sensor.

    The history kept is bounded: a value is remembered only if it is at least ``window_seconds / 64``
    newer than the last one remembered, so the reference is at most that much older than the window.

    Parameters
    ----------
    rule_id
        Dedup key of the alert.
    sensor
        The sensor to watch.
    max_rate
        Largest change per minute that is still fine (> 0).
    direction
        "rising", "falling" or "both".
    window_seconds
        How far back (reading time) the reference value lies (> 0).
    hysteresis
        How far below `max_rate` the rate must come to clear.
    severity
        Severity of the alert.

    Examples
    --------
    >>> from datetime import UTC, datetime, timedelta
    >>> rule = RateOfChangeRule("psi_jump", "tubing_psi", max_rate=100.0, window_seconds=60)
    >>> t0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
    >>> for s, v in [(0, 800.0), (30, 810.0), (60, 820.0), (90, 900.0), (120, 1000.0), (180, 1010.0)]:
    ...     print(s, rule.observe(Observation(t0 + timedelta(seconds=s), {"tubing_psi": v})))
    0 None
    30 None
    60 (False, 'warning')
    90 (False, 'warning')
    120 (True, 'warning')
    180 (False, 'warning')
    >>> rule.describe(False, None, t0)[0]
    'tubing_psi rate back to 10/min (limit 100/min over 60s)'

    """

    HISTORY_POINTS = 64

    def __init__(
        self,
        rule_id: str,
        sensor: str,
        max_rate: float,
        direction: Direction = "both",
        window_seconds: float = 60.0,
        hysteresis: float = 0.0,
        severity: Severity = "warning",
    ) -> None:
        _check_id("rule_id", rule_id)
        _check_id("sensor", sensor)
        _check_number("max_rate", max_rate)
        _check_number("window_seconds", window_seconds)
        _check_number("hysteresis", hysteresis, minimum=0.0)
        _check_severity(severity)
        if max_rate <= 0:
            raise ValueError(f"max_rate must be > 0, got {max_rate!r}")
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be > 0, got {window_seconds!r}")
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        self.rule_id = rule_id
        self.sensor = sensor
        self.max_rate = max_rate
        self.direction = direction
        self.window_seconds = window_seconds
        self.hysteresis = hysteresis
        self.severity = severity
        self._history: deque[tuple[datetime, float]] = deque()
        self._active = False
        self._rate: float | None = None
        self._ref: tuple[datetime, float] | None = None

    def observe(self, obs: Observation) -> Verdict | None:
        v = obs.values.get(self.sensor)
        if v is None:
            return None
        h = self._history
        cutoff = obs.ts - timedelta(seconds=self.window_seconds)
        while len(h) >= 2 and h[1][0] <= cutoff:
            h.popleft()
        ref = h[0] if h and h[0][0] <= cutoff else None
        if not h or (obs.ts - h[-1][0]).total_seconds() >= self.window_seconds / self.HISTORY_POINTS:
            h.append((obs.ts, v))
        if ref is None:
            return None
        rate = (v - ref[1]) / (obs.ts - ref[0]).total_seconds() * 60.0
        self._rate, self._ref = rate, ref
        speed = {"rising": rate, "falling": -rate}.get(self.direction, abs(rate))
        if self._active:
            self._active = speed > self.max_rate - self.hysteresis
        else:
            self._active = speed > self.max_rate
        return self._active, self.severity

    def describe(self, active: bool, obs: Observation | None, ts: datetime) -> tuple[str, dict[str, Any]]:
        rate, ref = self._rate, self._ref
        details: dict[str, Any] = {
            "sensor": self.sensor,
            "value": None if obs is None else obs.values.get(self.sensor),
            "rate_per_minute": None if rate is None else _r(rate),
            "reference_value": None if ref is None else ref[1],
            "reference_ts": None if ref is None else ref[0].isoformat(),
            "max_rate": self.max_rate,
            "direction": self.direction,
            "window_seconds": self.window_seconds,
        }
        if rate is None:
            return f"{self.sensor} rate unknown", details
        moving = "rising" if rate >= 0 else "falling"
        limit = f"(limit {self.max_rate:g}/min over {self.window_seconds:g}s)"
        if active:
            return f"{self.sensor} {moving} {_r(abs(rate)):g}/min {limit}", details
        return f"{self.sensor} rate back to {_r(rate):g}/min {limit}", details

    def restore_active(self, severity: Severity) -> None:
        self._active = True


_KINDS: dict[str, type[Rule]] = {
    "threshold": ThresholdRule,
    "anomaly": AnomalyRule,
    "stale_data": StaleDataRule,
    "stuck_sensor": StuckSensorRule,
    "failure_risk": FailureRiskRule,
    "rate_of_change": RateOfChangeRule,
}
RULE_KINDS: tuple[str, ...] = tuple(_KINDS)
RULE_OPTIONS: tuple[str, ...] = ("latched", "requires_running")


def with_options(rule: Rule, **options: Any) -> Rule:
    """Set a rule's alarm options (`RULE_OPTIONS`, booleans); returns the rule. Raises `ValueError` otherwise.

    >>> with_options(StuckSensorRule(), latched=True)
    StuckSensorRule(rule_id='stuck_sensor', min_repeats=30, severity='warning', latched=True)

    """
    for name, value in options.items():
        if name not in RULE_OPTIONS:
            raise ValueError(f"unknown rule option {name!r}; expected one of: {', '.join(RULE_OPTIONS)}")
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        if value:
            setattr(rule, name, True)
        else:
            rule.__dict__.pop(name, None)
    return rule


def build_rule(rule_id: str, kind: str, params: dict[str, Any], sensitivity: Sensitivity | None = None) -> Rule:
    """Build a rule from its registry form (kind and parameters).

    `sensitivity` (the tenant's, equipment type's or equipment's, from config) is passed to the rules that
    take one (`AnomalyRule`) unless `params` sets it. Raises `ValueError` for an unknown kind, unknown or
    missing parameters, or bad values.

    Examples
    --------
    >>> build_rule("hot", "threshold", {"sensor": "discharge_temp_f", "high": 300})
    ThresholdRule(rule_id='hot', sensor='discharge_temp_f', high=300, low=None, hysteresis=0.0, \
for_seconds=0.0, severity='warning')
    >>> build_rule("x", "magic", {})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown rule kind 'magic' for rule 'x'; expected one of: threshold, anomaly, ...

    """
    cls = _KINDS.get(kind)
    if cls is None:
        raise ValueError(
            f"unknown rule kind {kind!r} for rule {rule_id!r}; expected one of: {', '.join(_KINDS)}"
        )
    if not isinstance(params, Mapping):
        raise ValueError(f"params of rule {rule_id!r} must be a mapping, got {type(params).__name__}")
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "rule_id")]
    options = {name: params[name] for name in RULE_OPTIONS if name in params}
    params = {k: v for k, v in params.items() if k not in options}
    accepted_all = [*accepted, *RULE_OPTIONS]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for {kind} rule {rule_id!r}; "
            f"accepted: {', '.join(accepted_all)}"
        )
    kwargs = dict(params)
    if sensitivity is not None and "sensitivity" in accepted and "sensitivity" not in kwargs:
        kwargs["sensitivity"] = sensitivity
    make: Callable[..., Rule] = cls  # each kind's own constructor (`accepted` above)
    try:
        return with_options(make(rule_id=rule_id, **kwargs), **options)
    except TypeError as e:  # a missing required parameter
        raise ValueError(f"bad parameters for {kind} rule {rule_id!r}: {e}") from None
    except ValueError as e:
        raise ValueError(f"bad parameters for {kind} rule {rule_id!r}: {e}") from None


def default_rules(equipment_type: str, sensitivity: Sensitivity = "medium") -> list[Rule]:
    """Default rules of an equipment type.

    An `AnomalyRule` of the given `sensitivity` ("low", "medium", "high" or a number in [0, 1]), a
    `StaleDataRule` (60 s), a `StuckSensorRule`, and per sensor of the type a critical
    `ThresholdRule` half a span outside the normal range (held 5 s, hysteresis 5 % of the span), named
    ``<sensor>_high`` and ``<sensor>_low``. A low limit that would fall at or below zero for a sensor whose
    normal range is non-negative is left out (it could never fire). An unknown type gets the generic rules.

    Examples
    --------
    >>> [r.rule_id for r in default_rules("separator")][3:]
    ['level_in_high', 'pressure_psi_high', 'pressure_psi_low']
    >>> default_rules("meter")[3]
    ThresholdRule(rule_id='flow_mcfd_high', sensor='flow_mcfd', high=1250.0, low=None, hysteresis=35.0, \
for_seconds=5.0, severity='critical')

    """
    rules: list[Rule] = [
        AnomalyRule(sensitivity=sensitivity),
        StaleDataRule(max_silence_seconds=60.0),
        StuckSensorRule(),
    ]
    try:
        specs = SENSORS_BY_TYPE[EquipmentType(equipment_type)]
    except ValueError:
        specs = ()
    for spec in specs:
        span = spec.high - spec.low
        hyst = 0.05 * span
        rules.append(
            ThresholdRule(
                f"{spec.name}_high",
                spec.name,
                high=spec.high + 0.5 * span,
                hysteresis=hyst,
                for_seconds=5.0,
                severity="critical",
            )
        )
        low = spec.low - 0.5 * span
        if low > 0 or spec.low < 0:
            rules.append(
                ThresholdRule(
                    f"{spec.name}_low",
                    spec.name,
                    low=low,
                    hysteresis=hyst,
                    for_seconds=5.0,
                    severity="critical",
                )
            )
    return rules


RuleSpec = Mapping[str, Any]
"""A rule in its registry form: ``{"id": ..., "kind": ..., "params": {...}}`` (`build_rule`); a tenant's stored
rule also names the ``equipment_id`` and ``equipment_type`` it is for (None: every one)."""


@dataclass(frozen=True, slots=True)
class RejectedRule:
    """A spec `rules_for_equipment` left out: its position among the specs it was given and why."""

    index: int
    rule_id: str | None
    reason: str


class EquipmentRules(NamedTuple):
    """What `rules_for_equipment` returns: the rules to run and the specs it could not build."""

    rules: list[Rule]
    rejected: list[RejectedRule]


def tenant_rules_for(rule_rows: Iterable[RuleSpec], equipment_id: str, equipment_type: str) -> list[RuleSpec]:
    """The tenant's rules that apply to one equipment: those for every equipment, for its type or for it alone.

    Examples
    --------
    >>> rows = [{"id": "a", "equipment_id": None, "equipment_type": None},
    ...         {"id": "b", "equipment_id": None, "equipment_type": "compressor"},
    ...         {"id": "c", "equipment_id": "PJ-2", "equipment_type": None},
    ...         {"id": "d", "equipment_id": "PJ-1", "equipment_type": "pump_jack"}]
    >>> [r["id"] for r in tenant_rules_for(rows, "PJ-1", "pump_jack")]
    ['a', 'd']

    """
    return [
        row for row in rule_rows
        if row.get("equipment_id") in (None, equipment_id) and row.get("equipment_type") in (None, equipment_type)
    ]


def rules_for_equipment(equipment_type: str, specs: Iterable[RuleSpec],
                        sensitivity: Sensitivity = "medium") -> EquipmentRules:
    """The rules an equipment runs: its type's defaults at `sensitivity`, replaced or extended by `specs` in order.

    A spec replaces the rule of the same id (a default or an earlier spec) or is added. The equipment's
    `sensitivity` goes to every rule that takes one and does not set its own (`build_rule`): a tenant's
    anomaly rule follows the equipment as the default one does. A spec that cannot be built is left out and
    returned in `rejected`; the caller decides whether that is a warning or an error.

    Examples
    --------
    >>> specs = [{"id": "anomaly", "kind": "anomaly", "params": {"severity": "critical"}},
    ...          {"id": "hot", "kind": "threshold", "params": {"sensor": "discharge_temp_f"}},
    ...          {"kind": "threshold"}]
    >>> rules, rejected = rules_for_equipment("compressor", specs, "high")
    >>> anomaly = next(r for r in rules if r.rule_id == "anomaly")
    >>> anomaly.severity, anomaly.sensitivity
    ('critical', 'high')
    >>> [(r.index, r.rule_id) for r in rejected]
    [(1, 'hot'), (2, None)]
    >>> rejected[1].reason
    'rule #2 needs an id and a kind'

    """
    rules = {r.rule_id: r for r in default_rules(equipment_type, sensitivity)}
    rejected: list[RejectedRule] = []
    for index, spec in enumerate(specs):
        if not isinstance(spec, Mapping) or "id" not in spec or "kind" not in spec:
            rejected.append(RejectedRule(index, None, f"rule #{index} needs an id and a kind"))
            continue
        rule_id, params = str(spec["id"]), spec.get("params") or {}
        try:
            rule = build_rule(rule_id, str(spec["kind"]), dict(params) if isinstance(params, Mapping) else params,
                              sensitivity)
        except ValueError as exc:
            rejected.append(RejectedRule(index, rule_id, str(exc)))
            continue
        rules[rule.rule_id] = rule
    return EquipmentRules(list(rules.values()), rejected)
