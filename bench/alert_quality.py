"""Alert quality on a known truth: precision, recall and time to detect per fault kind, false alerts on healthy
equipment, against a plain fixed-threshold baseline in the same run. Prints JSON.

The simulator (``sim.FeedSimulator``, the demo feed's generator) runs ``--per-type`` equipment of
every type for ``--warmup-hours`` plus ``--hours`` of simulated time, polled every ``--poll-seconds``, with its
normal behaviour on (daily cycles, separator dump cycles, tank fills and hauls, pump-off cycles, operator
set-point changes, noise, late data). Faults are planned from ``--seed`` (at most one per equipment, inside the
measured period) and their ground truth is what the simulator recorded when it injected them. Every snapshot
goes through ``models.EquipmentState`` with ``models.rules.default_rules`` (what the actors run, see
``actors.equipment.build_rules``), and through the baseline (``ThresholdRule`` at the normal range's limits of
each sensor, held 30 s), faster than real time, in ``--workers`` processes.

Warm-up: ``--warmup-hours`` defaults to two simulated days. The drift detectors measure a sensor's level
against its time-of-day profile from its third day (``models.drift.LevelDriftDetector``; before, they only
signal large levels never seen), and the anomaly models learn their normal meanwhile: faults start and counting
begins after the warm-up. The 72 simulated hours of the default run took about 17 minutes of one core
(``--workers`` splits the fleet across processes).

Counting: every alert opening in the measured period counts. An opening matches a fault when it is on that
equipment, between the fault's start and its end plus ``--grace-minutes``, and, when the rule names a sensor
(thresholds, drift, stuck sensor), that sensor is one the fault moves. Openings during the warm-up are
reported but not counted (the models are learning the equipment's normal then). Each false opening is also
put down to the latest normal event of its equipment within 30 minutes before it (the simulator's
``normal_events``: an operator's set-point change, a pump stop or start, a late delivery) or to none
(``false_openings_by_cause``, per rule and equipment type).

``--full-stack`` adds one short run through the real stack (embedded NATS and PostgreSQL, Ray actors, as
``wellpulse up`` starts them): the same feed published to JetStream, and the alert openings the actors
committed compared with the pure run's (the stale-data rule is left out of that comparison: it follows the
wall clock, and the short run's readings are in the past).

    python -m bench.alert_quality [--per-type 50] [--hours 24] [--warmup-hours 48] [--seed 11] [--full-stack]

Tuned on seeds 11 and 12; seeds 13 and 14 are held out (report them as such).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from models import EquipmentState, Observation, Snapshot, ThresholdRule, default_rules
from models.equipment import DRIFT_PREFIX
from schema.equipment import ID_PREFIX_BY_TYPE, SENSORS_BY_TYPE, EquipmentType
from sim import (
    EquipmentSpec,
    Fault,
    FaultKind,
    FeedSimulator,
    fault_fits,
)

TYPES = (EquipmentType.PUMP_JACK, EquipmentType.COMPRESSOR, EquipmentType.SEPARATOR, EquipmentType.TANK_BATTERY,
         EquipmentType.METER)
KINDS = (FaultKind.SPIKE, FaultKind.DRIFT, FaultKind.STUCK, FaultKind.COMMS_LOSS, FaultKind.BEARING_WEAR,
         FaultKind.VALVE_LEAK)
START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
DRIFT_SIGMA_BAR = 3.0
DRIFT_DETECT_BAR_S = 2 * 3600.0
CAUSE_WINDOW = timedelta(minutes=30)  # a false opening this soon after a normal event is put down to it
# The drift detectors measure against each sensor's time-of-day profile from its third day (before that they
# are conservative, see models.drift.LevelDriftDetector): the measured period starts after two days.
DEFAULT_WARMUP_HOURS = 48.0


def fleet_of(per_type: int) -> list[EquipmentSpec]:
    """``per_type`` of every equipment type, ids numbered per type (``PJ-0001`` ... ``MTR-0050``)."""
    return [EquipmentSpec(f"{ID_PREFIX_BY_TYPE[t]}-{i:04d}", t) for t in TYPES for i in range(1, per_type + 1)]


def plan_faults(fleet: Sequence[EquipmentSpec], *, seed: int, per_kind: int, start: datetime,
                hours: float, grace: timedelta) -> list[Fault]:
    """``per_kind`` faults of every kind, each on its own equipment, inside ``[start, start + hours]`` with
    room for its grace period; drifts of 3 to 6 σ of the sensor's normal variation reached in 15 to 90 minutes."""
    rng = random.Random(f"alert-quality:{seed}")
    free = list(fleet)
    rng.shuffle(free)
    end = start + timedelta(hours=hours)
    faults: list[Fault] = []
    for kind in KINDS:
        for _ in range(per_kind):
            candidates = [e for e in free if fault_fits(kind, e)]
            if not candidates:
                break
            equipment = candidates[0]
            free.remove(equipment)
            sensor = rng.choice(equipment.sensors).name if kind in (FaultKind.SPIKE, FaultKind.DRIFT,
                                                                     FaultKind.STUCK) else None
            magnitude = ramp = None
            if kind is FaultKind.SPIKE:
                duration = None
            elif kind is FaultKind.DRIFT:
                duration = timedelta(hours=rng.uniform(3, 6))
                magnitude = rng.uniform(DRIFT_SIGMA_BAR, 6.0)
                ramp = timedelta(minutes=rng.uniform(15, 90))
            elif kind is FaultKind.STUCK:
                duration = timedelta(minutes=rng.uniform(20, 60))
            elif kind is FaultKind.COMMS_LOSS:
                duration = timedelta(minutes=rng.uniform(5, 20))
            else:
                duration = timedelta(hours=rng.uniform(3, 7))
            room = (end - start - (duration or timedelta(0)) - grace).total_seconds()
            at = start + timedelta(seconds=rng.uniform(0, max(room, 0.0)))
            faults.append(Fault(kind, equipment.equipment_id, sensor, at, duration, magnitude, ramp))
    return faults


