"""Backtesting a CSV through the models, and the benchmark scorers (pure: no servers, no shared data)."""

import argparse
import csv
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.anomaly_eval import NabWeights, nab_corpus, nab_file_score, skab_counts, skab_metrics
from cli.backtest import BacktestError, add_backtest_arguments, backtest_command, backtest_csv
from models.detectors import EquipmentAnomalyScorer

pytestmark = pytest.mark.fast  # no Ray, no Serve: `./wp test -m fast`

SPIKE = range(600, 606)


def _write_csv(path: Path, *, n: int = 800, delimiter: str = ",", seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    t0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
    stamps = []
    with path.open("w", newline="") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(["ts", "pressure", "current", "label"])
        for i in range(n):
            ts = (t0 + timedelta(seconds=10 * i)).isoformat()
            p = 800.0 + 20.0 * math.sin(2 * math.pi * i / 120) + rng.gauss(0.0, 2.0)
            c = 40.0 + rng.gauss(0.0, 0.5)
            if i in SPIKE:
                p += 300.0
            stamps.append(ts)
            w.writerow([ts, f"{p:.3f}", f"{c:.3f}", 1 if i in SPIKE else 0])
    return stamps


def _read_out(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_backtest_finds_the_spike_one_row_per_input_row(tmp_path: Path) -> None:
    src = tmp_path / "feed.csv"
    stamps = _write_csv(src, delimiter=";")
    out = tmp_path / "scores.csv"
    result = backtest_csv(src, labels="label", out=out)
    assert result["delimiter"] == ";"
    assert result["timestamp_column"] == "ts"
    assert result["columns"] == ["pressure", "current"]
    rows = _read_out(out)
    assert [r["timestamp"] for r in rows] == stamps
    scores = [float(r["anomaly_score"]) for r in rows]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert max(range(len(scores)), key=scores.__getitem__) in SPIKE
    alerts = [int(r["alert"]) for r in rows]
    assert any(alerts[i] for i in SPIKE)
    assert result["alerts_opened"] >= 1
    # A 150-sigma spike of 6 rows: the smoothed equipment score holds the alert a few dozen rows after it.
    assert result["recall"] > 0.5 and result["alert_rows"] <= 40 and result["alerts_opened"] == 1
    assert result["nab"] > 90.0  # the alert opens at the start of the labelled window
    # No look-ahead: the rows before the spike score the same when the file stops before it.
    short = tmp_path / "short.csv"
    with src.open() as f:
        lines = f.readlines()
    short.write_text("".join(lines[: SPIKE.start + 1]))
    out2 = tmp_path / "short_scores.csv"
    backtest_csv(short, out=out2)
    assert [r["anomaly_score"] for r in _read_out(out2)] == [r["anomaly_score"] for r in rows[: SPIKE.start]]


def test_backtest_labels_file_and_bad_rows(tmp_path: Path) -> None:
    src = tmp_path / "feed.csv"
    stamps = _write_csv(src, n=300)
    lines = src.read_text().splitlines()
    lines[10] = "not-a-time,1,2,0"
    lines[20] = lines[20].replace(lines[20].split(",")[1], "nan", 1)
    lines[30] = lines[29]  # a repeated timestamp
    src.write_text("\n".join(lines) + "\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("timestamp,label\n" + "".join(f"{t},0\n" for t in stamps))
    out = tmp_path / "o.csv"
    result = backtest_csv(src, labels=labels, columns=["pressure"], out=out)
    assert len(_read_out(out)) == 300
    assert result["skipped"]["bad_timestamp"] == 1
    assert result["skipped"]["not_after_previous"] == 1
    assert result["skipped"]["bad_values"] == 1
    assert set(result) >= {"precision", "recall", "f1"}


def test_backtest_bad_input_is_a_message_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "feed.csv"
    _write_csv(src, n=50)
    with pytest.raises(BacktestError, match="nope"):
        backtest_csv(src, columns=["nope"])
    with pytest.raises(BacktestError, match="timestamp column"):
        backtest_csv(src, timestamp_column="when")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(BacktestError, match="empty"):
        backtest_csv(empty)
    garbage = tmp_path / "garbage.csv"
    garbage.write_text("ts,x\nfoo,1\nbar,2\n")
    with pytest.raises(BacktestError, match="parseable timestamp"):
        backtest_csv(garbage, timestamp_column="ts")
    parser = argparse.ArgumentParser()
    add_backtest_arguments(parser)
    assert backtest_command(parser.parse_args([str(src), "--columns", "a,b"])) == 2
    assert "error: column(s) not in the file: a, b" in capsys.readouterr().err
    assert backtest_command(parser.parse_args([str(tmp_path / "missing.csv")])) == 2
    out = tmp_path / "o.csv"
    assert backtest_command(parser.parse_args([str(src), "--delimiter", ",", "--out", str(out)])) == 0
    assert len(_read_out(out)) == 50


def test_nab_scorer_perfect_is_100_null_is_0() -> None:
    w = NabWeights()
    n = 600  # the first 15 % (90 records) are NAB's probation, not scored
    windows = [(150, 169), (300, 339), (400, 409)]
    perfect = [0.0] * n
    for s, _ in windows:
        perfect[s] = 1.0
    null = [0.0] * n
    for weights in (w, NabWeights(fp=0.22), NabWeights(fn=2.0)):
        assert nab_corpus([(perfect, windows)], weights)["score"] == 100.0
        assert nab_corpus([(null, windows)], weights)["score"] == 0.0
        # A corpus of several files, one with no window: still 100 and 0.
        assert nab_corpus([(perfect, windows), (null[:200], [])], weights)["score"] == 100.0
    # A late detection earns less than an early one, a far false positive costs the full A_FP.
    early = nab_file_score([1.0 if i == 150 else 0.0 for i in range(n)], [(150, 169)], 0.5, w)
    late = nab_file_score([1.0 if i == 168 else 0.0 for i in range(n)], [(150, 169)], 0.5, w)
    assert early > late > 0
    fp_far = nab_file_score([1.0 if i in (150, 599) else 0.0 for i in range(n)], [(150, 169)], 0.5, w)
    fp_near = nab_file_score([1.0 if i in (150, 170) else 0.0 for i in range(n)], [(150, 169)], 0.5, w)
    assert fp_far == pytest.approx(early - 0.11, abs=1e-3)
    assert early - 0.11 < fp_near < early
    fp_before = nab_file_score([1.0 if i in (95, 150) else 0.0 for i in range(n)], [(150, 169)], 0.5, w)
    assert fp_before == pytest.approx(early - 0.11)
    # The sweep picks the threshold that drops the false positives of a noisy detector.
    noisy = [0.4 if i % 37 == 0 else 0.0 for i in range(n)]
    for s, _ in windows:
        noisy[s + 2] = 0.9
    got = nab_corpus([(noisy, windows)], w)
    assert got["threshold"] == 0.9 and 90 < got["score"] < 100


def test_skab_metrics() -> None:
    truth = [0] * 400 + [0, 0, 1, 1, 1, 0]
    pred = [1] * 400 + [0, 1, 1, 1, 0, 0]
    c = skab_counts(pred, truth)
    assert c == {"tp": 2, "fp": 1, "fn": 1, "tn": 2}
    assert skab_metrics(c) == {"f1": round(2 / 3, 4), "far_pct": round(100 / 3, 2), "mar_pct": round(100 / 3, 2)}


def test_equipment_anomaly_scorer_range_statistic_and_novelty() -> None:
    rng = random.Random(5)
    det = EquipmentAnomalyScorer(refractory=20, levels=0)  # the statistic's own novelty gate
    stats = []
    for _ in range(1_000):
        x = {"a": rng.gauss(0.0, 1.0), "b": rng.gauss(500.0, 30.0)}
        s = det.score_one(x)
        assert 0.0 <= s <= 1.0
        stats.append(det.statistic_one(x))
        det.learn_one(x)
        assert det.last_statistic == stats[-1]
    assert 0.5 < sum(stats[200:]) / 800 < 2.0  # about 1 on normal data, whatever the units
    first = det.novelty_one({"a": 6.0, "b": 500.0})
    assert first > 0.5 and det.score_one({"a": 6.0, "b": 500.0}) == first
    det.learn_one({"a": 6.0, "b": 500.0})
    assert det.last_novelty == first
    assert det.novelty_one({"a": 0.0, "b": 500.0}) == 0.0  # the same incident, not worse
    assert det.score_one({"a": 0.0, "b": 500.0}) > 0.0  # but still anomalous while it lasts
    assert det.novelty_one({"a": 9.0, "b": 500.0}) > 0.0  # worse: reported
    # With level novelty (the default), a level never visited is new whatever the statistic says.
    det = EquipmentAnomalyScorer(refractory=20)
    for _ in range(1_000):
        det.learn_one({"a": rng.gauss(0.0, 1.0), "b": rng.gauss(500.0, 30.0)})
    assert det.novelty_one({"a": 12.0, "b": 500.0}) == 1.0 > det.score_one({"a": 12.0, "b": 500.0})
    assert det.novelty_one({"a": 0.1, "b": 500.0}) < 0.5


def test_backtest_anomaly_score_column_is_calibrated_not_saturated(tmp_path: Path) -> None:
    """One threshold on the written column separates: normal rows score low, the spike's first row high."""
    src = tmp_path / "feed.csv"
    _write_csv(src, n=2_000)
    out = tmp_path / "scores.csv"
    backtest_csv(src, out=out)
    rows = _read_out(out)
    assert list(rows[0]) == ["timestamp", "anomaly_score", "alert", "rule_score"]
    scores = [float(r["anomaly_score"]) for r in rows]
    normal = [s for i, s in enumerate(scores) if i >= 300 and i not in range(SPIKE.start, SPIKE.stop + 100)]
    assert sum(s >= 0.5 for s in normal) / len(normal) < 0.02
    assert max(scores[i] for i in SPIKE) >= 0.99 > max(normal)
    assert all(0.0 <= float(r["rule_score"]) <= 1.0 for r in rows)


def test_level_novelty_knows_every_level_visited() -> None:
    from models.detectors import LevelNovelty

    nov = LevelNovelty(warmup=20)
    rng = random.Random(5)
    for i in range(2_000):  # two operating points, months apart in the stream
        nov.learn_one(rng.gauss(50.0 if i < 1_000 else 80.0, 1.0))
    assert nov.score_one(50.5) == 0.0 and nov.score_one(79.0) == 0.0
    assert nov.score_one(65.0) == 1.0  # between the two: never visited
    assert nov.score_one(120.0) == 1.0 and nov.score_one(float("nan")) == 0.0
    assert len(nov._points) <= nov.max_points


def test_nab_probation_is_not_scored() -> None:
    from models.metrics import nab_probation, nab_score

    w = NabWeights()
    n = 100
    early = [0.0] * n
    early[5] = 1.0  # inside the first 15 %: neither a false positive nor anything else
    assert nab_probation(n) == 15
    assert nab_score([(early, [(60, 70)])], w) == nab_score([([0.0] * n, [(60, 70)])], w) == 0.0
    late = [0.0] * n
    late[20] = 1.0  # the same detection after the probation costs
    assert nab_score([(late, [(60, 70)])], w) < 0.0


def test_anomaly_rule_deadband_keeps_one_alert_while_the_score_wavers() -> None:
    from models.rules import AnomalyRule, Observation

    rule = AnomalyRule()  # medium: opens at 0.99, clears below 0.9
    assert rule.effective_level == 0.99 and rule._clear == 0.9
    t = datetime(2026, 11, 22, tzinfo=UTC)
    states = [rule.observe(Observation(t, {"x": 1.0}, scores={"x": s}))[0] for s in
              [0.995] * 3 + [0.95, 0.98, 0.93] * 5 + [0.5] * 3]
    assert states[2] and all(states[2:-1]) and not states[-1]
    with pytest.raises(ValueError, match="clear_level"):
        AnomalyRule(level=0.9, clear_level=0.95)
