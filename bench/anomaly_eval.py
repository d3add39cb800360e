"""Anomaly benchmarks (NAB, SKAB) run through the same `models/` code the equipment actors run.

Every series is streamed one record at a time, in time order, through a fresh `EquipmentState`; the
score of a record is computed before the record is learned (no look-ahead). Baseline in the same run: a
bare `river.anomaly.HalfSpaceTrees` with default settings, its raw score used as is, through the same
scorer. Prints JSON.

    python -m bench.anomaly_eval /work/shared/data/nab     # NAB: normalised scores of the three profiles
    python -m bench.anomaly_eval /work/shared/data/skab    # SKAB: F1, FAR %, MAR % after 400 records per file

On SKAB the headline is the product's own alert: the default anomaly rule (medium sensitivity) open or not
on each record, with no level chosen on the data.

The data set is detected from the folder layout (``labels/combined_windows.json`` means NAB, ``;``-separated
CSVs with an ``anomaly`` column mean SKAB). The scorers (`nab_file_score`, `nab_corpus`, `skab_counts`) are
pure functions, tested on synthetic windows in ``tests/test_backtest.py``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from river import anomaly

from models import SENSITIVITIES, AnomalyRule, EquipmentState, Snapshot, sensitivity_level
from models.metrics import NabWeights, _file_terms, nab_file_score, nab_score, nab_sigma, window_indices

__all__ = [
    "NabWeights",
    "nab_corpus",
    "nab_file_score",
    "nab_sigma",
    "skab_counts",
    "skab_metrics",
]

SKAB_TRAIN = 400
# The levels of the sensitivity presets (models.sensitivity_level: low, medium, high), read as quantiles of
# the statistic on normal data (anomaly-free.csv, no labels): a secondary reading, beside the product's alert.
SKAB_FREE_QUANTILES = (sensitivity_level("low"), sensitivity_level("medium"), sensitivity_level("high"))
SKAB_SKIP = ("anomaly", "changepoint", "datetime")


# -- NAB scoring ---------------------------------------------------------------------------------------


def _window_indices(
    timestamps: Sequence[datetime], windows: Iterable[tuple[datetime, datetime]]
) -> list[tuple[int, int]]:
    return window_indices(timestamps, windows)


def nab_corpus(
    files: Sequence[tuple[Sequence[float], Sequence[tuple[int, int]]]], w: NabWeights
) -> dict[str, float]:
    """Best normalised score over every threshold (one for the whole corpus), with its threshold.

    Exact sweep: the corpus score as a function of the threshold changes only at the scores themselves,
    so each distinct positive score is tried (vectorised with numpy). ``100 * (S - S_null) / (S_perfect - S_null)``.

    >>> w = NabWeights()
    >>> perfect = ([0, 0, 1, 0, 0, 0, 0], [(2, 4)])
    >>> nab_corpus([perfect], w)["score"]
    100.0
    >>> nab_corpus([([0.0] * 7, [(2, 4)])], w)["score"]
    0.0
    """
    import numpy as np

    fp_scores: list[float] = []
    fp_costs: list[float] = []
    win_steps: list[tuple[np.ndarray, np.ndarray]] = []  # per window: prefix-max breakpoints and rewards
    s_null = 0.0
    s_perfect = 0.0
    all_scores: list[float] = []
    for scores, windows in files:
        reward, where = _file_terms(len(scores), windows, w)
        s_null -= w.fn * len(windows)
        s_perfect += sum(reward[s] for s, _ in windows)
        for i, s in enumerate(scores):
            if where[i] < 0:
                fp_scores.append(float(s))
                fp_costs.append(reward[i])
        for s, e in windows:
            peaks: list[float] = []
            gains: list[float] = []
            for i in range(s, e + 1):
                if not peaks or scores[i] > peaks[-1]:
                    peaks.append(float(scores[i]))
                    gains.append(reward[i])
            win_steps.append((np.array(peaks), np.array(gains)))
        all_scores.extend(float(x) for x in scores)
    # A detection needs a positive score (0.0 is "normal / no opinion"), so the sweep is over (0, 1].
    thresholds = np.unique(np.array([x for x in all_scores if x > 0.0] + [math.inf]))
    order = np.argsort(fp_scores)
    fs = np.array(fp_scores)[order]
    fc = np.concatenate([[0.0], np.cumsum(np.array(fp_costs)[order][::-1])])  # suffix sums from the top
    n_above = len(fs) - np.searchsorted(fs, thresholds, side="left")
    total = fc[n_above]
    for peaks, gains in win_steps:
        # The first detection in the window is the first breakpoint whose prefix max reaches the threshold.
        k = np.searchsorted(peaks, thresholds, side="left")
        got = np.where(k < len(peaks), gains[np.minimum(k, len(peaks) - 1)], -w.fn)
        total = total + got
    best = int(np.argmax(total))
    span = s_perfect - s_null
    score = 100.0 * (float(total[best]) - s_null) / span if span > 0 else 0.0
    return {
        "score": round(score, 2),
        "threshold": float(thresholds[best]) if math.isfinite(thresholds[best]) else None,  # None: never detect
        "raw": round(float(total[best]), 3),
        "null": round(s_null, 3),
        "perfect": round(s_perfect, 3),
    }


# -- SKAB scoring -------------------------------------------------------------------------------------


def skab_counts(pred: Sequence[int], truth: Sequence[int], skip: int = SKAB_TRAIN) -> dict[str, int]:
    """TP/FP/FN/TN of binary predictions over the records after the first `skip`."""
    c = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for p, t in zip(pred[skip:], truth[skip:], strict=True):
        c["tp" if p and t else "fp" if p else "fn" if t else "tn"] += 1
    return c


def skab_metrics(c: dict[str, int]) -> dict[str, float]:
    """SKAB's F1, FAR % and MAR % from summed counts."""
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    return {
        "f1": round(tp / (tp + (fp + fn) / 2), 4) if tp + fp + fn else 0.0,
        "far_pct": round(100.0 * fp / (fp + tn), 2) if fp + tn else 0.0,
        "mar_pct": round(100.0 * fn / (fn + tp), 2) if fn + tp else 0.0,
    }