def baseline_rules(equipment_type: EquipmentType) -> list[ThresholdRule]:
    """The baseline: a fixed threshold at each end of every sensor's normal range, held 30 s, 2 % hysteresis."""
    return [
        ThresholdRule(f"{s.name}_range", s.name, high=s.high, low=s.low, hysteresis=0.02 * (s.high - s.low),
                      for_seconds=30.0)
        for s in SENSORS_BY_TYPE[equipment_type]
    ]


def rule_sensors(rule_id: str, details: dict[str, Any]) -> list[str]:
    """Sensors an alert names (empty: an equipment-level rule such as anomaly or stale data)."""
    if rule_id.startswith(DRIFT_PREFIX):
        return [rule_id[len(DRIFT_PREFIX):]]
    if rule_id == "stuck_sensor":
        return [e["sensor"] for e in details.get("sensors", []) if isinstance(e, dict) and "sensor" in e]
    if rule_id in ("anomaly", "stale_data", "failure_risk"):
        return []
    sensor = details.get("sensor")
    return [sensor] if isinstance(sensor, str) else []


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat()


def run_chunk(fleet: Sequence[EquipmentSpec], faults: Sequence[Fault], seed: int, poll_s: float,
              total_hours: float) -> dict[str, Any]:
    """Simulate ``fleet`` with ``faults`` and run both rule sets; the openings and the simulator's truth."""
    sim = FeedSimulator(fleet, seed=seed)
    for fault in faults:
        sim.inject(fault)
    types = {e.equipment_id: e.equipment_type for e in fleet}
    states = {e.equipment_id: EquipmentState(e.equipment_id, e.equipment_type.value,
                                             default_rules(e.equipment_type.value)) for e in fleet}
    baseline = {e.equipment_id: baseline_rules(e.equipment_type) for e in fleet}
    active: dict[tuple[str, str], bool] = {}
    openings: list[dict[str, Any]] = []
    stopped_values = 0

    def record(system: str, eid: str, rule_id: str, ts: datetime, sensors: list[str]) -> None:
        openings.append({"system": system, "equipment_id": eid, "equipment_type": types[eid].value,
                         "rule_id": rule_id, "ts": _iso(ts), "sensors": sensors})

    ticks = int(total_hours * 3600 / poll_s)
    for k in range(ticks):
        now = START + timedelta(seconds=k * poll_s)
        for message in sim.next_messages(now):
            body = message.body
            eid = message.equipment_id
            snaps = body["readings"] if "readings" in body else [body]
            batch = [Snapshot(datetime.fromisoformat(s["ts"]), s["values"]) for s in snaps]
            for change in states[eid].learn_many(batch):
                if change.kind == "opened":
                    record("default", eid, change.rule_id, change.ts, rule_sensors(change.rule_id, change.details))
            for snap in batch:
                obs = Observation(snap.ts, snap.values)
                for rule in baseline[eid]:
                    verdict = rule.observe(obs)
                    if verdict is None:
                        continue
                    key = (eid, rule.rule_id)
                    if verdict[0] and not active.get(key):
                        record("baseline", eid, rule.rule_id, snap.ts, [rule.sensor])
                    active[key] = verdict[0]
        for eid, state in states.items():  # the actors' wall-clock tick (stale data), on simulated time
            for change in state.tick(now):
                if change.kind == "opened":
                    record("default", eid, change.rule_id, change.ts, rule_sensors(change.rule_id, change.details))
    for state in states.values():
        stopped_values += state.stopped_snapshots
    events = {e.equipment_id: [(_iso(ts), kind) for ts, kind in sim.normal_events(e.equipment_id)] for e in fleet}
    return {"openings": openings, "truth": sim.truth, "normal_events": events,
            "operating_changes": sum(s.operating_changes for s in states.values()),
            "stopped_snapshots": stopped_values}


