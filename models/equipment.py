"""`EquipmentState`: everything the models know about one equipment, as one entity with a durable checkpoint."""

from __future__ import annotations

import math
import sys
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import river

from models.alerts import AlertStateMachine
from models.detectors import EquipmentAnomalyScorer, SensorAnomalyDetector, SnapshotAnomalyDetector
from models.drift import LevelDriftDetector
from models.events import AlertChange, Severity, Snapshot
from models.failure import DEFAULT_HORIZON_SECONDS, Example, FailurePredictor
from models.rules import AnomalyRule, Observation, Rule, Sensitivity, default_rules
from schema.equipment import SENSORS_BY_TYPE, SETPOINT_SENSOR

__all__ = [
    "COMMS_LOSS",
    "DRIFT_PREFIX",
    "EQUIPMENT_KEY",
    "MODEL_SCHEMA",
    "MODEL_VERSION",
    "MULTIVARIATE_KEY",
    "EquipmentState",
]

# Bump when the meaning of a score changes, so that restored models re-learn their scorer and drift detectors
# (6: daily profiles only where they explain). Not for the stored layout: a checkpoint is a document of stable
# tags (`models.checkpoint`) with its own format number, and a new attribute takes its default when read.
MODEL_SCHEMA = 6
MODEL_VERSION = f"wellpulse-models-{MODEL_SCHEMA}/river-{river.__version__}"
MULTIVARIATE_KEY = "_multivariate"
EQUIPMENT_KEY = "_equipment"
DRIFT_PREFIX = "drift_"
COMMS_LOSS = "comms_loss"  # the alert a source's own death notice opens (`EquipmentState.comms_lost`)
RUNTIME_GAP_SECONDS = 300.0  # a longer gap between readings counts as this much runtime
VERDICT_WIDEN = 1.5  # a false alarm widens its sensors' normal by this factor ...
MAX_TOLERANCE = 8.0  # ... up to this many times the learned spread
VERDICTS_KEPT = 1000  # alert ids whose verdict was applied, remembered so that a replay is applied once
_SQRT2 = math.sqrt(2.0)
ANOMALY_LEVEL_WEIGHT = 0.01  # EW weight of the anomaly level (a failure feature)
# Sensors that read exactly zero when the machine is stopped (a pump-off controller resting a pump jack):
# a snapshot with all of them at zero is the equipment stopped, not a fault. See `EquipmentState`.
RUNNING_SENSORS: dict[str, tuple[str, ...]] = {"pump_jack": ("strokes_per_minute", "motor_current_a")}
# An operating change (see `EquipmentState._drift_changes`): the drifted sensor moved by at least STEP_SIGMA
# within its detector's step span, and another sensor of the equipment by at least CORROBORATE_SIGMA.
STEP_SIGMA = 1.5
CORROBORATE_SIGMA = 1.0
# A set point's step (see `EquipmentState._setpoint_step`): at least this many σ of how far the value moves
# over the same few readings between changes, and this share of its operating range.
SETPOINT_STEP_SIGMA = 4.0
SETPOINT_MIN_STEP = 0.03
SETPOINT_STEP_READINGS = 3  # the step is measured against the reading this many readings back
SETPOINT_NOISE_MEMORY = 200  # readings the set point's step noise remembers
SETPOINT_HOLD_READINGS = 2  # readings after a step that must stay at least half a step from the old level
_MEAN_ABS_TO_SIGMA = math.sqrt(math.pi / 2.0)  # σ of a normal variable from its mean absolute value
_SETPOINTS: dict[str, tuple[str, float, float]] = {
    t.value: (name, spec.low, spec.high)
    for t, name in SETPOINT_SENSOR.items()
    for spec in SENSORS_BY_TYPE[t] if spec.name == name
}


def _r(x: float) -> float:
    """Round for humans and JSON."""
    return float(f"{x:.6g}") if math.isfinite(x) else 0.0


def _finite_values(raw_values: Mapping[str, Any]) -> dict[str, float]:
    """The snapshot's values that are finite numbers, as floats (text and None are left out)."""
    values: dict[str, float] = {}
    for name, raw in raw_values.items():
        try:
            v = raw if type(raw) is float else float(raw)
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            values[name] = v
    return values


def _utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


