"""Cost of the streaming models per sensor value, and checkpoint size per equipment.

Feeds simulated pump-jack snapshots (the sensors of ``schema.equipment.SENSORS_BY_TYPE``: a daily cycle
inside each normal range, correlated noise, a rare spike) through `EquipmentState.learn_many` in batches,
as the equipment actors do, and measures microseconds per sensor value. Baselines in the same run, on the
same snapshots: bare River ``anomaly.HalfSpaceTrees`` (default settings, ``score_one`` + ``learn_one`` per
snapshot) and River ``stats.EWMean`` + ``stats.EWVar`` per sensor value. Checkpoint bytes are
``len(EquipmentState.to_bytes())`` after 1k and 10k snapshots (it does not grow with the snapshots), and
for 1 to 40 sensors (it grows linearly with the sensors: ``per_sensor`` bytes each), and after 11 days at one
snapshot a minute (the failure model's pending examples, one an hour, level off after horizon + label delay).
For that steady state, the checkpoint's bytes and its write and read times against a pickle of the same
object (what checkpoints were before the versioned format). Prints JSON.

    python -m bench.models [--snapshots 10000] [--batch 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from river import anomaly, stats

from models import EquipmentState, Snapshot
from schema.equipment import SENSORS_BY_TYPE, EquipmentType

DAY_SECONDS = 86_400.0


def pump_jack_snapshots(n: int, *, seed: int = 0, interval_s: float = 1.0) -> list[Snapshot]:
    """`n` deterministic pump-jack snapshots, one every `interval_s` seconds."""
    rng = random.Random(seed)
    specs = SENSORS_BY_TYPE[EquipmentType.PUMP_JACK]
    t0 = datetime(2026, 11, 22, tzinfo=UTC)
    out = []
    for i in range(n):
        t = i * interval_s
        day = math.sin(2.0 * math.pi * t / DAY_SECONDS)
        common = rng.gauss(0.0, 1.0)
        values = {}
        for spec in specs:
            mid = 0.5 * (spec.low + spec.high)
            span = spec.high - spec.low
            v = mid + 0.15 * span * day + 0.03 * span * (0.7 * common + 0.3 * rng.gauss(0.0, 1.0))
            if rng.random() < 0.001:
                v += 0.6 * span
            values[spec.name] = round(v, 2)
        out.append(Snapshot(t0 + timedelta(seconds=t), values))
    return out


def _best(run: Callable[[], float], repeat: int) -> float:
    return min(run() for _ in range(repeat))


def time_equipment(snaps: list[Snapshot], batch: int) -> float:
    eq = EquipmentState("PJ-0001", "pump_jack", seed=1)
    t0 = time.perf_counter()
    for i in range(0, len(snaps), batch):
        eq.learn_many(snaps[i : i + batch])
    return time.perf_counter() - t0


def time_hst(snaps: list[Snapshot]) -> float:
    model = anomaly.HalfSpaceTrees()
    t0 = time.perf_counter()
    for s in snaps:
        x = s.values
        model.score_one(x)
        model.learn_one(x)
    return time.perf_counter() - t0


def time_ew(snaps: list[Snapshot]) -> float:
    means: dict[str, stats.EWMean] = {}
    variances: dict[str, stats.EWVar] = {}
    t0 = time.perf_counter()
    for s in snaps:
        for k, v in s.values.items():
            m = means.get(k)
            if m is None:
                m = means[k] = stats.EWMean(fading_factor=0.01)
                variances[k] = stats.EWVar(fading_factor=0.01)
            m.update(v)
            variances[k].update(v)
    return time.perf_counter() - t0


def checkpoint_bytes(snaps: list[Snapshot], at: list[int], batch: int) -> dict[str, int]:
    eq = EquipmentState("PJ-0001", "pump_jack", seed=1)
    out = {}
    done = 0
    for n in sorted(at):
        chunk = snaps[done:n]
        for i in range(0, len(chunk), batch):
            eq.learn_many(chunk[i : i + batch])
        done = n
        out[f"after_{n}_snapshots"] = len(eq.to_bytes())
    return out


def steady_state(days: int = 11, interval_s: float = 60.0) -> EquipmentState:
    """A pump jack after `days` of one snapshot a minute: past the failure model's horizon and label delay
    (10 days), the pending examples stop growing, so this is the steady state of a checkpoint."""
    snaps = pump_jack_snapshots(int(days * DAY_SECONDS / interval_s), interval_s=interval_s)
    eq = EquipmentState("PJ-0001", "pump_jack", seed=1)
    for i in range(0, len(snaps), 500):
        eq.learn_many(snaps[i : i + 500])
    return eq


def steady_state_bytes(eq: EquipmentState, days: int = 11) -> dict[str, int]:
    """Checkpoint bytes of `steady_state`."""
    return {"days": days, "bytes": len(eq.to_bytes()), "pending_failure_examples": eq.failure.pending}


def checkpoint_vs_pickle(eq: EquipmentState, repeat: int) -> dict[str, Any]:
    """Size and milliseconds to write and to read a checkpoint of `eq` (a versioned document, `models.state`),
    against the pickle of the whole object that checkpoints were before (the baseline, same state, same run)."""
    document = eq.to_bytes()
    old = pickle.dumps(eq, protocol=pickle.HIGHEST_PROTOCOL)

    def ms(run: Callable[[], object]) -> float:
        def once() -> float:
            t0 = time.perf_counter()
            run()
            return time.perf_counter() - t0

        return round(1e3 * _best(once, repeat), 2)

    return {
        "bytes": {"document": len(document), "pickle": len(old)},
        "encode_ms": {"document": ms(eq.to_bytes), "pickle": ms(lambda: pickle.dumps(eq, protocol=5))},
        "decode_ms": {"document": ms(lambda: EquipmentState.from_bytes(document)),
                      "pickle": ms(lambda: pickle.loads(old))},  # noqa: S301  our own bytes, just made
    }


def bytes_by_sensors(counts: list[int], snapshots: int = 3_000, seed: int = 0) -> dict[str, Any]:
    """Checkpoint bytes of an equipment with ``k`` sensors after `snapshots` snapshots, and the bytes per sensor
    fitted by least squares (``bytes ~ fixed + per_sensor * k``): how memory per equipment grows."""
    rng = random.Random(seed)
    t0 = datetime(2026, 11, 22, tzinfo=UTC)
    sizes: dict[int, int] = {}
    for k in counts:
        eq = EquipmentState("EQ", "other", seed=1)
        snaps = [
            Snapshot(t0 + timedelta(seconds=i), {f"s{j}": 100.0 + j + rng.gauss(0.0, 1.0) for j in range(k)})
            for i in range(snapshots)
        ]
        for i in range(0, len(snaps), 100):
            eq.learn_many(snaps[i : i + 100])
        sizes[k] = len(eq.to_bytes())
    n = len(counts)
    mx, my = sum(counts) / n, sum(sizes.values()) / n
    slope = sum((k - mx) * (sizes[k] - my) for k in counts) / sum((k - mx) ** 2 for k in counts)
    return {
        "snapshots": snapshots,
        "bytes": {str(k): v for k, v in sizes.items()},
        "per_sensor": round(slope),
        "fixed": round(my - slope * mx),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.models", description=__doc__.split("\n")[0])
    parser.add_argument("--snapshots", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100, help="snapshots per learn_many call")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    snaps = pump_jack_snapshots(args.snapshots, seed=args.seed)
    n_values = sum(len(s.values) for s in snaps)
    us = {
        "equipment_state_learn_many": _best(lambda: time_equipment(snaps, args.batch), args.repeat),
        "river_half_space_trees": _best(lambda: time_hst(snaps), args.repeat),
        "river_ewmean_ewvar": _best(lambda: time_ew(snaps), args.repeat),
    }
    per_value = {k: round(1e6 * v / n_values, 3) for k, v in us.items()}
    steady = steady_state()
    ours = per_value["equipment_state_learn_many"]
    result: dict[str, Any] = {
        "benchmark": "models",
        "equipment_type": "pump_jack",
        "sensors": len(SENSORS_BY_TYPE[EquipmentType.PUMP_JACK]),
        "snapshots": args.snapshots,
        "sensor_values": n_values,
        "batch": args.batch,
        "us_per_sensor_value": per_value,
        "us_per_snapshot": {k: round(1e6 * v / len(snaps), 2) for k, v in us.items()},
        "ratio_equipment_state_vs": {
            "river_half_space_trees": round(ours / per_value["river_half_space_trees"], 2),
            "river_ewmean_ewvar": round(ours / per_value["river_ewmean_ewvar"], 2),
        },
        "checkpoint_bytes": checkpoint_bytes(snaps, [min(1_000, len(snaps)), len(snaps)], args.batch),
        "checkpoint_bytes_by_sensors": bytes_by_sensors([1, 5, 10, 20, 40]),
        "checkpoint_bytes_steady_state": steady_state_bytes(steady),
        "checkpoint_vs_pickle_steady_state": checkpoint_vs_pickle(steady, args.repeat),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
