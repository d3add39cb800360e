"""``wellpulse backtest``: replay a CSV through the same `models.EquipmentState` the equipment actors run.

Each row is one snapshot (its timestamp and the chosen numeric columns), learned in file order, one at a
time, so a row's score never depends on later rows. The optional output CSV has one row per input row:
``timestamp`` (as written in the input); ``anomaly_score`` in [0, 1], the equipment's calibrated novelty
score (`EquipmentState.equipment_novelty`: a rarity of this series' own normal, given where an incident starts
or gets worse, 1.0 at a level never visited; one threshold on it is what NAB scores); ``alert`` (1 while an
alert of any rule is open after that row, else 0); ``rule_score``, what the anomaly rule reads (the maximum of
the per-sensor, multivariate and equipment scores). Every score is computed before the row is learned. With
labels, the alert column is scored per row: precision, recall, F1.

This module is the IO (reading the CSV and the labels, writing the scores, the options); the replay and its
summary are pure, `models.backtest.replay_table` (`models.backtest.backtest_snapshots` replays stored snapshots
the same way for ``POST /v1/equipment/{id}/backtest``).

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
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: the models (River, SciPy) take seconds, and every CLI command imports this
    from models import Rule, Sensitivity
    from models.backtest import TableReplay, TableRow

__all__ = [
    "BacktestError",
    "add_backtest_arguments",
    "backtest_command",
    "backtest_csv",
    "load_rules",
    "parse_timestamp",
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
    label_col, label_map = _labels(path, header, labels)
    cols = _pick_columns(header, rows, columns, {ts_col} | ({label_col} if label_col else set()))
    table, bad_values = _table(rows, ts_col, cols, label_col, label_map)
    from models import EquipmentState
    from models.backtest import replay_table

    eq = EquipmentState("backtest", equipment_type, rules, seed=seed, sensitivity=sensitivity)
    replayed = replay_table(table, eq)
    if len(rows) and replayed.bad_timestamp == len(rows):
        raise BacktestError(f"no row of {path.name} has a parseable timestamp in column {ts_col!r}")
    result: dict[str, Any] = {
        "file": str(path),
        "rows": len(rows),
        "learned": eq.samples_seen,
        "skipped": {"bad_timestamp": replayed.bad_timestamp, "not_after_previous": replayed.not_after_previous,
                    "bad_values": bad_values},
        "delimiter": delim,
        "timestamp_column": ts_col,
        "columns": cols,
        "alerts_opened": replayed.alerts_opened,
        "drift_events": replayed.drift_events,
        "model_version": eq.model_version,
        **replayed.scores(),
    }
    if replayed.preds:
        result["labels"] = label_col or str(labels)
        result.update(replayed.label_scores())
    if out is not None:
        _write_scores(Path(out), replayed)
        result["out"] = str(out)
    return result


def _labels(path: Path, header: Sequence[str],
            labels: str | Path | None) -> tuple[str | None, dict[datetime, int] | None]:
    """``labels`` as a column of the file (its name), or as a file of ``timestamp,label`` (its map)."""
    if labels is None:
        return None, None
    if str(labels) in header:
        return str(labels), None
    if Path(labels).is_file():
        return None, _labels_from_file(Path(labels))
    raise BacktestError(f"labels {str(labels)!r} is neither a column of {path.name} nor a readable file")


def _table(rows: Sequence[dict[str, str]], ts_col: str, cols: Sequence[str], label_col: str | None,
           label_map: dict[datetime, int] | None) -> tuple[list[TableRow], int]:
    """The CSV's rows parsed for `models.backtest.replay_table`, and how many values were not numbers."""
    from models.backtest import TableRow

    table: list[TableRow] = []
    bad_values = 0
    for row in rows:
        raw_ts = (row.get(ts_col) or "").strip()
        ts = parse_timestamp(raw_ts)
        values: dict[str, float] = {}
        if ts is not None:
            for c in cols:
                v = _number(row.get(c))
                if v is None:
                    bad_values += 1
                else:
                    values[c] = v
        label: int | None = None
        if label_col is not None:
            label = 1 if _number(row.get(label_col)) else 0
        elif label_map is not None:
            label = label_map.get(ts, 0) if ts is not None else 0
        table.append(TableRow(raw_ts, ts, values, label))
    return table, bad_values


def _write_scores(out: Path, replayed: TableReplay) -> None:
    try:
        with out.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["timestamp", "anomaly_score", "alert", "rule_score"])
            for raw_ts, novelty, alert, score in replayed.rows:
                w.writerow([raw_ts, f"{novelty:.6f}", alert, f"{score:.6f}"])
    except OSError as e:
        raise BacktestError(f"cannot write {out}: {e}") from None


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
    from models import rules_for_equipment

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
