"""Backtesting: replay a CSV through the same `models.EquipmentState` the equipment actors run.

Each row is one snapshot (its timestamp and the chosen numeric columns), learned in file order, one at a
time, so a row's score never depends on later rows. The optional output CSV has one row per input row:
``timestamp`` (as written in the input); ``anomaly_score`` in [0, 1], the equipment's calibrated novelty
score (`EquipmentState.equipment_novelty`: a rarity of this series' own normal, given where an incident starts
or gets worse, 1.0 at a level never visited; one threshold on it is what NAB scores); ``alert`` (1 while an
alert of any rule is open after that row, else 0); ``rule_score``, what the anomaly rule reads (the maximum of
the per-sensor, multivariate and equipment scores). Every score is computed before the row is learned. With
labels, the alert column is scored per row: precision, recall, F1.

`backtest_snapshots` replays stored snapshots the same way for ``POST /v1/equipment/{id}/backtest``.

Bad input never ends in a traceback: a missing column or an unreadable file is a `BacktestError` with a
message (exit code 2 on the CLI); a row with an unparseable timestamp, an older or repeated timestamp, or a
non-numeric / NaN value is skipped (the value, or the whole row for a timestamp) and counted.

    wellpulse backtest FILE.csv [--timestamp-column ts] [--columns a,b] [--labels FILE|COLUMN]
                                [--delimiter ';'] [--out FILE] [--equipment-type pump_jack]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models import DRIFT_PREFIX, EquipmentState, Rule, Sensitivity, Snapshot, rules_for_equipment
from models.events import severity_rank
from models.metrics import NabWeights, labels_to_windows, nab_score
from models.replay import replay_iter

__all__ = [
    "BacktestError",
    "add_backtest_arguments",
    "backtest_command",
    "backtest_csv",
    "backtest_snapshots",
    "downsample",
    "load_rules",
    "nab_standard_score",
    "parse_timestamp",
    "verdict_agreement",
]

TIMESTAMP_NAMES = ("timestamp", "ts", "time", "datetime", "date", "date_time")
LABEL_NAMES = ("label", "labels", "anomaly", "is_anomaly", "changepoint")
SNIFF_BYTES = 64 * 1024


class BacktestError(ValueError):
    """Bad input for a backtest (the message says what and where)."""


def parse_timestamp(text: str) -> datetime | None:
    """RFC 3339 / ISO 8601 (naive means UTC) or epoch seconds (milliseconds above 1e11); None if neither.

    >>> parse_timestamp("2026-11-22T06:00:00Z").isoformat()
    '2026-11-22T06:00:00+00:00'
    >>> parse_timestamp("2026-11-22 06:00:00").isoformat()
    '2026-11-22T06:00:00+00:00'
    >>> parse_timestamp("1700000000000").isoformat()
    '2023-11-14T22:13:20+00:00'
    >>> parse_timestamp("yesterday") is None
    True
    """
    text = (text or "").strip()
    if not text:
        return None
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        try:
            epoch = float(text)
        except ValueError:
            return None
        if not math.isfinite(epoch):
            return None
        if abs(epoch) > 1e11:
            epoch /= 1000.0
        try:
            return datetime.fromtimestamp(epoch, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _read_rows(path: Path, delimiter: str | None) -> tuple[list[str], list[dict[str, str]], str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            sample = f.read(SNIFF_BYTES)
            if not sample.strip():
                raise BacktestError(f"{path}: the file is empty")
            if delimiter is None:
                try:
                    delimiter = csv.Sniffer().sniff(sample.split("\n", 1)[0], delimiters=",;\t|").delimiter
                except csv.Error:
                    delimiter = ","
            f.seek(0)
            reader = csv.DictReader(f, delimiter=delimiter)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            rows = list(reader)
    except (OSError, UnicodeDecodeError) as e:
        raise BacktestError(f"{path}: cannot read: {e}") from None
    except csv.Error as e:
        raise BacktestError(f"{path}: not a readable CSV: {e}") from None
    if not header or not any(header):
        raise BacktestError(f"{path}: no header row")
    return header, rows, delimiter


def _pick_timestamp_column(header: Sequence[str], rows: Sequence[dict[str, str]], given: str | None) -> str:
    if given is not None:
        if given not in header:
            raise BacktestError(f"timestamp column {given!r} not in the file; columns: {', '.join(header)}")
        return given
    by_lower = {h.lower(): h for h in header}
    for name in TIMESTAMP_NAMES:
        if name in by_lower:
            return by_lower[name]
    first = header[0]
    if any(parse_timestamp(r.get(first) or "") is not None for r in rows[:20]):
        return first
    raise BacktestError(
        f"no timestamp column found (looked for {', '.join(TIMESTAMP_NAMES)}); pass --timestamp-column; "
        f"columns: {', '.join(header)}"
    )


def _pick_columns(
    header: Sequence[str], rows: Sequence[dict[str, str]], given: Sequence[str] | None, exclude: set[str]
) -> list[str]:
    if given:
        missing = [c for c in given if c not in header]
        if missing:
            raise BacktestError(f"column(s) not in the file: {', '.join(missing)}; columns: {', '.join(header)}")
        return list(given)
    skip = exclude | {h for h in header if h.lower() in LABEL_NAMES}
    cols = [h for h in header if h not in skip and any(_number(r.get(h)) is not None for r in rows[:200])]
    if not cols:
        raise BacktestError(f"no numeric column to replay; columns: {', '.join(header)}")
    return cols


def _labels_from_file(path: Path) -> dict[datetime, int]:
    header, rows, _ = _read_rows(path, None)
    ts_col = _pick_timestamp_column(header, rows, None)
    label_cols = [h for h in header if h != ts_col]
    if not label_cols:
        raise BacktestError(f"{path}: a labels file needs a timestamp and a label column")
    lab = next((h for h in label_cols if h.lower() in LABEL_NAMES), label_cols[0])
    out: dict[datetime, int] = {}
    for r in rows:
        ts = parse_timestamp(r.get(ts_col) or "")
        v = _number(r.get(lab))
        if ts is not None and v is not None:
            out[ts] = 1 if v != 0 else 0
    if not out:
        raise BacktestError(f"{path}: no usable (timestamp, label) row")
    return out


def _alerting(eq: EquipmentState) -> bool:
    return any(severity_rank(s) >= 1 for s in eq.alerts.open_alerts().values())


def nab_standard_score(detections: Sequence[float], truth: Sequence[int]) -> float | None:
    """NAB standard-profile score of the detections against labelled runs (None when nothing is labelled)."""
    windows = labels_to_windows(truth)
    if not windows:
        return None
    return nab_score([(detections, windows)], NabWeights(), threshold=0.5)


def _metrics(pred: Iterable[int], truth: Iterable[int]) -> dict[str, float | int]:
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


def backtest_csv(
    path: str | Path,
    *,
    timestamp_column: str | None = None,
    columns: Sequence[str] | None = None,
    delimiter: str | None = None,
    labels: str | Path | None = None,
    rules: Sequence[Rule] | None = None,
    out: str | Path | None = None,
    equipment_type: str = "other",
    seed: int = 0,
    sensitivity: Sensitivity = "medium",
) -> dict[str, Any]:
    """Replay `path` row by row through a fresh `EquipmentState`; return a JSON-safe summary.

    Parameters
    ----------
    path
        The CSV (a header row, then one snapshot per row, in time order).
    timestamp_column
        Defaults to the first of ``timestamp, ts, time, datetime, date`` present, else the first column.
    columns
        Sensor columns to replay; default every other column with numbers (label-like columns excluded).
    delimiter
        Sniffed (``, ; tab |``) unless given.
    labels
        A CSV of ``timestamp,label`` or the name of a 0/1 column of `path`; adds precision, recall, F1 of the
        alert column.
    rules
        The rules (default: `models.default_rules` of `equipment_type`).
    out
        Where to write ``timestamp,anomaly_score,alert,rule_score`` (one row per input row).
    sensitivity
        Sensitivity of the default anomaly rule ("low", "medium", "high" or a number in [0, 1]).

    With labels the result also has ``nab``: the NAB standard-profile score (0 null, 100 perfect) of the rows
    where an alert opened, with the labelled runs of 1s as anomaly windows (`models.metrics.nab_score`).

    Raises `BacktestError` (a `ValueError`) on unusable input.
    """
    path = Path(path)
    header, rows, delim = _read_rows(path, delimiter)
    ts_col = _pick_timestamp_column(header, rows, timestamp_column)
    label_col: str | None = None
    label_map: dict[datetime, int] | None = None
    if labels is not None:
        if str(labels) in header:
            label_col = str(labels)
        elif Path(labels).is_file():
            label_map = _labels_from_file(Path(labels))
        else:
            raise BacktestError(f"labels {str(labels)!r} is neither a column of {path.name} nor a readable file")
    cols = _pick_columns(header, rows, columns, {ts_col} | ({label_col} if label_col else set()))
    eq = EquipmentState("backtest", equipment_type, rules, seed=seed, sensitivity=sensitivity)
    skipped = {"bad_timestamp": 0, "not_after_previous": 0, "bad_values": 0}
    out_rows: list[tuple[str, float, int, float]] = []
    preds: list[int] = []
    truth: list[int] = []
    opened = 0
    opened_at: list[int] = []
    drifts = 0
    best = (-1.0, "")
    for row in rows:
        raw_ts = (row.get(ts_col) or "").strip()
        ts = parse_timestamp(raw_ts)
        score = novelty = 0.0
        alert = 1 if _alerting(eq) else 0
        if ts is None:
            skipped["bad_timestamp"] += 1
        else:
            values: dict[str, float] = {}
            for c in cols:
                v = _number(row.get(c))
                if v is None:
                    skipped["bad_values"] += 1
                else:
                    values[c] = v
            result_row = next(replay_iter([Snapshot(ts, values)], eq))
            if not result_row.learned:
                skipped["not_after_previous"] += 1
            score, alert, novelty = result_row.anomaly_score, result_row.alert, result_row.novelty
            for ch in result_row.changes:
                if ch.kind == "opened":
                    if ch.severity == "info":
                        drifts += 1
                    else:
                        opened += 1
                        opened_at.append(len(out_rows))
        if score > best[0]:
            best = (score, raw_ts)
        out_rows.append((raw_ts, novelty, alert, score))
        if label_col is not None or label_map is not None:
            if label_col is not None:
                lv = _number(row.get(label_col))
                t = 1 if lv else 0
            else:
                t = label_map.get(ts, 0) if ts is not None and label_map is not None else 0
            preds.append(alert)
            truth.append(t)
    if len(rows) and skipped["bad_timestamp"] == len(rows):
        raise BacktestError(f"no row of {path.name} has a parseable timestamp in column {ts_col!r}")
    result: dict[str, Any] = {
        "file": str(path),
        "rows": len(rows),
        "learned": eq.samples_seen,
        "skipped": skipped,
        "delimiter": delim,
        "timestamp_column": ts_col,
        "columns": cols,
        "alerts_opened": opened,
        "drift_events": drifts,
        "model_version": eq.model_version,
        "alert_rows": sum(row[2] for row in out_rows),
        "max_score": round(best[0], 6) if out_rows else None,
        "max_score_timestamp": best[1] if out_rows else None,
    }
    if preds:
        result["labels"] = label_col or str(labels)
        result.update(_metrics(preds, truth))
        detections = [0.0] * len(truth)
        for i in opened_at:
            detections[i] = 1.0
        result["nab"] = nab_standard_score(detections, truth)
    if out is not None:
        try:
            with Path(out).open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["timestamp", "anomaly_score", "alert", "rule_score"])
                for raw_ts, novelty, alert, score in out_rows:
                    w.writerow([raw_ts, f"{novelty:.6f}", alert, f"{score:.6f}"])
        except OSError as e:
            raise BacktestError(f"cannot write {out}: {e}") from None
        result["out"] = str(out)
    return result


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
    counts: dict[str, dict[str, int]] = {r.rule_id: {} for r in eq.rules}
    alerts: list[dict[str, Any]] = []
    open_: dict[str, dict[str, Any]] = {}
    truncated = False
    drifts = 0
    n = 0
    sensors: set[str] = set()
    series: list[tuple[datetime, float, int]] = []
    for row in replay_iter(snapshots, eq):
        n += 1
        sensors.update(row.snapshot.values)
        if max_points is not None:
            series.append((row.snapshot.ts, row.anomaly_score, row.alert))
        for ch in row.changes:
            if ch.rule_id.startswith(DRIFT_PREFIX):
                drifts += ch.kind == "opened"
                continue
            if ch.kind == "opened":
                by = counts.setdefault(ch.rule_id, {})
                by[ch.severity] = by.get(ch.severity, 0) + 1
                alert = {"rule_id": ch.rule_id, "severity": ch.severity, "opened_at": ch.ts, "resolved_at": None,
                         "message": ch.message}
                open_[ch.rule_id] = alert
                if len(alerts) < max_alerts:
                    alerts.append(alert)
                else:
                    truncated = True
            elif ch.rule_id in open_:
                alert = open_[ch.rule_id]
                if ch.kind == "resolved":
                    alert["resolved_at"] = ch.ts
                    del open_[ch.rule_id]
                elif severity_rank(ch.severity) > severity_rank(alert["severity"]):
                    alert["severity"] = ch.severity
    result: dict[str, Any] = {
        "snapshots": n,
        "learned": eq.samples_seen,
        "sensors": sorted(sensors),
        "model_version": eq.model_version,
        "sensitivity": sensitivity,
        "rules": [
            {"rule_id": rid, "kind": kinds.get(rid, "removed"), "alerts": sum(by.values()), "by_severity": by}
            for rid, by in counts.items()
        ],
        "alerts": alerts,
        "alerts_truncated": truncated,
        "drift_events": drifts,
    }
    if max_points is not None:
        result["scores"] = downsample(series, max_points)
    return result


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


def load_rules(path: Path, equipment_type: str = "other", sensitivity: Sensitivity = "medium") -> list[Rule]:
    """The default rules of `equipment_type`, overridden or extended by a JSON file of rules, at `sensitivity`
    (`models.rules_for_equipment`, as the actors build them).

    The file holds a list of ``{"id": ..., "kind": ..., "params": {...}}`` (the registry form of
    `models.build_rule`). Raises `BacktestError` on an unreadable file or a bad rule.
    """
    try:
        specs = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BacktestError(f"{path}: cannot read rules: {e}") from None
    if not isinstance(specs, list):
        raise BacktestError(f"{path}: rules must be a JSON list of {{id, kind, params}}")
    rules, rejected = rules_for_equipment(equipment_type, specs, sensitivity)
    if rejected:
        raise BacktestError(f"{path}: {rejected[0].reason}")
    return rules


def add_backtest_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``wellpulse backtest`` (the CLI module only wires the sub-command)."""
    parser.add_argument("file", type=Path, help="CSV to replay, one snapshot per row, in time order")
    parser.add_argument("--timestamp-column", default=None, metavar="NAME", help="default: timestamp/ts/time/...")
    parser.add_argument(
        "--columns", default=None, metavar="A,B", help="comma-separated sensor columns (default: all numeric)"
    )
    parser.add_argument(
        "--labels", default=None, metavar="FILE|COLUMN", help="CSV of timestamp,label, or a 0/1 column name"
    )
    parser.add_argument("--delimiter", default=None, metavar="CHAR", help="default: sniffed (, ; tab |)")
    parser.add_argument(
        "--out", default=None, type=Path, metavar="FILE", help="write timestamp,anomaly_score,alert,rule_score"
    )
    parser.add_argument("--equipment-type", default="other", help="picks the default rules (default: other)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the multivariate detector")
    parser.add_argument(
        "--sensitivity", default="medium", help="anomaly sensitivity: low, medium, high or a number in [0, 1]"
    )
    parser.add_argument("--rules", default=None, type=Path, metavar="FILE",
                        help='JSON list of rules: [{"id": ..., "kind": ..., "params": {...}}] (default rules + these)')


def backtest_command(args: argparse.Namespace) -> int:
    """Run a backtest and print its JSON summary. Exit codes: 0 done, 2 bad input."""
    delimiter = args.delimiter
    if delimiter is not None:
        delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter)
        if len(delimiter) != 1:
            print(f"error: --delimiter must be one character, got {args.delimiter!r}", file=sys.stderr)
            return 2
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    sensitivity: Sensitivity = getattr(args, "sensitivity", "medium") or "medium"
    try:
        sensitivity = float(sensitivity)
    except (TypeError, ValueError):
        pass
    try:
        rules = None
        if getattr(args, "rules", None) is not None:
            rules = load_rules(args.rules, getattr(args, "equipment_type", "other"), sensitivity)
        result = backtest_csv(
            args.file,
            timestamp_column=args.timestamp_column,
            columns=columns,
            delimiter=delimiter,
            labels=args.labels,
            out=args.out,
            equipment_type=getattr(args, "equipment_type", "other"),
            seed=getattr(args, "seed", 0),
            sensitivity=sensitivity,
            rules=rules,
        )
    except BacktestError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wellpulse backtest", description=__doc__.split("\n")[0])
    add_backtest_arguments(parser)
    return backtest_command(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
