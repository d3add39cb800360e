"""Backtesting, the pure part: what rules and models would have done over past snapshots, and how that compares
with labels and with operators' verdicts. No IO: the CSV command (`cli.backtest`) reads and writes files, the API
(`serve.predictions`) reads stored snapshots; both replay them here, through `models.replay`, exactly the code
the equipment actors run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from models.equipment import DRIFT_PREFIX, EquipmentState
from models.events import AlertChange, Snapshot, severity_rank
from models.metrics import NabWeights, labels_to_windows, nab_score
from models.replay import replay_iter
from models.rules import Rule, Sensitivity

__all__ = [
    "TableReplay",
    "TableRow",
    "backtest_snapshots",
    "confusion_metrics",
    "downsample",
    "nab_standard_score",
    "replay_table",
    "rule_kind",
    "verdict_agreement",
]


@dataclass(frozen=True, slots=True)
class TableRow:
    """One row of a table to replay: its timestamp as written and parsed (None: unparseable), its values, and its
    label (1 anomalous, 0 normal; None when the table has no labels)."""

    raw_ts: str
    ts: datetime | None
    values: dict[str, float]
    label: int | None = None


@dataclass(slots=True)
class TableReplay:
    """What `replay_table` gave: per row ``(raw_ts, anomaly_score, alert, rule_score)``, and the counts."""

    rows: list[tuple[str, float, int, float]] = field(default_factory=list)
    bad_timestamp: int = 0
    not_after_previous: int = 0
    alerts_opened: int = 0
    opened_at: list[int] = field(default_factory=list)  # rows where an alert opened
    drift_events: int = 0
    best: tuple[float, str] = (-1.0, "")  # the highest rule score and its raw timestamp
    preds: list[int] = field(default_factory=list)  # alert per labelled row
    truth: list[int] = field(default_factory=list)  # label per labelled row

    def scores(self) -> dict[str, Any]:
        """Rows with an alert open, the highest rule score and the timestamp it was at."""
        return {
            "alert_rows": sum(row[2] for row in self.rows),
            "max_score": round(self.best[0], 6) if self.rows else None,
            "max_score_timestamp": self.best[1] if self.rows else None,
        }

    def label_scores(self) -> dict[str, Any]:
        """Against the labels: precision, recall and F1 of the alert column, and the NAB standard-profile score
        (0 null, 100 perfect) of the rows where an alert opened, with the runs of 1s as anomaly windows."""
        if not self.preds:
            return {}
        detections = [0.0] * len(self.truth)
        for i in self.opened_at:
            detections[i] = 1.0
        return {**confusion_metrics(self.preds, self.truth), "nab": nab_standard_score(detections, self.truth)}


def replay_table(rows: Iterable[TableRow], eq: EquipmentState) -> TableReplay:
    """Replay `rows` one at a time through `eq` (changed in place), no look-ahead: a row's scores are computed
    before it is learned. A row without a timestamp is not learned and scores 0 (its alert column: what is open).

    ``rows[i][1]`` is the equipment's calibrated novelty score (`EquipmentState.equipment_novelty`), ``rows[i][3]``
    what the anomaly rule read (`models.replay.ReplayRow.anomaly_score`).
    """
    out = TableReplay()
    for row in rows:
        score = novelty = 0.0
        alert = 1 if _alerting(eq) else 0
        if row.ts is None:
            out.bad_timestamp += 1
        else:
            replayed = next(replay_iter([Snapshot(row.ts, row.values)], eq))
            out.not_after_previous += not replayed.learned
            score, alert, novelty = replayed.anomaly_score, replayed.alert, replayed.novelty
            for ch in replayed.changes:
                if ch.kind == "opened" and ch.severity == "info":
                    out.drift_events += 1
                elif ch.kind == "opened":
                    out.alerts_opened += 1
                    out.opened_at.append(len(out.rows))
        if score > out.best[0]:
            out.best = (score, row.raw_ts)
        out.rows.append((row.raw_ts, novelty, alert, score))
        if row.label is not None:
            out.preds.append(alert)
            out.truth.append(row.label)
    return out


def _alerting(eq: EquipmentState) -> bool:
    return any(severity_rank(s) >= 1 for s in eq.alerts.open_alerts().values())


def nab_standard_score(detections: Sequence[float], truth: Sequence[int]) -> float | None:
    """NAB standard-profile score of the detections against labelled runs (None when nothing is labelled)."""
    windows = labels_to_windows(truth)
    if not windows:
        return None
    return nab_score([(detections, windows)], NabWeights(), threshold=0.5)


def confusion_metrics(pred: Iterable[int], truth: Iterable[int]) -> dict[str, float | int]:
    """Precision, recall and F1 of 0/1 predictions against 0/1 truth, and the confusion counts.

    >>> confusion_metrics([1, 1, 0, 0], [1, 0, 1, 0])["precision"]
    0.5
    """
    tp = fp = fn = tn = 0
    for p, t in zip(pred, truth, strict=True):
        if p and t:
            tp += 1
        elif p:
            fp += 1
        elif t:
            fn += 1
        else:
            tn += 1
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def rule_kind(rule: Rule) -> str:
    """The registry kind of a rule (``RateOfChangeRule`` -> ``rate_of_change``).

    >>> from models import StaleDataRule
    >>> rule_kind(StaleDataRule())
    'stale_data'
    """
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(rule).__name__.removesuffix("Rule")).lower()


def backtest_snapshots(
    snapshots: Iterable[Snapshot],
    *,
    equipment_id: str,
    equipment_type: str,
    rules: Sequence[Rule],
    sensitivity: Sensitivity = "medium",
    seed: int = 0,
    max_points: int | None = None,
    max_alerts: int = 1_000,
) -> dict[str, Any]:
    """Replay stored snapshots through a fresh `EquipmentState`, as ``wellpulse backtest`` replays a CSV.

    One snapshot at a time, in order (no look-ahead); what the rules would have done: per rule the alerts it
    would have opened (by severity), the alerts themselves (opened, highest severity, resolved; at most
    `max_alerts`, the first ones), the drift events, and with `max_points` the anomaly score series cut into
    at most that many buckets (highest score, any alert open). The stale-data rule needs a wall clock and is
    not evaluated (a replay has none). JSON-safe, CPU only: run it in a thread.

    Examples
    --------
    >>> from datetime import UTC, datetime, timedelta
    >>> from models import default_rules
    >>> t0 = datetime(2026, 11, 22, tzinfo=UTC)
    >>> snaps = [Snapshot(t0 + timedelta(seconds=i), {"p": 100.0 + (i % 7)}) for i in range(300)]
    >>> snaps += [Snapshot(t0 + timedelta(seconds=300 + i), {"p": 400.0}) for i in range(5)]
    >>> out = backtest_snapshots(snaps, equipment_id="PJ-1", equipment_type="other", rules=default_rules("other"),
    ...                          max_points=10)
    >>> out["learned"], [(r["rule_id"], r["alerts"]) for r in out["rules"] if r["alerts"]]
    (305, [('anomaly', 1)])
    >>> a = out["alerts"][0]
    >>> a["rule_id"], a["severity"], a["opened_at"] == snaps[302].ts, a["resolved_at"]
    ('anomaly', 'critical', True, None)
    >>> len(out["scores"]), out["scores"][-1]["anomaly_score"], out["scores"][-1]["alert"]
    (10, 1.0, 1)

    """
    eq = EquipmentState(equipment_id, equipment_type, rules, seed=seed, sensitivity=sensitivity)
    kinds = {r.rule_id: rule_kind(r) for r in eq.rules}
    log = _AlertLog({r.rule_id: {} for r in eq.rules}, max_alerts)
    n = 0
    sensors: set[str] = set()
    series: list[tuple[datetime, float, int]] = []
    for row in replay_iter(snapshots, eq):
        n += 1
        sensors.update(row.snapshot.values)
        if max_points is not None:
            series.append((row.snapshot.ts, row.anomaly_score, row.alert))
        for ch in row.changes:
            log.add(ch)
    result: dict[str, Any] = {
        "snapshots": n,
        "learned": eq.samples_seen,
        "sensors": sorted(sensors),
        "model_version": eq.model_version,
        "sensitivity": sensitivity,
        "rules": [
            {"rule_id": rid, "kind": kinds.get(rid, "removed"), "alerts": sum(by.values()), "by_severity": by}
            for rid, by in log.counts.items()
        ],
        "alerts": log.alerts,
        "alerts_truncated": log.truncated,
        "drift_events": log.drifts,
    }
    if max_points is not None:
        result["scores"] = downsample(series, max_points)
    return result


@dataclass(slots=True)
class _AlertLog:
    """The alerts a replay opened (the first `max_alerts`), their highest severity and resolution; per rule the
    openings by severity; drift openings apart."""

    counts: dict[str, dict[str, int]]
    max_alerts: int
    alerts: list[dict[str, Any]] = field(default_factory=list)
    open: dict[str, dict[str, Any]] = field(default_factory=dict)
    truncated: bool = False
    drifts: int = 0

    def add(self, ch: AlertChange) -> None:
        if ch.rule_id.startswith(DRIFT_PREFIX):
            self.drifts += ch.kind == "opened"
        elif ch.kind == "opened":
            by = self.counts.setdefault(ch.rule_id, {})
            by[ch.severity] = by.get(ch.severity, 0) + 1
            alert: dict[str, Any] = {"rule_id": ch.rule_id, "severity": ch.severity, "opened_at": ch.ts,
                                     "resolved_at": None, "message": ch.message}
            self.open[ch.rule_id] = alert
            if len(self.alerts) < self.max_alerts:
                self.alerts.append(alert)
            else:
                self.truncated = True
        elif ch.rule_id in self.open:
            alert = self.open[ch.rule_id]
            if ch.kind == "resolved":
                alert["resolved_at"] = ch.ts
                del self.open[ch.rule_id]
            elif severity_rank(ch.severity) > severity_rank(alert["severity"]):
                alert["severity"] = ch.severity


VERDICT_MATCH_SECONDS = 600.0


def verdict_agreement(replayed: Sequence[dict[str, Any]], judged: Sequence[dict[str, Any]],
                      within_s: float = VERDICT_MATCH_SECONDS) -> dict[str, Any]:
    """How a replay agrees with what operators said of the alerts the live system raised in the same range.

    A judged alert is raised again when the replay opened an alert of the same rule within `within_s` of its
    opening. ``precision`` is the share of the raised-again ``real`` and ``false_alarm`` alerts that were real;
    ``recall`` the share of the ``real`` ones raised again; ``planned`` ones (operating changes) are counted
    apart. None where there is nothing to divide by.

    >>> from datetime import UTC, datetime, timedelta
    >>> t = datetime(2026, 11, 22, tzinfo=UTC)
    >>> replay = [{"rule_id": "anomaly", "opened_at": t + timedelta(seconds=30)}]
    >>> judged = [{"rule_id": "anomaly", "opened_at": t, "verdict": "real"},
    ...           {"rule_id": "anomaly", "opened_at": t + timedelta(hours=5), "verdict": "false_alarm"}]
    >>> a = verdict_agreement(replay, judged)
    >>> a["precision"], a["recall"], a["false_alarm"]
    (1.0, 1.0, {'judged': 1, 'raised_again': 0})
    """
    by_rule: dict[str, list[datetime]] = {}
    for alert in replayed:
        by_rule.setdefault(alert["rule_id"], []).append(alert["opened_at"])
    counts = {v: {"judged": 0, "raised_again": 0} for v in ("real", "false_alarm", "planned")}
    for alert in judged:
        verdict = alert["verdict"]
        if verdict not in counts:
            continue
        counts[verdict]["judged"] += 1
        if any(abs((t - alert["opened_at"]).total_seconds()) <= within_s for t in by_rule.get(alert["rule_id"], ())):
            counts[verdict]["raised_again"] += 1
    real, false = counts["real"]["raised_again"], counts["false_alarm"]["raised_again"]
    return {
        **counts,
        "precision": round(real / (real + false), 4) if real + false else None,
        "recall": round(real / counts["real"]["judged"], 4) if counts["real"]["judged"] else None,
        "match_within_s": within_s,
    }


def downsample(series: Sequence[tuple[datetime, float, int]], max_points: int) -> list[dict[str, Any]]:
    """``(ts, score, alert)`` rows in at most `max_points` buckets of consecutive rows: the first ts, the highest
    score, whether any alert was open.

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> [(p["anomaly_score"], p["alert"]) for p in downsample([(t, 0.1, 0), (t, 0.9, 0), (t, 0.2, 1)], 2)]
    [(0.1, 0), (0.9, 1)]
    """
    out: list[dict[str, Any]] = []
    n = len(series)
    buckets = min(n, max_points)
    for b in range(buckets):
        part = series[b * n // buckets:(b + 1) * n // buckets]
        out.append({"ts": part[0][0], "anomaly_score": max(p[1] for p in part), "alert": max(p[2] for p in part)})
    return out