class EquipmentState:
    """Detectors, rules and open alerts of one equipment; learns snapshots and returns alert changes.

    For each snapshot newer than `last_learned_ts`: every sensor is scored by its own
    `SensorAnomalyDetector` (created when the sensor first appears), the snapshot by a seeded
    `SnapshotAnomalyDetector` and by an `EquipmentAnomalyScorer` (its calibrated score in
    `equipment_score`, read by the `AnomalyRule`; its novelty-gated score in `equipment_novelty`; its
    chi-square-like statistic in `equipment_statistic`), all before learning; then the detectors learn and
    every rule is evaluated through the `AlertStateMachine`.

    Drift: each sensor's value feeds a `LevelDriftDetector` (from the sensor's third day, a CUSUM of its
    residual level from its time-of-day profile, in σ of its normal variation, on reading time; a conservative
    test of new levels before). A drift opens an "info" alert
    ``drift_<sensor>`` and re-baselines the sensor in every detector; the alert resolves once the new
    baseline is learned (`warmup` values), so the anomaly model adapts instead of alerting for ever.
    Unless it was an operating change: when the drifted sensor changed abruptly (a step of at least
    `STEP_SIGMA` σ within minutes) and another sensor of the equipment stepped at the same time (at least
    `CORROBORATE_SIGMA` σ), the equipment's physics moved, not one sensor: an operator changed a set point
    (strokes per minute, and the motor current and rod load with them). Then the moved sensors are
    re-baselined in every model without an alert (counted in `operating_changes`). A failing sensor drifts
    alone; a failing machine (a bearing wearing) moves several sensors, but over hours, not in a step.
    Nor is a drift back to the normal that earlier drifts of the sensor left, within a day (the worn bearing
    replaced, the leak fixed): a recovery, re-baselined without an alert (counted in `returns_to_normal`).

    Set points: a step of the type's set point (`schema.equipment.SETPOINT_SENSOR`: a pump jack's speed, a
    compressor's discharge pressure) inside its operating range, within a few readings, is an operator's
    change: every sensor is re-baselined at once (counted in `setpoint_changes`), and drift stays silent while
    the other sensors settle at their new levels.

    Stopped: a snapshot in which every `RUNNING_SENSORS` sensor of the type reads zero is the machine at rest
    (a pump-off controller), a state, not an anomaly: the models neither score nor learn it, and the rules
    see it without values (the stale-data rule still counts it as data; open alerts on values clear as they
    would on normal data). Counted in `stopped_snapshots`.

    Historical: a snapshot forwarded late from an edge buffer (`Snapshot.historical`) is scored and learned, but
    neither the rules nor drift see it: no alert opens, updates or resolves on readings whose time has passed,
    and a stale-data alert opened while the link was down stays open until live data comes (it fires once).
    Counted in `historical_snapshots`. Values of bad quality never reach the models (the ingest path leaves
    them out).

    Failure: every hour of reading time the features (`failure_features`) are sampled into a
    `FailurePredictor`; field events label them (`record_failure`, `record_maintenance`), and
    `failure_probability` is the probability of a failure within the horizon (default 7 days). A new
    equipment can start from its type's shared model (`failure_model=` or `adopt_failure_model`).

    Model metadata and every prediction are in `predictions()` (JSON-safe). A snapshot at or before
    `last_learned_ts` is counted in `skipped` and not learned again (the checkpoint rule of the design: a
    restored entity does not
    relearn readings at or before its checkpoint). Missing sensors, new sensors and NaN/inf values
    are skipped, never raised on.

    Open alerts of rules that no longer exist (after `set_rules`, or restored from the database) are
    resolved at the next evaluation (`learn_many` or `tick`), with that evaluation's time.

    Parameters
    ----------
    equipment_id
        Identifier written into the alert changes.
    equipment_type
        One of `schema.equipment.EquipmentType`; picks the default rules.
    rules
        The rules (cloned: each equipment keeps its own rule state); None for `default_rules`.
    seed
        Seed of the multivariate detector.
    warmup
        Values each detector learns before it scores (and a drifted sensor before it scores again).
    sensitivity
        Sensitivity of the default anomaly rule when `rules` is None ("low", "medium", "high" or [0, 1]).
    drift
        Detect drifts (info alerts ``drift_<sensor>`` and re-baselining).
    failure_model
        A failure model to start from (copied), e.g. the one shared by the equipment type.
    horizon_seconds
        Horizon of the failure probability.

    Examples
    --------
    >>> from datetime import UTC, datetime, timedelta
    >>> from models.rules import ThresholdRule
    >>> eq = EquipmentState("PJ-1", "pump_jack", [ThresholdRule("hi", "tubing_psi", high=1000.0)])
    >>> t0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
    >>> snaps = [Snapshot(t0 + timedelta(seconds=i), {"tubing_psi": v}) for i, v in enumerate([800.0, 1.2e3])]
    >>> [(c.kind, c.rule_id, c.message) for c in eq.learn_many(snaps)]
    [('opened', 'hi', 'tubing_psi 1200.0 above 1000.0 for 0s')]
    >>> eq.learn_many(snaps), eq.skipped
    ([], 2)
    >>> clone = EquipmentState.from_bytes(eq.to_bytes())
    >>> clone.summary()["open_alerts"]
    {'hi': 'warning'}

    """

    # Working state made on first use (class defaults, so a checkpoint of this version without them loads).
    _setpoint_recent: deque[float] | None = None  # the set point's last readings (`_setpoint_step`)
    _setpoint_noise = 0.0  # mean |move| of the set point over SETPOINT_STEP_READINGS readings between changes
    _setpoint_moves = 0  # moves that mean has learned
    _setpoint_pending: tuple[float, float, int] | None = None  # a step seen: (level before, step, readings held)
    _settling = 0  # snapshots left before the drift detectors re-baseline after a set-point change
    returns_to_normal = 0  # drifts back to the normal an earlier drift left: re-baselined without an alert
    comms_lost_at: datetime | None = None  # the latest death notice (`comms_lost`)

    def __init__(
        self,
        equipment_id: str,
        equipment_type: str = "other",
        rules: Sequence[Rule] | None = None,
        *,
        seed: int = 0,
        warmup: int = 30,
        sensitivity: Sensitivity = "medium",
        drift: bool = True,
        failure_model: FailurePredictor | None = None,
        horizon_seconds: float = DEFAULT_HORIZON_SECONDS,
    ) -> None:
        self.equipment_id = equipment_id
        self.equipment_type = str(equipment_type)
        self.seed = seed
        self.warmup = warmup
        self.sensitivity = sensitivity
        self.drift = drift
        self.model_version = MODEL_VERSION
        self.restored_from_version: str | None = None
        self.detectors: dict[str, SensorAnomalyDetector] = {}
        # The trees learn one snapshot in two (their window spans 500): half the cost, the same picture.
        self.multivariate = SnapshotAnomalyDetector(warmup=warmup, seed=seed, learn_every=2)
        self.scorer = EquipmentAnomalyScorer(warmup=warmup)
        self.equipment_score = 0.0
        self.equipment_novelty = 0.0
        self.equipment_statistic = 0.0
        self.drift_detectors: dict[str, LevelDriftDetector] = {}
        self.operating_changes = 0
        self.setpoint_changes = 0
        self.stopped_snapshots = 0
        self.historical_snapshots = 0  # learned without evaluating the rules (`Snapshot.historical`)
        self.rebaselining: dict[str, int] = {}
        self.drift_events: dict[str, str] = {}
        self.drifts_since_maintenance = 0
        self.failure = FailurePredictor(horizon_seconds=horizon_seconds)
        if failure_model is not None:
            self.failure.adopt(failure_model)
        self.failure_probability = self.failure.prior
        self.runtime_seconds = 0.0
        self.anomaly_level = 0.0
        self.first_ts: datetime | None = None
        self.last_maintenance_ts: datetime | None = None
        self.alerts = AlertStateMachine(equipment_id)
        self.rules: list[Rule] = []
        self.set_rules(default_rules(self.equipment_type, sensitivity) if rules is None else rules)
        self.last_learned_ts: datetime | None = None
        self.samples_seen = 0
        self.values_seen = 0
        self.skipped = 0
        self.last_scores: dict[str, float] = {}
        self.tolerance: dict[str, float] = {}  # per sensor, widened by false-alarm verdicts (`apply_verdict`)
        self.verdicts: dict[int, str] = {}  # alert id -> verdict applied

    # -- rules and alerts ---------------------------------------------------------------------------

    def set_rules(self, rules: Sequence[Rule]) -> None:
        """Replace the rules. A rule equal to a current one (same class and settings) keeps its state.

        Open alerts of rules that are gone resolve at the next `learn_many` or `tick`.
        Raises `ValueError` if two rules share a rule_id.
        """
        ids = [r.rule_id for r in rules]
        if len(ids) != len(set(ids)):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"duplicate rule_id(s): {', '.join(dupes)}")
        current = {r.rule_id: r for r in self.rules}
        new: list[Rule] = []
        for rule in rules:
            old = current.get(rule.rule_id)
            if old is not None and type(old) is type(rule) and old.params() == rule.params():
                new.append(old)
            else:
                fresh = rule.clone()
                if self.alerts.is_open(rule.rule_id):
                    fresh.restore_active(self.alerts.open_alerts()[rule.rule_id])
                new.append(fresh)
        self.rules = new

    def restore_open_alerts(self, items: Iterable[tuple[str, Severity]]) -> None:
        """Mark alerts as open (loaded from the database after a restart) without emitting changes."""
        by_id = {r.rule_id: r for r in self.rules}
        for rule_id, severity in items:
            self.alerts.restore_open(rule_id, severity)
            rule = by_id.get(rule_id)
            if rule is not None:
                rule.restore_active(severity)

    def _resolve_orphans(self, ts: datetime) -> list[AlertChange]:
        ids = {r.rule_id for r in self.rules}
        changes = []
        for rule_id, severity in self.alerts.open_alerts().items():
            if rule_id.startswith(DRIFT_PREFIX) and rule_id[len(DRIFT_PREFIX) :] in self.rebaselining:
                continue  # a drift alert resolves itself once its sensor is re-baselined
            if rule_id == COMMS_LOSS:
                continue  # not a rule's: live data resolves it (`learn_many`)
            if rule_id not in ids:
                change = self.alerts.evaluate(
                    rule_id,
                    active=False,
                    severity=severity,
                    ts=ts,
                    message=f"rule {rule_id} removed",
                    details={"reason": "rule_removed"},
                )
                if change is not None:
                    changes.append(change)
        return changes

    def _apply(
        self, rule: Rule, verdict: tuple[bool, Severity] | None, obs: Observation | None, ts: datetime
    ) -> AlertChange | None:
        if verdict is None or not self.alerts.needs_change(rule.rule_id, active=verdict[0], severity=verdict[1]):
            return None
        return self._change(rule, verdict, obs, ts)

    def _change(
        self, rule: Rule, verdict: tuple[bool, Severity], obs: Observation | None, ts: datetime
    ) -> AlertChange | None:
        """The change a verdict makes (the caller checked `AlertStateMachine.needs_change`, so that the hot
        path formats no message)."""
        active, severity = verdict
        message, details = rule.describe(active, obs, ts)
        return self.alerts.evaluate(
            rule.rule_id, active=active, severity=severity, ts=ts, message=message, details=details
        )

    # -- learning -----------------------------------------------------------------------------------

    def learn_many(self, snapshots: Sequence[Snapshot]) -> list[AlertChange]:
        """Score, learn and evaluate the rules on each new snapshot, in order; return the alert changes."""
        changes: list[AlertChange] = []
        last = self.last_learned_ts
        orphans_checked = False
        for snap in snapshots:
            ts = _utc(snap.ts)
            if last is not None and ts <= last:
                self.skipped += 1
                continue
            if not orphans_checked:
                changes.extend(self._resolve_orphans(ts))
                orphans_checked = True
            values = _finite_values(snap.values)
            live = not snap.historical
            if not live:
                self.historical_snapshots += 1
            elif self.alerts.is_open(COMMS_LOSS) and (self.comms_lost_at is None or ts > self.comms_lost_at):
                # Only data taken after the death notice says the source is back: a reading sent before it may
                # arrive after it (the readings' JetStream path is slower than the notice's).
                changes.extend(self._comms(False, ts, "communication restored", {"reason": "live data"}))
            if self._stopped(values):
                self.stopped_snapshots += 1
                obs = Observation(ts, {}, failure_probability=self.failure_probability)
                for rule in self.rules if live else ():
                    change = self._apply(rule, rule.observe(obs), obs, ts)
                    if change is not None:
                        changes.append(change)
            else:
                changes.extend(self._learn_running(ts, values, last, live=live))
            last = ts
        self.last_learned_ts = last
        return changes

    def _learn_running(self, ts: datetime, values: dict[str, float], last: datetime | None, *,
                       live: bool = True) -> list[AlertChange]:
        """One snapshot of the machine running: score it, learn it, then evaluate drift and the rules (a
        historical snapshot, not `live`, is scored and learned only: its time is past, its alarms are too)."""
        if self._setpoint_step(values):
            self._rebaseline_operating_change(values)
        tsf = ts.timestamp()
        scores, baselines, drifted = self._score_sensors(values, tsf)
        mv = self.multivariate.score_learn_one(values, baselines)
        scorer = self.scorer
        scorer.learn_one(values, tsf)
        eq_score = self.equipment_score = scorer.last_score
        self.equipment_novelty = scorer.last_novelty
        self.equipment_statistic = scorer.last_statistic
        if last is not None:
            gap = (ts - last).total_seconds()
            self.runtime_seconds += gap if gap < RUNTIME_GAP_SECONDS else RUNTIME_GAP_SECONDS
        if self.first_ts is None:
            self.first_ts = ts
        top = max(eq_score, mv, *scores.values())
        self.anomaly_level += ANOMALY_LEVEL_WEIGHT * (top - self.anomaly_level)
        if self.failure.due(ts):
            self._sample_failure(ts)
        changes: list[AlertChange] = []
        if live:
            drifted = self._settle(drifted)
            if drifted or self.rebaselining:
                changes.extend(self._drift_changes(ts, values, drifted, baselines))
        obs = Observation(ts, values, scores, baselines, mv, eq_score, self.failure_probability)
        needs_change = self.alerts.needs_change
        for rule in self.rules if live else ():
            verdict = rule.observe(obs)
            if verdict is not None and needs_change(rule.rule_id, active=verdict[0], severity=verdict[1]):
                change = self._change(rule, verdict, obs, ts)
                if change is not None:
                    changes.append(change)
        self.samples_seen += 1
        self.values_seen += len(values)
        self.last_scores.update(scores)
        self.last_scores[MULTIVARIATE_KEY] = mv
        self.last_scores[EQUIPMENT_KEY] = eq_score
        return changes

    def _score_sensors(
        self, values: dict[str, float], tsf: float
    ) -> tuple[dict[str, float], dict[str, tuple[float, float]], list[tuple[str, float]]]:
        """Each sensor scored against its baseline before learning its value (widened by false alarms), and
        fed to its drift detector: (scores, baselines as (mean, std), drifted sensors with their distance)."""
        detectors, tolerance, warmup = self.detectors, self.tolerance, self.warmup
        drifts = self.drift_detectors if self.drift else None
        scores: dict[str, float] = {}
        baselines: dict[str, tuple[float, float]] = {}
        drifted: list[tuple[str, float]] = []
        for name, v in values.items():
            det = detectors.get(name)
            if det is None:
                det = detectors[name] = SensorAnomalyDetector(warmup=warmup)
            score, z, mean, std = det.step(v)
            if tolerance and z is not None and name in tolerance:
                t = tolerance[name]
                z, std = z / t, std * t
                score = math.erf(abs(z) / (det.z_scale * _SQRT2))
            scores[name] = score
            baselines[name] = (mean, std)
            if drifts is not None:
                dd = drifts.get(name)
                if dd is None:
                    dd = drifts[name] = LevelDriftDetector()
                if dd.update(v, tsf, tolerance.get(name, 1.0) if tolerance else 1.0):
                    drifted.append((name, dd.last_d))
        return scores, baselines, drifted

    # -- drift ----------------------------------------------------------------------------------------

    def _stopped(self, values: dict[str, float]) -> bool:
        """Whether the snapshot is of the machine at rest (every running sensor of its type reads zero)."""
        names = RUNNING_SENSORS.get(self.equipment_type)
        if not names:
            return False
        for name in names:
            v = values.get(name)
            if v is None or v != 0.0:
                return False
        return True

    def _setpoint_step(self, values: dict[str, float]) -> bool:
        """Whether this snapshot steps the type's set point (`schema.equipment.SETPOINT_SENSOR`) to a new level
        inside its operating range: an operator's (or the controller's) change, which the other sensors follow.

        A fault does not do that: a failing sensor drifts or sticks, a spike leaves the range, and a failing
        machine moves its sensors over hours with the set point where it was.
        """
        spec = _SETPOINTS.get(self.equipment_type)
        if spec is None:
            return False
        name, low, high = spec
        v = values.get(name)
        if v is None:
            return False
        recent = self._setpoint_recent
        if recent is None:
            recent = self._setpoint_recent = deque(maxlen=SETPOINT_STEP_READINGS)
        previous = recent[0] if len(recent) == recent.maxlen else None
        recent.append(v)
        if previous is None or not (low <= v <= high and low <= previous <= high):
            return False
        # Within a few readings (a ramp, a drifting sensor, never steps, however far it goes), and far beyond
        # what the value moves over as many readings between changes. Measured against that move, not the
        # level's spread: a set point wanders and follows the day, and a spread that holds the wander hid
        # an operator's step of a tenth of the range.
        # A step must also hold: noise that jumps far comes back at once, a new set point stays (confirmed
        # within the anomaly rule's three snapshots, so the models re-baseline before it opens on the step).
        pending = self._setpoint_pending
        if pending is not None:
            before, step, held = pending
            if (v - before) * step >= 0.5 * step * step:
                if held + 1 >= SETPOINT_HOLD_READINGS:
                    self._setpoint_pending = None
                    recent.clear()  # one change, counted once
                    return True
                self._setpoint_pending = (before, step, held + 1)
                return False
            self._setpoint_pending = None
        move = abs(v - previous)
        noise, moves = self._setpoint_noise, self._setpoint_moves
        if moves >= self.warmup and move >= max(SETPOINT_STEP_SIGMA * _MEAN_ABS_TO_SIGMA * noise,
                                                SETPOINT_MIN_STEP * (high - low)):
            self._setpoint_pending = (previous, v - previous, 0)
            return False
        self._setpoint_moves = moves = moves + 1
        self._setpoint_noise = noise + (move - noise) / min(moves, SETPOINT_NOISE_MEMORY)
        return False

    def _rebaseline_operating_change(self, values: dict[str, float]) -> None:
        """Every sensor starts a new normal: the anomaly models warm up again (scoring nothing meanwhile), and
        the drift detectors, silent while the others follow the set point, take the level they settle at."""
        self.operating_changes += 1
        self.setpoint_changes += 1
        for name in values:
            self._rebaseline(name, drift=False)
        self._settling = self.warmup

    def _rebaseline(self, name: str, *, scorer: bool = True, drift: bool = True) -> None:
        """Start a new normal for sensor `name` in the anomaly models (and its drift detector, with `drift`)."""
        det = self.detectors.get(name)
        if det is not None:
            det.rebaseline()
        self.multivariate.rebaseline(name)
        if scorer:
            self.scorer.rebaseline(name)
        dd = self.drift_detectors.get(name) if drift else None
        if dd is not None:
            dd.rebaseline()

    def _settle(self, drifted: list[tuple[str, float]]) -> list[tuple[str, float]]:
        """While sensors settle after a set-point change, drift is theirs to have: re-baseline at the end."""
        left = self._settling
        if not left:
            return drifted
        self._settling = left - 1
        if left == 1:
            for dd in self.drift_detectors.values():
                dd.rebaseline()
                dd.accept_level()  # the operator's new normal: moving back from it later is a drift
        return []

    def _operating_change(self, name: str) -> list[str]:
        """The sensors that moved with `name` in an operating change (empty: a drift of `name`).

        A sensor corroborates when it stepped too and its level stays moved (its drift detector's distance
        `last_d` is at least CORROBORATE_SIGMA as well): within ten minutes a sensor's noise alone often makes a
        one-minute level move by 1 σ, and that had real drifts taken for operating changes and not reported.
        """
        dd = self.drift_detectors[name]
        step = dd.drift_step
        if abs(step) < STEP_SIGMA or (step > 0) != (dd.direction == "up"):
            return []
        others = [o for o, od in self.drift_detectors.items()
                  if o != name and abs(od.recent_step()) >= CORROBORATE_SIGMA and abs(od.last_d) >= CORROBORATE_SIGMA]
        return [name, *others] if others else []

    def _drift_changes(
        self,
        ts: datetime,
        values: dict[str, float],
        drifted: list[tuple[str, float]],
        baselines: dict[str, tuple[float, float]],
    ) -> list[AlertChange]:
        """Open an info alert per drifted sensor and re-baseline it; resolve the ones re-baselined."""
        changes: list[AlertChange] = []
        for name, left in list(self.rebaselining.items()):
            if name not in values:
                continue
            if left > 1:
                self.rebaselining[name] = left - 1
                continue
            del self.rebaselining[name]
            det = self.detectors[name]
            rule_id = DRIFT_PREFIX + name
            change = self.alerts.evaluate(
                rule_id,
                active=False,
                severity="info",
                ts=ts,
                message=f"{name} re-baselined at {_r(det.mean)} ± {_r(det.std)}",
                details={"sensor": name, "reason": "rebaselined", "mean": _r(det.mean), "std": _r(det.std)},
            )
            if change is not None:
                changes.append(change)
        for name, z in drifted:
            dd = self.drift_detectors[name]
            mean, std = baselines[name]
            moved = self._operating_change(name)
            if moved:
                self.operating_changes += 1
                for other in moved:
                    self._rebaseline(other, drift=other != name)  # `name`'s own detector restarted when it signalled
                continue
            if dd.returned:  # back to the normal an earlier drift left (a fault gone): nothing to act on
                self.returns_to_normal += 1
                self._rebaseline(name, scorer=False, drift=False)
                self.rebaselining[name] = self.warmup  # resolves an open drift alert of the sensor
                continue
            self._rebaseline(name, scorer=False)  # the equipment's scorer keeps following, as it learns slowly
            self.rebaselining[name] = self.warmup
            self.drift_events[name] = ts.isoformat()
            self.drifts_since_maintenance += 1
            direction = dd.direction or ("up" if z > 0 else "down")
            details = {
                "sensor": name,
                "direction": direction,
                "value": values[name],
                "z": _r(z),
                "previous_mean": _r(mean),
                "previous_std": _r(std),
                "drifts": dd.drifts,
            }
            message = (
                f"{name} drifted {direction}: {values[name]} (z={z:+.1f}) against {_r(mean)} ± {_r(std)}; "
                f"re-baselining over {self.warmup} values"
            )
            rule_id = DRIFT_PREFIX + name
            if self.alerts.is_open(rule_id):  # drifted again: a new event, not a silent no-op
                self.alerts.forget(rule_id)
            change = self.alerts.evaluate(
                rule_id, active=True, severity="info", ts=ts, message=message, details=details
            )
            if change is not None:
                changes.append(change)
        return changes

    # -- failure prediction ---------------------------------------------------------------------------

    def failure_features(self, ts: datetime | None = None) -> dict[str, float]:
        """Features of the failure model at `ts` (default: the last learned snapshot's time).

        Per sensor its current level and spread (the robust EW mean and std), the equipment's recent
        anomaly level, runtime (days of data, gaps over 5 minutes counted as 5 minutes), days since the last
        maintenance (or since the first reading) and drifts since the last maintenance.
        """
        ts = self.last_learned_ts if ts is None else _utc(ts)
        since = self.last_maintenance_ts or self.first_ts
        x: dict[str, float] = {
            "runtime_days": self.runtime_seconds / 86_400.0,
            "days_since_maintenance": 0.0 if ts is None or since is None else (ts - since).total_seconds() / 86_400.0,
            "anomaly_level": self.anomaly_level,
            "drifts_since_maintenance": float(self.drifts_since_maintenance),
        }
        for name, det in self.detectors.items():
            if det.n >= self.warmup:
                # Interned: the pending examples share their keys (memory: one string per key, not one per example).
                x[sys.intern(f"level_{name}")] = det.mean
                x[sys.intern(f"spread_{name}")] = det.std
        return x

    def _sample_failure(self, ts: datetime) -> None:
        x = self.failure_features(ts)
        self.failure.observe(ts, x)
        self.failure_probability = self.failure.predict_proba_one(x)

    def record_failure(self, ts: datetime) -> list[Example]:
        """A failure reported at `ts` (a field event): label the preceding horizon as "failed" and learn it.

        Returns the labelled examples (they also wait in `shared_examples` for the model shared by the
        equipment type). Pure: no alert change. The probability is re-computed. The same failure reported
        twice (same `ts`) is learned once.
        """
        ts = _utc(ts)
        examples = self.failure.record_failure(ts)
        self.failure_probability = self.failure.predict_proba_one(self.failure_features())
        return examples

    def shared_examples(self) -> tuple[list[Example], int]:
        """What the model shared by this equipment's type should learn, labelled since the last call: the
        failure examples (negatives as they age past the horizon, positives from reported failures) and the
        number of failures reported."""
        return self.failure.drain_outbox()

    def resume_after(self, ts: datetime | None) -> None:
        """Learn only snapshots after `ts`: a fresh model that replaces a reset one does not learn again what
        the old one learned. Raises `ValueError` on a model that has learned anything."""
        if self.samples_seen:
            raise ValueError("only a model that has learned nothing can resume after a time")
        self.last_learned_ts = None if ts is None else _utc(ts)

    def record_maintenance(self, start: datetime, end: datetime) -> int:
        """A maintenance window (a field event): resets time since maintenance, drops its pending examples.

        Returns the number of pending failure examples dropped.
        """
        start, end = _utc(start), _utc(end)
        if end < start:
            start, end = end, start
        if self.last_maintenance_ts is None or end > self.last_maintenance_ts:
            self.last_maintenance_ts = end
            self.drifts_since_maintenance = 0
        return self.failure.record_maintenance(start, end)

    def adopt_failure_model(self, shared: FailurePredictor) -> None:
        """Start the failure model from the one shared by this equipment's type in the tenant."""
        self.failure.adopt(shared)
        self.failure_probability = self.failure.predict_proba_one(self.failure_features())

    def apply_verdict(self, alert_id: int, rule_id: str, verdict: str, sensors: Sequence[str]) -> bool:
        """Learn an operator's verdict on alert `alert_id` of `rule_id` about `sensors`; False when it was applied.

        ``false_alarm`` on an anomaly or drift alert widens each sensor's normal (its tolerance, by
        `VERDICT_WIDEN` up to `MAX_TOLERANCE`): its z-scores, scores and drift input are divided by it, so the
        same pattern scores lower next time. ``planned`` (an operating change) re-baselines the sensors (all of
        them when the alert names none) without alerting. ``real`` changes no model. Pure; applied once per
        alert id.
        """
        verdicts = self.verdicts
        if alert_id in verdicts:
            return False
        verdicts[alert_id] = verdict
        while len(verdicts) > VERDICTS_KEPT:
            del verdicts[next(iter(verdicts))]
        anomaly = rule_id.startswith(DRIFT_PREFIX) or any(
            isinstance(r, AnomalyRule) for r in self.rules if r.rule_id == rule_id)
        names = [s for s in sensors if s in self.detectors] or (list(self.detectors) if verdict == "planned" else [])
        if verdict == "false_alarm" and anomaly:
            tolerance = self.tolerance
            for name in names:
                tolerance[name] = min(MAX_TOLERANCE, tolerance.get(name, 1.0) * VERDICT_WIDEN)
            self.scorer.tolerance = tolerance  # the equipment's calibrated score widens with the sensor scores
        elif verdict == "planned":
            for name in names:  # as an operating change the models saw themselves
                self._rebaseline(name)
                self.rebaselining[name] = self.warmup
        return True

    def comms_lost(self, ts: datetime, reason: str) -> list[AlertChange]:
        """The source said it lost the equipment (a Sparkplug DEATH): open ``comms_loss`` now, without waiting for
        the stale-data rule's silence; the next live snapshot taken after `ts` resolves it."""
        ts = _utc(ts)
        self.comms_lost_at = ts if self.comms_lost_at is None else max(self.comms_lost_at, ts)
        return self._comms(True, ts, f"communication lost: {reason}", {"reason": reason})

    def _comms(self, active: bool, ts: datetime, message: str, details: dict[str, Any]) -> list[AlertChange]:
        change = self.alerts.evaluate(COMMS_LOSS, active=active, severity="warning", ts=ts, message=message,
                                      details=details)
        return [change] if change is not None else []

    def tick(self, now: datetime) -> list[AlertChange]:
        """Evaluate the wall-clock rules (stale data) at `now`; return the alert changes."""
        now = _utc(now)
        changes = self._resolve_orphans(now)
        for rule in self.rules:
            change = self._apply(rule, rule.tick(now), None, now)
            if change is not None:
                changes.append(change)
        return changes

    # -- checkpoints and status ---------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The checkpoint of the whole state (detectors, drift and failure models, rule state, open alerts,
        counters): a versioned document of stable type tags (`models.checkpoint`), not a pickle, so renaming a
        class in `models/` keeps stored models readable. The same state gives the same bytes."""
        from models.checkpoint import dumps  # the registry imports every model class, this one included

        return dumps(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> EquipmentState:
        """Restore a state written by `to_bytes`, or by an older version as a pickle (trusted input only:
        bytes signed by this installation, `config.secrets.verify_blob`).

        A checkpoint of an older `MODEL_VERSION` loads too: attributes it lacks get their defaults, and a
        model whose meaning changed is started afresh (`restored_from_version` says from which version).
        Raises `models.state.StateError` (a `ValueError`) when this version cannot read it.
        """
        from models.checkpoint import loads

        return loads(data, cls)

    def __setstate__(self, state: dict[str, Any]) -> None:
        version = state.get("model_version")
        if version != MODEL_VERSION:
            fresh = EquipmentState(
                state.get("equipment_id", "?"), state.get("equipment_type", "other"), [],
                seed=state.get("seed", 0), warmup=state.get("warmup", 30),
            ).__dict__
            if not str(version).startswith(f"wellpulse-models-{MODEL_SCHEMA}/"):
                # Their scores had another scale or their layout changed: re-learn them.
                state.pop("scorer", None)
                state.pop("drift_detectors", None)
            for key, value in fresh.items():
                state.setdefault(key, value)
            state["restored_from_version"] = version
            state["model_version"] = MODEL_VERSION
        self.__dict__.update(state)

    def predictions(self) -> dict[str, Any]:
        """JSON-safe predictions and model metadata, as of the last learned snapshot.

        ``anomaly``: the score the anomaly rule read last (the highest of the latest per-sensor, multivariate
        and equipment scores), the equipment's calibrated score, and each sensor's score in [0, 1] with its
        baseline;
        ``failure``: probability of failure within the horizon, the horizon, labels seen; ``drift``: per
        sensor the number of drifts, the last one's time and whether it is re-baselining; and the model's
        version, samples seen and last learned time.
        """
        sensors: dict[str, Any] = {}
        for name, det in self.detectors.items():
            dd = self.drift_detectors.get(name)
            sensors[name] = {
                "anomaly_score": _r(self.last_scores.get(name, 0.0)),
                "expected_mean": _r(det.mean),
                "expected_std": _r(det.std),
                "warming_up": det.n < self.warmup,
                "drifts": 0 if dd is None else dd.drifts,
                "last_drift_ts": self.drift_events.get(name),
                "rebaselining": name in self.rebaselining,
                "tolerance": self.tolerance.get(name, 1.0),
            }
        f = self.failure
        return {
            "equipment_id": self.equipment_id,
            "equipment_type": self.equipment_type,
            "model_version": self.model_version,
            "samples_seen": self.samples_seen,
            "values_seen": self.values_seen,
            "last_learned_ts": None if self.last_learned_ts is None else self.last_learned_ts.isoformat(),
            "warming_up": self.samples_seen < self.warmup,
            "anomaly": {
                "score": _r(max(self.last_scores.values(), default=0.0)),
                "equipment_score": _r(self.equipment_score),
                "multivariate_score": _r(self.last_scores.get(MULTIVARIATE_KEY, 0.0)),
                "statistic": _r(self.equipment_statistic),
                "sensors": sensors,
            },
            "failure": {
                "probability": _r(self.failure_probability),
                "horizon_seconds": f.horizon_seconds,
                "horizon_days": _r(f.horizon_seconds / 86_400.0),
                "labels_seen": f.labels_seen,
                "failures_seen": f.failures_seen,
                "pending_examples": f.pending,
                "last_failure_ts": None if f.last_failure_ts is None else f.last_failure_ts.isoformat(),
                "last_maintenance_ts": (
                    None if self.last_maintenance_ts is None else self.last_maintenance_ts.isoformat()
                ),
                "runtime_days": _r(self.runtime_seconds / 86_400.0),
            },
            "drift": {
                "enabled": bool(self.drift),
                "rebaselining": sorted(self.rebaselining),
                "events": dict(self.drift_events),
            },
        }

    def summary(self) -> dict[str, Any]:
        """JSON-safe status of this entity."""
        return {
            "equipment_id": self.equipment_id,
            "equipment_type": self.equipment_type,
            "samples_seen": self.samples_seen,
            "values_seen": self.values_seen,
            "skipped": self.skipped,
            "last_learned_ts": None if self.last_learned_ts is None else self.last_learned_ts.isoformat(),
            "open_alerts": self.alerts.open_alerts(),
            "last_scores": {k: float(v) for k, v in self.last_scores.items()},
            "rules": [r.rule_id for r in self.rules],
            "anomaly_sensitivity": next((r.sensitivity for r in self.rules if isinstance(r, AnomalyRule)), None),
            "model_version": self.model_version,
            "failure_probability": _r(self.failure_probability),
            "drifting": sorted(self.rebaselining),
        }