def _end(record: dict[str, Any], poll_s: float) -> datetime:
    start = datetime.fromisoformat(record["start"])
    if record["end"] is None:  # a spike counted in readings
        return start + timedelta(seconds=poll_s * record.get("readings", 1))
    return datetime.fromisoformat(record["end"])


def false_cause(op: dict[str, Any], events: Sequence[tuple[str, str]]) -> str:
    """What a false opening follows: the latest normal event of its equipment (set-point change, pump stop or
    start, late delivery) within CAUSE_WINDOW before it, else its equipment type's "<type>: no normal event"."""
    ts = datetime.fromisoformat(op["ts"])
    cause = None
    for at, kind in events:
        t = datetime.fromisoformat(at)
        if ts - CAUSE_WINDOW <= t <= ts:
            cause = kind
    return f"{op.get('equipment_type', '?')}: {cause or 'no normal event'}"


def score(openings: Sequence[dict[str, Any]], truth: Sequence[dict[str, Any]], fleet: Sequence[EquipmentSpec], *,
          system: str, measured_from: datetime, measured_to: datetime, grace: timedelta,
          poll_s: float, normal_events: dict[str, list[tuple[str, str]]] | None = None) -> dict[str, Any]:
    """Precision, recall and time to detect per fault kind, and alerts on healthy equipment, for one system.

    Per kind, precision is the share of the openings on equipment with a fault of that kind that match it
    (each faulted equipment has one fault); ``overall.precision`` is the share of all openings that match a
    fault, healthy equipment included. With ``normal_events`` (the simulator's, per equipment), the false
    openings are also counted per rule by what they follow (`false_cause`).
    """
    by_eq: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in truth:
        by_eq[rec["equipment_id"]].append(rec)
    detected: dict[int, float] = {}
    index = {id(rec): i for i, rec in enumerate(truth)}
    matched_by_kind: dict[str, int] = defaultdict(int)
    false_by_kind: dict[str, int] = defaultdict(int)
    false_by_rule: dict[str, int] = defaultdict(int)
    false_by_cause: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    healthy_openings = 0
    counted = warmup = matched_total = 0
    for op in openings:
        if op["system"] != system:
            continue
        ts = datetime.fromisoformat(op["ts"])
        if ts < measured_from:
            warmup += 1
            continue
        if ts >= measured_to:
            continue
        counted += 1
        recs = by_eq.get(op["equipment_id"], [])
        hit = False
        for rec in recs:
            start = datetime.fromisoformat(rec["start"])
            if not start <= ts <= _end(rec, poll_s) + grace:
                continue
            if op["sensors"] and not set(op["sensors"]) & set(rec["sensors"]):
                continue
            hit = True
            i = index[id(rec)]
            delay = (ts - start).total_seconds()
            detected[i] = min(delay, detected.get(i, math.inf))
            matched_by_kind[rec["kind"]] += 1
        if hit:
            matched_total += 1
            continue
        false_by_rule[op["rule_id"]] += 1
        if normal_events is not None:
            false_by_cause[op["rule_id"]][false_cause(op, normal_events.get(op["equipment_id"], []))] += 1
        if recs:
            for rec in recs:
                false_by_kind[rec["kind"]] += 1
        else:
            healthy_openings += 1
    per_kind: dict[str, Any] = {}
    for kind in sorted({rec["kind"] for rec in truth}):
        idx = [i for i, rec in enumerate(truth) if rec["kind"] == kind]
        delays = [detected[i] for i in idx if i in detected]
        total_ops = matched_by_kind[kind] + false_by_kind[kind]
        per_kind[kind] = {
            "faults": len(idx),
            "detected": len(delays),
            "recall": round(len(delays) / len(idx), 3) if idx else None,
            "precision": round(matched_by_kind[kind] / total_ops, 3) if total_ops else None,
            "median_minutes_to_detect": round(statistics.median(delays) / 60.0, 1) if delays else None,
            "openings_matched": matched_by_kind[kind],
            "openings_false": false_by_kind[kind],
        }
    drifts = [i for i, rec in enumerate(truth)
              if rec["kind"] == "drift" and rec.get("magnitude_sigma", 0.0) >= DRIFT_SIGMA_BAR]
    within = [i for i in drifts if detected.get(i, math.inf) <= DRIFT_DETECT_BAR_S]
    faulted = {rec["equipment_id"] for rec in truth}
    healthy = [e for e in fleet if e.equipment_id not in faulted]
    days = (measured_to - measured_from).total_seconds() / 86_400.0
    return {
        "per_kind": per_kind,
        "overall": {
            "precision": round(matched_total / counted, 3) if counted else None,
            "recall": round(len(detected) / len(truth), 3) if truth else None,
            "alerts_per_healthy_equipment_day": round(healthy_openings / (len(healthy) * days), 3)
            if healthy and days > 0 else None,
            "openings": counted,
            "openings_matched": matched_total,
            "faults": len(truth),
            "faults_detected": len(detected),
            "healthy_equipment": len(healthy),
            "openings_on_healthy_equipment": healthy_openings,
            "drifts_3_sigma_or_more_detected_within_2h": f"{len(within)}/{len(drifts)}",
        },
        "false_openings_by_rule": dict(sorted(false_by_rule.items(), key=lambda kv: -kv[1])),
        **({"false_openings_by_cause": {rule: dict(sorted(c.items(), key=lambda kv: -kv[1]))
                                        for rule, c in false_by_cause.items()}} if normal_events is not None else {}),
        "openings_during_warmup": warmup,
    }