# -- the detectors under test -------------------------------------------------------------------------


@dataclass
class Streamed:
    """What one streamed series gave, per record (all computed before the record was learned)."""

    equipment_score: list[float]  # EquipmentState.equipment_novelty: calibrated, novelty-gated, in [0, 1]
    statistic: list[float]  # EquipmentState.equipment_statistic: chi-square-like, about 1 when normal
    rule_score: list[float]  # what the AnomalyRule reads: max of per-sensor, multivariate and equipment scores
    alerts: dict[str, list[int]]  # per sensitivity preset: 1 while that AnomalyRule's alert is open

    @property
    def alert(self) -> list[int]:
        """The alert of the default anomaly rule (medium sensitivity)."""
        return self.alerts["medium"]


def stream_equipment(
    timestamps: Sequence[datetime], rows: Sequence[dict[str, float]], *, seed: int = 0
) -> Streamed:
    """Stream one series through a fresh `EquipmentState`, one record per `learn_many`.

    Its rules are one `AnomalyRule` per sensitivity preset (rules only read the scores, so the presets
    share one stream): each is the default anomaly alert of an equipment set to that sensitivity.
    """
    rules = [AnomalyRule(rule_id=f"anomaly_{s}", sensitivity=s) for s in SENSITIVITIES]
    eq = EquipmentState("bench", "other", rules, seed=seed)
    out = Streamed([], [], [], {s: [] for s in SENSITIVITIES})
    for ts, values in zip(timestamps, rows, strict=True):
        before = eq.samples_seen
        eq.learn_many([Snapshot(ts, values)])
        if eq.samples_seen == before:  # a repeated or older timestamp is not learned: nothing new to say
            out.equipment_score.append(0.0)
            out.statistic.append(0.0)
            out.rule_score.append(0.0)
        else:
            out.equipment_score.append(eq.equipment_novelty)
            out.statistic.append(eq.equipment_statistic)
            out.rule_score.append(max(eq.last_scores.values(), default=0.0))
        for s, alert in out.alerts.items():
            alert.append(1 if eq.alerts.is_open(f"anomaly_{s}") else 0)
    return out


def hst_scores(rows: Sequence[dict[str, float]]) -> list[float]:
    """Bare River HalfSpaceTrees, default settings, raw values, raw score (each record scored before learned)."""
    model = anomaly.HalfSpaceTrees(seed=0)  # default settings; seeded so that runs repeat
    out = []
    for values in rows:
        x = {k: v for k, v in values.items() if math.isfinite(v)}
        out.append(float(model.score_one(x)))
        model.learn_one(x)
    return out


# -- data sets -----------------------------------------------------------------------------------------


def run_both(ts: Any, values: Any, seconds: dict[str, float]) -> tuple[Any, Any]:
    """Our models and the bare River baseline over one series, each timed into ``seconds``."""
    t0 = time.perf_counter()
    got = stream_equipment(ts, values)
    t1 = time.perf_counter()
    hst = hst_scores(values)
    seconds["wellpulse"] += t1 - t0
    seconds["baseline_hst"] += time.perf_counter() - t1
    return got, hst


