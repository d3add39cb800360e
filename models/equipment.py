"""`EquipmentState`: everything the models know about one equipment, as one picklable entity."""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import river

from models.alerts import AlertStateMachine
from models.detectors import EquipmentAnomalyScorer, SensorAnomalyDetector, SnapshotAnomalyDetector
from models.events import AlertChange, Severity, Snapshot
from models.rules import Observation, Rule, default_rules

__all__ = ["MODEL_VERSION", "EquipmentState"]

MODEL_VERSION = f"wellpulse-models-1/river-{river.__version__}"
MULTIVARIATE_KEY = "_multivariate"


def _utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


class EquipmentState:
    """Detectors, rules and open alerts of one equipment; learns snapshots and returns alert changes.

    For each snapshot newer than `last_learned_ts`: every sensor is scored by its own
    `SensorAnomalyDetector` (created when the sensor first appears), the snapshot by a seeded
    `SnapshotAnomalyDetector` and by an `EquipmentAnomalyScorer` (its calibrated, novelty-gated score in
    `equipment_score`, its chi-square-like statistic in `equipment_statistic`; not read by the rules yet),
    all before learning; then the detectors learn and every rule is
    evaluated through the `AlertStateMachine`. A snapshot at or before `last_learned_ts` is counted in
    `skipped` and not learned again (the checkpoint rule of the design: a restored entity does not
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
        Values each detector learns before it scores.

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

    def __init__(
        self,
        equipment_id: str,
        equipment_type: str = "other",
        rules: Sequence[Rule] | None = None,
        *,
        seed: int = 0,
        warmup: int = 30,
    ) -> None:
        self.equipment_id = equipment_id
        self.equipment_type = str(equipment_type)
        self.seed = seed
        self.warmup = warmup
        self.model_version = MODEL_VERSION
        self.detectors: dict[str, SensorAnomalyDetector] = {}
        self.multivariate = SnapshotAnomalyDetector(warmup=warmup, seed=seed)
        self.scorer = EquipmentAnomalyScorer(warmup=warmup)
        self.equipment_score = 0.0
        self.equipment_statistic = 0.0
        self.alerts = AlertStateMachine(equipment_id)
        self.rules: list[Rule] = []
        self.set_rules(default_rules(self.equipment_type) if rules is None else rules)
        self.last_learned_ts: datetime | None = None
        self.samples_seen = 0
        self.values_seen = 0
        self.skipped = 0
        self.last_scores: dict[str, float] = {}

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
        if verdict is None:
            return None
        active, severity = verdict
        if not self.alerts.needs_change(rule.rule_id, active=active, severity=severity):
            return None
        message, details = rule.describe(active, obs, ts)
        return self.alerts.evaluate(
            rule.rule_id, active=active, severity=severity, ts=ts, message=message, details=details
        )

    # -- learning -----------------------------------------------------------------------------------

    def learn_many(self, snapshots: Sequence[Snapshot]) -> list[AlertChange]:
        """Score, learn and evaluate the rules on each new snapshot, in order; return the alert changes."""
        changes: list[AlertChange] = []
        detectors = self.detectors
        multivariate = self.multivariate
        scorer = self.__dict__.get("scorer")
        if scorer is None:  # a checkpoint written before the scorer existed
            scorer = self.scorer = EquipmentAnomalyScorer(warmup=self.warmup)
            self.equipment_score = self.equipment_statistic = 0.0
        rules = self.rules
        last = self.last_learned_ts
        orphans_checked = False
        isfinite = math.isfinite
        for snap in snapshots:
            ts = _utc(snap.ts)
            if last is not None and ts <= last:
                self.skipped += 1
                continue
            if not orphans_checked:
                changes.extend(self._resolve_orphans(ts))
                orphans_checked = True
            values: dict[str, float] = {}
            for name, raw in snap.values.items():
                try:
                    v = float(raw)
                except (TypeError, ValueError):
                    continue
                if isfinite(v):
                    values[name] = v
            scores: dict[str, float] = {}
            baselines: dict[str, tuple[float, float]] = {}
            for name, v in values.items():
                det = detectors.get(name)
                if det is None:
                    det = detectors[name] = SensorAnomalyDetector(warmup=self.warmup)
                scores[name] = det.score_one(v)
                baselines[name] = (det.mean, det.std)
                det.learn_one(v)
            mv = multivariate.score_one(values)
            multivariate.learn_one(values)
            self.equipment_score = scorer.score_one(values)
            scorer.learn_one(values)
            self.equipment_statistic = scorer.last_statistic
            obs = Observation(ts, values, scores, baselines, mv)
            for rule in rules:
                change = self._apply(rule, rule.observe(obs), obs, ts)
                if change is not None:
                    changes.append(change)
            last = ts
            self.samples_seen += 1
            self.values_seen += len(values)
            self.last_scores.update(scores)
            self.last_scores[MULTIVARIATE_KEY] = mv
        self.last_learned_ts = last
        return changes

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
        """Pickle the whole state (detectors, rule state, open alerts, counters)."""
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_bytes(cls, data: bytes) -> EquipmentState:
        """Restore a state written by `to_bytes` (trusted input only: this is pickle)."""
        obj = pickle.loads(data)
        if not isinstance(obj, cls):
            raise ValueError(f"checkpoint holds a {type(obj).__name__}, not an {cls.__name__}")
        return obj

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
            "model_version": self.model_version,
        }