def run_pure(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark without servers: plan, simulate in ``--workers`` processes, score."""
    fleet = fleet_of(args.per_type)
    grace = timedelta(minutes=args.grace_minutes)
    measured_from = START + timedelta(hours=args.warmup_hours)
    measured_to = measured_from + timedelta(hours=args.hours)
    faults = plan_faults(fleet, seed=args.seed, per_kind=args.faults_per_kind, start=measured_from,
                         hours=args.hours, grace=grace)
    total_hours = args.warmup_hours + args.hours
    workers = max(1, min(args.workers, len(fleet)))
    chunks = [fleet[i::workers] for i in range(workers)]
    t0 = time.perf_counter()
    if workers == 1:
        parts = [run_chunk(fleet, faults, args.seed, args.poll_seconds, total_hours)]
    else:
        with ProcessPoolExecutor(workers) as pool:
            futures = []
            for chunk in chunks:
                ids = {e.equipment_id for e in chunk}
                futures.append(pool.submit(run_chunk, chunk, [f for f in faults if f.equipment_id in ids],
                                           args.seed, args.poll_seconds, total_hours))
            parts = [f.result() for f in futures]
    elapsed = time.perf_counter() - t0
    openings = [op for p in parts for op in p["openings"]]
    truth = [rec for p in parts for rec in p["truth"]]
    events = {eid: ev for p in parts for eid, ev in p["normal_events"].items()}
    common = {"measured_from": measured_from, "measured_to": measured_to, "grace": grace,
              "poll_s": args.poll_seconds, "normal_events": events}
    default = score(openings, truth, fleet, system="default", **common)
    baseline = score(openings, truth, fleet, system="baseline", **common)
    snapshots = len(fleet) * int(total_hours * 3600 / args.poll_seconds)
    return {
        "benchmark": "alert_quality",
        "setup": {
            "equipment": len(fleet), "per_type": args.per_type, "types": [t.value for t in TYPES],
            "simulated_hours": total_hours, "warmup_hours": args.warmup_hours, "measured_hours": args.hours,
            "warmup_note": "faults and counting start after the warm-up: the drift detectors measure against a "
                           "time-of-day profile from the sensor's third day, and are conservative before",
            "poll_seconds": args.poll_seconds, "seed": args.seed, "faults": len(truth),
            "faults_per_kind": args.faults_per_kind, "grace_minutes": args.grace_minutes,
            "operating_changes_rebaselined": sum(p["operating_changes"] for p in parts),
            "stopped_snapshots": sum(p["stopped_snapshots"] for p in parts),
            "snapshots": snapshots, "elapsed_s": round(elapsed, 1),
            "speed_vs_real_time": round(total_hours * 3600 / elapsed) if elapsed > 0 else None,
            "matching": "an opening matches a fault on the same equipment between its start and its end plus the "
                        "grace, and on one of the fault's sensors when the rule names a sensor",
        },
        **default,
        "baseline": {"rules": "ThresholdRule at each sensor's normal range limits, held 30 s, 2 % hysteresis",
                     **baseline},
        "bars": {"precision": 0.9, "recall": 0.9, "alerts_per_healthy_equipment_day": 0.2,
                 "drift_3_sigma_within_hours": 2},
        "truth_sample": truth[:2],
        "_openings": openings,
        "_truth": truth,
    }


# -- the real stack ---------------------------------------------------------------------------------


async def run_full_stack(args: argparse.Namespace) -> dict[str, Any]:
    """One short run through NATS, PostgreSQL and the Ray actors; its openings against the pure run's."""
    import asyncpg
    import nats
    import orjson

    from bench.common import new_tenant, start_stack
    from schema.subjects import tele_msg_id, tele_subject

    per_type, hours, poll_s = 1, args.full_stack_hours, args.poll_seconds
    fleet = fleet_of(per_type)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(hours=hours + 0.25)
    plan_start = start + timedelta(hours=hours / 2)
    faults = [
        Fault(FaultKind.SPIKE, "PJ-0001", "tubing_psi", plan_start),
        Fault(FaultKind.STUCK, "SEP-0001", "pressure_psi", plan_start, timedelta(minutes=20)),
        Fault(FaultKind.DRIFT, "MTR-0001", "flow_mcfd", plan_start, timedelta(hours=1), 6.0, timedelta(minutes=15)),
    ]
    sim = FeedSimulator(fleet, seed=args.seed)
    pure = {e.equipment_id: EquipmentState(e.equipment_id, e.equipment_type.value,
                                           default_rules(e.equipment_type.value)) for e in fleet}
    for fault in faults:
        sim.inject(fault)
    messages = []
    expected: set[tuple[str, str, str]] = set()
    ticks = int(hours * 3600 / poll_s)
    for k in range(ticks):
        for message in sim.next_messages(start + timedelta(seconds=k * poll_s)):
            messages.append(message)
            snaps = message.body["readings"] if "readings" in message.body else [message.body]
            for change in pure[message.equipment_id].learn_many(
                    [Snapshot(datetime.fromisoformat(s["ts"]), s["values"]) for s in snaps]):
                if change.kind == "opened":
                    expected.add((change.equipment_id, change.rule_id, _iso(change.ts)))
    stack = await asyncio.to_thread(start_stack, serve_http=False)
    try:
        tenant = new_tenant("quality")
        await stack.register_tenant(tenant, tenant, [(e.equipment_id, e.equipment_type.value, e.equipment_id)
                                                     for e in fleet])
        nc = await nats.connect(stack.settings.nats_url)
        js = nc.jetstream()
        t0 = time.perf_counter()
        for message in messages:
            await js.publish(tele_subject(tenant, message.equipment_id), orjson.dumps(message.body),
                             headers={"Nats-Msg-Id": tele_msg_id(tenant, message.msg_id)})
        await nc.close()
        conn = await asyncpg.connect(stack.settings.database_url)
        got: set[tuple[str, str, str]] = set()
        try:
            values = sum(m.values for m in messages)
            deadline = time.monotonic() + 300
            stable_since, last = time.monotonic(), -1
            while time.monotonic() < deadline:
                stored = await conn.fetchval("SELECT count(*) FROM readings WHERE tenant_id = $1", tenant)
                rows = await conn.fetch(
                    "SELECT equipment_id, rule_id, occurred_at FROM alert_events WHERE tenant_id = $1 "
                    "AND kind = 'opened'", tenant)
                if len(rows) != last:
                    last, stable_since = len(rows), time.monotonic()
                if stored >= values and time.monotonic() - stable_since > 10:
                    break
                await asyncio.sleep(1)
            got = {(r["equipment_id"], r["rule_id"], _iso(r["occurred_at"])) for r in rows}
        finally:
            await conn.close()
        elapsed = time.perf_counter() - t0
    finally:
        await asyncio.to_thread(stack.stop)

    def comparable(items: set[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
        return {i for i in items if i[1] != "stale_data"}

    exp, act = comparable(expected), comparable(got)
    return {
        "equipment": len(fleet), "simulated_hours": hours, "messages": len(messages),
        "readings": sum(m.values for m in messages), "elapsed_s": round(elapsed, 1),
        "faults": [f.kind.value for f in faults],
        "openings_pure": len(exp), "openings_stack": len(act), "same_openings": exp == act,
        "only_pure": sorted(exp - act)[:10], "only_stack": sorted(act - exp)[:10],
        "stale_data_openings_stack": len(got) - len(act),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from bench.common import emit

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-type", type=int, default=50, help="equipment of every type")
    parser.add_argument("--hours", type=float, default=24.0, help="measured simulated hours")
    parser.add_argument("--warmup-hours", type=float, default=DEFAULT_WARMUP_HOURS,
                        help="simulated hours before faults and counting (two days: the drift detectors' daily "
                             "profiles are ready then)")
    parser.add_argument("--poll-seconds", type=float, default=10.0, help="SCADA poll interval (simulated)")
    parser.add_argument("--faults-per-kind", type=int, default=12)
    parser.add_argument("--grace-minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--full-stack", action="store_true", help="also one short run through the real stack")
    parser.add_argument("--full-stack-hours", type=float, default=2.0)
    args = parser.parse_args(argv)
    result = run_pure(args)
    result.pop("_openings")
    result.pop("_truth")
    if args.full_stack:
        result["full_stack"] = asyncio.run(run_full_stack(args))
    emit(result)
    return result


if __name__ == "__main__":
    main()
