"""Replay: snapshots through a fresh `EquipmentState`, one at a time, returning per-row scores and alerts.

The pure core of backtesting (``wellpulse backtest`` over a CSV, and the REST endpoint over a stored
range): exactly the code the equipment actors run, no look-ahead (row ``i``'s result depends on rows
``0..i`` only), no IO.

"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from models.equipment import EQUIPMENT_KEY, MULTIVARIATE_KEY, EquipmentState
from models.events import AlertChange, Snapshot, severity_rank
from models.rules import Rule, Sensitivity

__all__ = ["ReplayRow", "replay", "replay_iter"]


@dataclass(frozen=True, slots=True)
class ReplayRow:
    """What one replayed snapshot gave.

    Parameters
    ----------
    snapshot
        The input snapshot.
    learned
        False when the snapshot was skipped (not after the previous one's timestamp).
    anomaly_score
        What the anomaly rule read for this snapshot, in [0, 1]: the maximum of the per-sensor, multivariate
        and equipment scores, computed before the snapshot was learned (0.0 when skipped).
    alert
        1 while an alert of severity warning or critical is open after this snapshot, else 0.
    changes
        The alert changes this snapshot caused (drift events included).
    sensor_scores
        Per-sensor anomaly scores of this snapshot.
    novelty
        The equipment's calibrated novelty score (`EquipmentState.equipment_novelty`): high where an incident
        starts or gets worse, 1.0 at a level a sensor never visited; the score a threshold is put on when the
        detector is benchmarked (0.0 when skipped).

    """

    snapshot: Snapshot
    learned: bool
    anomaly_score: float
    alert: int
    changes: tuple[AlertChange, ...] = ()
    sensor_scores: dict[str, float] = field(default_factory=dict)
    novelty: float = 0.0


def replay_iter(snapshots: Iterable[Snapshot], state: EquipmentState) -> Iterator[ReplayRow]:
    """Feed `snapshots` one at a time through `state` (changed in place), yielding one row per snapshot."""
    warning = severity_rank("warning")
    for snap in snapshots:
        before = state.samples_seen
        changes = state.learn_many([snap])
        learned = state.samples_seen > before
        scores: dict[str, float] = {}
        score = 0.0
        if learned:
            last = state.last_scores
            scores = {k: last.get(k, 0.0) for k in snap.values if k in last}
            score = max([last.get(MULTIVARIATE_KEY, 0.0), last.get(EQUIPMENT_KEY, 0.0), *scores.values()])
            score = 0.0 if score < 0.0 else 1.0 if score > 1.0 else score
        alert = 1 if any(severity_rank(s) >= warning for s in state.alerts.open_alerts().values()) else 0
        novelty = state.equipment_novelty if learned else 0.0
        yield ReplayRow(snap, learned, score, alert, tuple(changes), scores, novelty)


def replay(
    snapshots: Iterable[Snapshot],
    *,
    equipment_id: str = "replay",
    equipment_type: str = "other",
    rules: Sequence[Rule] | None = None,
    sensitivity: Sensitivity = "medium",
    seed: int = 0,
) -> list[ReplayRow]:
    """Replay `snapshots` through a fresh `EquipmentState`; one `ReplayRow` per snapshot, in order.

    Examples
    --------
    >>> from datetime import UTC, datetime, timedelta
    >>> t0 = datetime(2026, 11, 22, tzinfo=UTC)
    >>> snaps = [Snapshot(t0 + timedelta(seconds=i), {"p": 100.0 + (i % 7)}) for i in range(300)]
    >>> snaps += [Snapshot(t0 + timedelta(seconds=300 + i), {"p": 400.0}) for i in range(5)]
    >>> rows = replay(snaps, equipment_type="pump_jack")
    >>> len(rows), max(r.anomaly_score for r in rows[:300]) < 0.99, rows[-1].anomaly_score
    (305, True, 1.0)
    >>> [i for i, r in enumerate(rows) if r.alert][:1]  # the anomaly rule needs 3 snapshots in a row
    [302]

    """
    state = EquipmentState(equipment_id, equipment_type, rules, seed=seed, sensitivity=sensitivity)
    return list(replay_iter(snapshots, state))
