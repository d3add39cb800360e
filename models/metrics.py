"""Scoring of anomaly detections: NAB's windows and sigmoid (pure functions, shared by backtests and benchmarks).

From the NAB paper (Lavin and Ahmad, 2015): inside an anomaly window only the first detection counts and
earns ``A_TP * sigma(y)``; a detection outside every window costs ``A_FP * sigma(y)``; a missed window
costs ``A_FN``; the sum is normalised to 0 (null detector) .. 100 (perfect detector).

"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "NabWeights",
    "labels_to_windows",
    "nab_file_score",
    "nab_probation",
    "nab_score",
    "nab_sigma",
    "window_indices",
]


@dataclass(frozen=True, slots=True)
class NabWeights:
    """A NAB profile's cost matrix."""

    tp: float = 1.0
    fp: float = 0.11
    fn: float = 1.0


def nab_sigma(y: float) -> float:
    """NAB's scaled sigmoid: +0.987 at y=-1 (window start), 0 at the window's end, towards -1 after it."""
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def window_indices(
    timestamps: Sequence[datetime], windows: Iterable[tuple[datetime, datetime]]
) -> list[tuple[int, int]]:
    out = []
    for start, end in windows:
        i = bisect.bisect_left(timestamps, start)
        j = bisect.bisect_right(timestamps, end) - 1
        if i <= j:
            out.append((i, j))
    return sorted(out)


def nab_probation(n: int) -> int:
    """Records at the start of an `n`-record file that NAB does not score: 15 %, at most 750.

    >>> nab_probation(4032), nab_probation(22695)
    (604, 750)
    """
    return min(math.floor(0.15 * n), 750)


def _file_terms(n: int, windows: Sequence[tuple[int, int]], w: NabWeights) -> tuple[list[float], list[int]]:
    """Per record: its reward if it were a detection, and its window number (-1 outside every window).

    Inside a window of length L ending at e, record i is at y = -(e - i + 1) / L; outside, a record after
    the window ending at e is at y = (i - e) / L of that window, before the first window it costs the full
    A_FP. Records of the probationary period (`nab_probation`) are not scored: a detection there neither
    costs nor counts, as in NAB's own scorer (every detector is still learning there).
    """
    reward = [-w.fp] * n
    where = [-1] * n
    prev: tuple[int, int] | None = None
    bounds = [*windows, (n, n)]
    cursor = 0
    for k, (s, e) in enumerate(bounds):
        for i in range(cursor, min(s, n)):
            if prev is not None:
                ps, pe = prev
                reward[i] = w.fp * nab_sigma((i - pe) / (pe - ps + 1))
        if s >= n:
            break
        length = e - s + 1
        for i in range(s, e + 1):
            reward[i] = w.tp * nab_sigma(-(e - i + 1) / length)
            where[i] = k
        prev = (s, e)
        cursor = e + 1
    for i in range(min(nab_probation(n), n)):
        reward[i] = 0.0
        where[i] = -1
    return reward, where


def nab_file_score(
    scores: Sequence[float], windows: Sequence[tuple[int, int]], threshold: float, w: NabWeights
) -> float:
    """Raw NAB score of one file: a record is a detection when its score is ≥ `threshold`.

    `windows` are inclusive ``(first, last)`` record indices, sorted and disjoint.

    >>> w = NabWeights()
    >>> round(nab_file_score([0, 0, 1, 0, 0, 0], [(2, 4)], 0.5, w), 4)  # detected at the window's start
    0.9866
    >>> nab_file_score([0] * 6, [(2, 4)], 0.5, w)  # missed
    -1.0
    """
    reward, where = _file_terms(len(scores), windows, w)
    total = 0.0
    hit: set[int] = set()
    for i, s in enumerate(scores):
        if s < threshold:
            continue
        k = where[i]
        if k < 0:
            total += reward[i]
        elif k not in hit:
            hit.add(k)
            total += reward[i]
    return total - w.fn * (len(windows) - len(hit))


def labels_to_windows(truth: Sequence[int]) -> list[tuple[int, int]]:
    """Inclusive ``(first, last)`` indices of the runs of non-zero labels.

    >>> labels_to_windows([0, 1, 1, 0, 0, 1])
    [(1, 2), (5, 5)]

    """
    out: list[tuple[int, int]] = []
    start: int | None = None
    for i, t in enumerate(truth):
        if t and start is None:
            start = i
        elif not t and start is not None:
            out.append((start, i - 1))
            start = None
    if start is not None:
        out.append((start, len(truth) - 1))
    return out


def nab_score(
    files: Sequence[tuple[Sequence[float], Sequence[tuple[int, int]]]], w: NabWeights, threshold: float = 0.5
) -> float:
    """Normalised NAB score (0 null, 100 perfect) of detections at a given threshold, summed over files.

    >>> nab_score([([0, 0, 1, 0, 0], [(2, 4)])], NabWeights())
    100.0
    >>> nab_score([([0, 0, 0, 0, 0], [(2, 4)])], NabWeights())
    0.0

    """
    raw = null = perfect = 0.0
    for scores, windows in files:
        raw += nab_file_score(scores, windows, threshold, w)
        null -= w.fn * len(windows)
        reward, _ = _file_terms(len(scores), windows, w)
        perfect += sum(reward[s] for s, _ in windows)
    span = perfect - null
    return round(100.0 * (raw - null) / span, 2) if span > 0 else 0.0