def _parse_ts(text: str) -> datetime:
    ts = datetime.fromisoformat(text.strip())
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def load_nab(folder: Path) -> list[tuple[str, list[datetime], list[dict[str, float]], list[tuple[int, int]]]]:
    labels = json.loads((folder / "labels" / "combined_windows.json").read_text())
    out = []
    for rel in sorted(labels):
        path = folder / "data" / rel
        if not path.exists():
            continue
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        ts = [_parse_ts(r["timestamp"]) for r in rows]
        values = [{"value": _float(r["value"])} for r in rows]
        wins = [(_parse_ts(a), _parse_ts(b)) for a, b in labels[rel]]
        out.append((rel, ts, values, _window_indices(ts, wins)))
    return out


def load_skab(folder: Path) -> list[tuple[str, list[datetime], list[dict[str, float]], list[int]]]:
    out = []
    for path in sorted(folder.rglob("*.csv"), key=lambda p: (str(p.parent), len(p.stem), p.stem)):
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f, delimiter=";"))
        if not rows or "datetime" not in rows[0]:
            continue
        ts = [_parse_ts(r["datetime"]) for r in rows]
        values = [{k: _float(v) for k, v in r.items() if k not in SKAB_SKIP} for r in rows]
        truth = [int(float(r.get("anomaly") or 0)) for r in rows]  # anomaly-free.csv has no such column
        out.append((str(path.relative_to(folder)), ts, values, truth))
    return out


def detect_layout(folder: Path) -> str:
    if (folder / "labels" / "combined_windows.json").exists():
        return "nab"
    for path in folder.rglob("*.csv"):
        with path.open() as f:
            head = f.readline()
        if ";" in head and "anomaly" in head:
            return "skab"
    raise SystemExit(f"{folder}: neither a NAB folder (labels/combined_windows.json) nor SKAB (;-separated CSVs)")


def _profiles(folder: Path) -> dict[str, NabWeights]:
    profiles = json.loads((folder / "profiles.json").read_text())
    return {
        name: NabWeights(tp=m["tpWeight"], fp=m["fpWeight"], fn=m["fnWeight"])
        for name, m in ((name, p["CostMatrix"]) for name, p in profiles.items())
    }


def run_nab(folder: Path) -> dict[str, Any]:
    weights = _profiles(folder)
    data = load_nab(folder)
    runs: dict[str, list[tuple[list[float], list[tuple[int, int]]]]] = {
        "wellpulse": [], "wellpulse_anomaly_rule_score": [], "wellpulse_alert_opened": [], "baseline_hst": []
    }
    seconds = {"wellpulse": 0.0, "baseline_hst": 0.0}
    records = 0
    by_category: dict[str, list[tuple[list[float], list[tuple[int, int]]]]] = {}
    for rel, ts, values, wins in data:
        got, hst = run_both(ts, values, seconds)
        records += len(ts)
        runs["wellpulse"].append((got.equipment_score, wins))
        by_category.setdefault(rel.split("/")[0], []).append((got.equipment_score, wins))
        runs["wellpulse_anomaly_rule_score"].append((got.rule_score, wins))
        opened = [1.0 if a and (i == 0 or not got.alert[i - 1]) else 0.0 for i, a in enumerate(got.alert)]
        runs["wellpulse_alert_opened"].append((opened, wins))
        runs["baseline_hst"].append((hst, wins))
    result: dict[str, Any] = {
        "benchmark": "NAB",
        "files": len(data),
        "records": records,
        "windows": sum(len(w) for *_, w in data),
        "notes": {
            "wellpulse": "EquipmentState.equipment_novelty (EquipmentAnomalyScorer: calibrated, novelty-gated)",
            "wellpulse_anomaly_rule_score": "max of per-sensor and multivariate scores (what AnomalyRule reads)",
            "wellpulse_alert_opened": "1.0 on the record where the default AnomalyRule's alert opens",
            "baseline_hst": "river.anomaly.HalfSpaceTrees(), default settings, raw value, raw score",
            "threshold": "one per profile for the whole corpus, exact sweep over the positive scores",
            "probation": "the first 15 % of each file (at most 750 records) is not scored, as in NAB's scorer",
            "held_out": "standard profile, each category at the threshold chosen on the other categories",
        },
    }
    for name, files in runs.items():
        result[name] = {profile: nab_corpus(files, w) for profile, w in weights.items()}
    result["held_out"] = held_out(by_category, weights["standard"])
    result["ratio_vs_baseline"] = {}
    for profile in weights:
        b = result["baseline_hst"][profile]["score"]
        result["ratio_vs_baseline"][profile] = round(result["wellpulse"][profile]["score"] / b, 2) if b > 0 else None
    result["us_per_record"] = {k: round(1e6 * v / records, 2) for k, v in seconds.items()}
    return result


def held_out(
    by_category: dict[str, list[tuple[list[float], list[tuple[int, int]]]]], w: NabWeights
) -> dict[str, float]:
    """Each category scored at the threshold chosen on the other categories: how the score carries over.

    The corpus threshold is fitted on the labels, so the corpus score flatters a detector tuned to the
    series at hand; a category it was not fitted on is the honest reading (categories without windows are
    only part of the fitting).
    """
    out: dict[str, float] = {}
    for name, files in sorted(by_category.items()):
        if not any(wins for _, wins in files):
            continue
        others = [f for other, fs in by_category.items() if other != name for f in fs]
        threshold = nab_corpus(others, w)["threshold"]
        out[name] = nab_score(files, w, threshold) if threshold is not None else 0.0
    return out


def _counts(files: Iterable[tuple[Sequence[float], Sequence[int]]], level: float) -> dict[str, int]:
    c = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for scores, truth in files:
        for k, v in skab_counts([1 if s >= level else 0 for s in scores], truth).items():
            c[k] += v
    return c


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _oracle(files: Sequence[tuple[list[float], list[int]]], max_far: float = 15.0) -> dict[str, Any]:
    """The best F1 with FAR below `max_far` over one level for all files, chosen on the test labels."""
    levels = sorted({s for scores, _ in files for s in scores[SKAB_TRAIN:]})
    step = max(1, len(levels) // 300)
    best: dict[str, Any] = {"level": None, "f1": 0.0}
    for level in levels[::step]:
        m = skab_metrics(_counts(files, level))
        if m["far_pct"] < max_far and m["f1"] > best["f1"]:
            best = {"level": round(level, 4), **m}
    return best


def run_skab(folder: Path) -> dict[str, Any]:
    data = load_skab(folder)
    labelled = [d for d in data if any(d[3])]
    free = [d for d in data if not any(d[3])]
    stat_files: list[tuple[list[float], list[int]]] = []
    alert_files: dict[str, list[tuple[list[float], list[int]]]] = {s: [] for s in SENSITIVITIES}
    hst_files: list[tuple[list[float], list[int]]] = []
    seconds = {"wellpulse": 0.0, "baseline_hst": 0.0}
    records = 0
    for _rel, ts, values, truth in labelled:
        got, hst = run_both(ts, values, seconds)
        records += len(ts)
        stat_files.append((got.statistic, truth))
        for s, alert in got.alerts.items():
            alert_files[s].append(([float(a) for a in alert], truth))
        hst_files.append((hst, truth))
    result: dict[str, Any] = {
        "benchmark": "SKAB",
        "files": len(labelled),
        "records": records,
        "test_records": sum(max(0, len(t) - SKAB_TRAIN) for *_, t in labelled),
        "notes": {
            "wellpulse": "the default anomaly alert (AnomalyRule, medium sensitivity) open on the record: the product",
            "wellpulse_alert_<preset>": "the same alert at each sensitivity preset (low, medium, high)",
            "wellpulse_free_q*": "equipment_statistic >= its q-quantile on anomaly-free.csv, q = a preset's level",
            "baseline_hst": "river.anomaly.HalfSpaceTrees(), default settings, raw values, score >= 0.5",
            "oracle_*": "one level for all files chosen on the test labels (FAR < 15 %): an upper bound, not a result",
        },
    }
    for s, files in alert_files.items():
        c = _counts(files, 0.5)
        result[f"wellpulse_alert_{s}"] = {"level": sensitivity_level(s), **skab_metrics(c), **c}
    result["wellpulse"] = {"sensitivity": "medium", **result["wellpulse_alert_medium"]}
    # A second reading of the statistic, with its alert level taken from normal data only (anomaly-free.csv,
    # never the labels): its quantile at each preset's level, after the training part.
    free_stats = [s for _rel, ts, values, _ in free for s in stream_equipment(ts, values).statistic[SKAB_TRAIN:]]
    levels = {q: _quantile(free_stats, q) for q in SKAB_FREE_QUANTILES} if free_stats else {}
    for q, level in levels.items():
        c = _counts(stat_files, level)
        result[f"wellpulse_free_q{q}"] = {"level": round(level, 4), **skab_metrics(c), **c}
    c = _counts(hst_files, 0.5)
    result["baseline_hst"] = {**skab_metrics(c), **c}
    result["oracle_wellpulse"] = _oracle(stat_files)
    result["oracle_baseline_hst"] = _oracle(hst_files)
    if result["baseline_hst"]["f1"] > 0:
        result["ratio_f1_vs_baseline"] = round(result["wellpulse"]["f1"] / result["baseline_hst"]["f1"], 2)
    result["us_per_record"] = {k: round(1e6 * v / records, 2) for k, v in seconds.items()}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.anomaly_eval", description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="a NAB or SKAB folder (e.g. ../shared/data/nab)")
    args = parser.parse_args(argv)
    folder: Path = args.folder
    if not folder.is_dir():
        print(f"error: {folder} is not a folder", file=sys.stderr)
        return 2
    kind = detect_layout(folder)
    result = run_nab(folder) if kind == "nab" else run_skab(folder)
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["cpus"] = os.cpu_count()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
