"""Tests of the SCADA feed simulator: pure generation first, then one real NATS JetStream run.

The pure tests pin the properties the rest of the pipeline relies on (fault-free data stays in range,
each fault has the signature a detector is supposed to find, every body passes the ingest contract);
the integration test checks the pacing and the publishing against a real server, because a mocked
JetStream would not show dedup headers, acks or stream configuration going wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cli.simulate import add_simulate_arguments, simulate_command
from schema.equipment import SENSORS_BY_TYPE, EquipmentType
from schema.ids import InvalidIdentifier
from schema.subjects import simctl_subject, simctl_truth_subject
from schema.telemetry import parse_telemetry
from sim import (
    EquipmentSpec,
    Fault,
    FaultKind,
    FaultSchedule,
    FeedSimulator,
    MessageBatcher,
    NormalBehaviour,
    demo_fleet,
    ensure_telemetry_stream,
    format_ts,
    parse_fault_spec,
    run_simulation,
    snapshot_interval,
)
from sim import feed as sim_feed
from sim.faults import SPIKE_DEFAULT_READINGS
from sim.fleet import MIN_SNAPSHOT_INTERVAL_S
from tests.helpers import wait_for

pytestmark = pytest.mark.fast  # no Ray, no Serve: `./wp test -m fast`

T0 = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
SPEC = {(t, s.name): s for t, specs in SENSORS_BY_TYPE.items() for s in specs}


def run_ticks(
    sim: FeedSimulator, ticks: int, step_s: float = 1.0, start: datetime = T0
) -> list[list[dict[str, Any]]]:
    """Bodies per tick, so tests can talk about "the tick at t=5 s"."""
    return [sim.next_snapshots(start + timedelta(seconds=i * step_s)) for i in range(ticks)]


def live(bodies: list[dict[str, Any]], equipment_id: str) -> dict[str, Any] | None:
    """The live (single-snapshot) body of one equipment in one tick, if it reported."""
    return next((b for b in bodies if b.get("equipment_id") == equipment_id), None)


def sensor_spec(fleet: list[EquipmentSpec], equipment_id: str, sensor: str) -> Any:
    kind = next(e.equipment_type for e in fleet if e.equipment_id == equipment_id)
    return SPEC[(kind, sensor)]


# ---------------------------------------------------------------------------------------------------
# Fleet and pacing
# ---------------------------------------------------------------------------------------------------


def test_demo_fleet_mix_and_ids() -> None:
    fleet = demo_fleet(100)
    counts = {t: sum(e.equipment_type is t for e in fleet) for t in EquipmentType}
    assert counts == {
        EquipmentType.PUMP_JACK: 40,
        EquipmentType.COMPRESSOR: 20,
        EquipmentType.SEPARATOR: 15,
        EquipmentType.TANK_BATTERY: 15,
        EquipmentType.METER: 10,
        EquipmentType.OTHER: 0,
    }
    assert [e.equipment_id for e in fleet[:3]] == ["PJ-0001", "CMP-0002", "SEP-0003"]
    assert len({e.equipment_id for e in fleet}) == 100
    # A small fleet is already a mix, not ten pump jacks.
    assert len({e.equipment_type for e in demo_fleet(10)}) == 5


def test_snapshot_interval_matches_rate() -> None:
    fleet = demo_fleet(50)
    values = sum(len(e.sensors) for e in fleet)
    assert snapshot_interval(fleet, 2000.0) == pytest.approx(values / 2000.0)
    assert snapshot_interval(fleet, 1e9) == MIN_SNAPSHOT_INTERVAL_S
    with pytest.raises(ValueError):
        snapshot_interval(fleet, 0)


# ---------------------------------------------------------------------------------------------------
# Generation without faults
# ---------------------------------------------------------------------------------------------------


def test_same_seed_same_feed_and_other_seed_differs() -> None:
    def feed(seed: int) -> list[list[dict[str, Any]]]:
        sim = FeedSimulator(demo_fleet(12), seed=seed, schedule=FaultSchedule(5, seed=seed))
        return run_ticks(sim, 60)

    assert feed(7) == feed(7)
    assert feed(7) != feed(8)


def test_values_stay_in_range_over_a_day_without_faults() -> None:
    fleet = demo_fleet(20)
    sim = FeedSimulator(fleet, seed=3, normal=NormalBehaviour.none())
    ticks = run_ticks(sim, 24 * 60 * 2, step_s=30.0)  # a full daily cycle and several tank hauls
    for bodies in ticks:
        assert len(bodies) == len(fleet)
        for body in bodies:
            kind = next(e.equipment_type for e in fleet if e.equipment_id == body["equipment_id"])
            assert set(body["values"]) == {s.name for s in SENSORS_BY_TYPE[kind]}
            for name, value in body["values"].items():
                spec = SPEC[(kind, name)]
                assert spec.low <= value <= spec.high, (body, name)


def test_snapshot_format_is_json_ready_rfc3339_ms_z() -> None:
    sim = FeedSimulator(demo_fleet(3))
    body = sim.next_snapshots(datetime(2026, 11, 22, 6, 0, 0, 250_999, tzinfo=UTC))[0]
    assert body["ts"] == "2026-11-22T06:00:00.250Z"
    assert json.loads(json.dumps(body)) == body
    with pytest.raises(ValueError):
        sim.next_snapshots(datetime(2026, 11, 22, 6, 0, 0, 250_001, tzinfo=UTC))  # same millisecond
    with pytest.raises(ValueError):
        sim.next_snapshots(datetime(2026, 11, 22, 7))  # naive


def test_pump_jack_current_and_rod_load_follow_strokes() -> None:
    sim = FeedSimulator([EquipmentSpec("PJ-0001", EquipmentType.PUMP_JACK)], seed=11)
    rows = [bodies[0]["values"] for bodies in run_ticks(sim, 3000)]

    def corr(a: str, b: str) -> float:
        xs, ys = [r[a] for r in rows], [r[b] for r in rows]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
        return cov / math.sqrt(sum((x - mx) ** 2 for x in xs) * sum((y - my) ** 2 for y in ys))

    assert corr("strokes_per_minute", "motor_current_a") > 0.7
    assert corr("strokes_per_minute", "polished_rod_load_lbf") > 0.5


def test_tank_level_ramps_up_and_drops_when_hauled() -> None:
    sim = FeedSimulator([EquipmentSpec("TNK-0001", EquipmentType.TANK_BATTERY)], seed=5)
    levels = [bodies[0]["values"]["level_ft"] for bodies in run_ticks(sim, 12 * 60, step_s=60.0)]
    rises = sum(b > a for a, b in itertools.pairwise(levels))
    assert rises > 0.6 * len(levels)  # mostly filling
    # A haul: more than 8 ft gone within half an hour, which filling plus noise never does.
    assert any(levels[i] - min(levels[i : i + 30]) > 8.0 for i in range(len(levels) - 30))


# ---------------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------------


def test_spike_is_a_few_readings_far_above_range() -> None:
    fleet = demo_fleet(3)
    sim = FeedSimulator(fleet, seed=1)
    sim.inject(Fault(FaultKind.SPIKE, "PJ-0001", "tubing_psi", start=timedelta(seconds=3)))
    spec = sensor_spec(fleet, "PJ-0001", "tubing_psi")
    span = spec.high - spec.low
    values = [live(bodies, "PJ-0001")["values"]["tubing_psi"] for bodies in run_ticks(sim, 12)]  # type: ignore[index]
    spiked = [i for i, v in enumerate(values) if v > spec.high]
    assert spiked == [3, 4, 5]
    assert all(spec.high + 3 * span <= values[i] <= spec.high + 6 * span for i in spiked)
    assert all(spec.low <= v <= spec.high for i, v in enumerate(values) if i not in spiked)


def test_drift_moves_linearly_out_of_range_then_recovers() -> None:
    fleet = demo_fleet(3)
    spec = sensor_spec(fleet, "CMP-0002", "discharge_temp_f")
    span = spec.high - spec.low
    baseline = run_ticks(FeedSimulator(fleet, seed=2), 130)
    sim = FeedSimulator(fleet, seed=2)
    sim.inject(
        Fault(FaultKind.DRIFT, "CMP-0002", "discharge_temp_f", timedelta(seconds=10), timedelta(seconds=100))
    )
    drifted = run_ticks(sim, 130)

    def temp(ticks: list[list[dict[str, Any]]], i: int) -> float:
        return live(ticks[i], "CMP-0002")["values"]["discharge_temp_f"]  # type: ignore[index]

    for i in range(130):
        expected = 1.25 * span * (i - 10) / 100 if 10 <= i < 110 else 0.0
        assert temp(drifted, i) - temp(baseline, i) == pytest.approx(expected, abs=0.01)
    assert temp(drifted, 109) > spec.high
    # Only the faulted sensor and equipment changed.
    assert baseline[50][0] == drifted[50][0]


def test_stuck_sensor_repeats_its_last_value_exactly() -> None:
    fleet = demo_fleet(3)
    sim = FeedSimulator(fleet, seed=4)
    sim.inject(
        Fault(FaultKind.STUCK, "SEP-0003", "pressure_psi", timedelta(seconds=5), timedelta(seconds=20))
    )
    ticks = run_ticks(sim, 40)
    values = [live(b, "SEP-0003")["values"]["pressure_psi"] for b in ticks]  # type: ignore[index]
    assert values[5:25] == [values[4]] * 20
    assert len(set(values[25:])) > 5  # moving again
    assert len(set(values[:5])) > 1


def test_comms_loss_sends_nothing_during_the_outage() -> None:
    fleet = demo_fleet(4)
    sim = FeedSimulator(fleet, seed=5)
    sim.inject(
        Fault(FaultKind.COMMS_LOSS, "PJ-0004", start=timedelta(seconds=3), duration=timedelta(seconds=4))
    )
    ticks = run_ticks(sim, 10)
    silent = [i for i, bodies in enumerate(ticks) if live(bodies, "PJ-0004") is None]
    assert silent == [3, 4, 5, 6]
    assert all(len(bodies) == (3 if i in silent else 4) for i, bodies in enumerate(ticks))
    assert not any("readings" in b for bodies in ticks for b in bodies)  # nothing resent later


def test_late_batch_resends_held_readings_at_once_in_order() -> None:
    fleet = demo_fleet(3)
    sim = FeedSimulator(fleet, seed=6)
    sim.inject(
        Fault(FaultKind.LATE_BATCH, "PJ-0001", start=timedelta(seconds=5), duration=timedelta(seconds=10))
    )
    ticks = run_ticks(sim, 20)
    assert [i for i, b in enumerate(ticks) if live(b, "PJ-0001") is None] == list(range(5, 15))
    batches = [(i, b) for i, bodies in enumerate(ticks) for b in bodies if "readings" in b]
    assert len(batches) == 1
    tick, batch = batches[0]
    assert tick == 15  # released when the link comes back, before the live snapshot of that tick
    assert [k for k, b in enumerate(ticks[15]) if b.get("equipment_id") == "PJ-0001" or "readings" in b] == [
        0,
        1,
    ]
    held = batch["readings"]
    assert [r["ts"] for r in held] == [format_ts(T0 + timedelta(seconds=s)) for s in range(5, 15)]
    assert {r["equipment_id"] for r in held} == {"PJ-0001"}
    parsed = parse_telemetry(json.dumps(batch), now=T0 + timedelta(minutes=1))
    assert len(parsed.readings) == 10


def test_late_batch_splits_very_long_outages_and_flushes_on_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim_feed, "LATE_BATCH_MAX_READINGS", 4)
    sim = FeedSimulator(demo_fleet(2), seed=1)
    sim.inject(Fault(FaultKind.LATE_BATCH, "CMP-0002", duration=timedelta(seconds=100)))
    run_ticks(sim, 10)
    flushed = sim.flush()
    assert [len(m.body["readings"]) for m in flushed] == [4, 4, 2]
    assert flushed[0].msg_id == f"CMP-0002:{format_ts(T0)}"
    assert sim.flush() == []


def test_fault_validation() -> None:
    sim = FeedSimulator(demo_fleet(3))
    with pytest.raises(ValueError, match="unknown equipment"):
        sim.inject(Fault(FaultKind.SPIKE, "PJ-9999"))
    with pytest.raises(ValueError, match="no sensor"):
        sim.inject(Fault(FaultKind.STUCK, "PJ-0001", "level_ft"))
    with pytest.raises(ValueError):
        Fault("melt", "PJ-0001")  # type: ignore[arg-type]
    with pytest.raises(InvalidIdentifier):
        Fault(FaultKind.SPIKE, "PJ.0001")
    assert sim.faults_injected == 0


def test_fault_schedule_injects_every_n_seconds() -> None:
    sim = FeedSimulator(demo_fleet(10), seed=9, schedule=FaultSchedule(10, kinds=["stuck", "drift"], seed=9))
    run_ticks(sim, 100)
    assert sim.faults_injected == 9  # at t = 10, 20, ..., 90
    assert {f.kind for f in sim.active_faults} <= {FaultKind.STUCK, FaultKind.DRIFT}


def test_every_generated_message_passes_the_ingest_contract() -> None:
    sim = FeedSimulator(demo_fleet(15), seed=12, schedule=FaultSchedule(3, seed=12))
    batcher = MessageBatcher(4)
    seen: set[FaultKind] = set()
    inject = sim.inject

    def spy(fault: Fault) -> None:
        seen.add(fault.kind)
        inject(fault)

    sim.inject = spy  # type: ignore[method-assign]
    checked = 0
    last = T0
    for i in range(400):
        last = T0 + timedelta(seconds=i * 0.5)
        for message in sim.next_messages(last):
            for out in batcher.add(message):
                body = json.dumps(out.body).encode()
                batch = parse_telemetry(body, now=last)
                assert {r.equipment_id for r in batch.readings} == {out.equipment_id}
                assert out.values == sum(len(r.values) for r in batch.readings)
                checked += 1
    for out in [*sim.flush(), *batcher.flush()]:
        parse_telemetry(json.dumps(out.body), now=last)
    assert checked > 1000
    assert seen == set(FaultKind)  # every kind of fault was in the mix that had to parse


def test_message_batcher_groups_snapshots_of_one_equipment() -> None:
    sim = FeedSimulator(demo_fleet(1))
    batcher = MessageBatcher(3)
    out = [
        m for i in range(7) for msg in sim.next_messages(T0 + timedelta(seconds=i)) for m in batcher.add(msg)
    ]
    out += batcher.flush()
    assert [len(m.body["readings"]) for m in out] == [3, 3, 1]
    assert out[1].msg_id == f"PJ-0001:{format_ts(T0 + timedelta(seconds=3))}"
    with pytest.raises(ValueError):
        MessageBatcher(0)


# ---------------------------------------------------------------------------------------------------
# CLI parsing
# ---------------------------------------------------------------------------------------------------


def test_parse_fault_spec() -> None:
    assert parse_fault_spec("spike:PJ-0001") == Fault(FaultKind.SPIKE, "PJ-0001")
    assert parse_fault_spec("drift:CMP-0002:discharge_psi@30+120") == Fault(
        FaultKind.DRIFT, "CMP-0002", "discharge_psi", timedelta(seconds=30), timedelta(seconds=120)
    )
    assert parse_fault_spec("late_batch:TNK-0005@2.5") == Fault(
        FaultKind.LATE_BATCH, "TNK-0005", None, timedelta(seconds=2.5)
    )
    for bad in ["spike", "melt:PJ-0001", "spike:PJ-0001@x", "stuck:PJ-0001@5+0", "spike:PJ.1", "a:b:c:d"]:
        with pytest.raises(ValueError):
            parse_fault_spec(bad)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wellpulse simulate")
    add_simulate_arguments(parser)
    return parser


def test_cli_rejects_bad_tenant_and_faults_with_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        make_parser().parse_args(["--tenant", "Acme.Corp"])
    assert exc.value.code == 2
    assert "invalid tenant id" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        make_parser().parse_args(["--tenant", "acme", "--fault", "melt:PJ-0001"])
    assert exc.value.code == 2
    # Well-formed but naming equipment the fleet does not have: caught before connecting.
    args = make_parser().parse_args(["--tenant", "acme", "--equipment", "5", "--fault", "spike:PJ-0042"])
    assert simulate_command(args) == 2
    assert "unknown equipment" in capsys.readouterr().err
    args = make_parser().parse_args(["--tenant", "acme"])
    assert (args.equipment, args.rate, args.duration, args.fault_every, args.snapshots_per_message) == (
        50,
        2000.0,
        None,
        60.0,
        1,
    )


# ---------------------------------------------------------------------------------------------------
# Real NATS JetStream
# ---------------------------------------------------------------------------------------------------


async def _stream_messages(url: str, tenant: str) -> tuple[list[Any], Any]:
    """Every message of ``tenant`` in TELEMETRY (by sequence), and the stream's info."""
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("TELEMETRY")
        messages = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg("TELEMETRY", seq)
            if msg.subject.startswith(f"tele.{tenant}."):
                messages.append(msg)
        return messages, info
    finally:
        await nc.close()


async def test_run_simulation_publishes_paced_telemetry_to_jetstream(nats_url: str) -> None:
    duration, rate, equipment = 2.0, 1000.0, 10
    stats = await run_simulation(
        nats_url, "acme", equipment=equipment, rate=rate, duration=duration, fault_every=None
    )
    interval = snapshot_interval(demo_fleet(equipment), rate)
    expected = math.ceil(duration / interval) * equipment
    assert abs(stats.messages - expected) <= 0.15 * expected
    assert abs(stats.readings - rate * duration) <= 0.15 * rate * duration
    assert stats.acked == stats.messages and stats.publish_errors == 0
    assert 1.8 <= stats.elapsed_s <= 5.0

    messages, info = await _stream_messages(nats_url, "acme")
    assert info.config.subjects == ["tele.>"]
    assert info.config.duplicate_window == 120
    assert info.config.max_age == 7 * 24 * 3600
    assert abs(len(messages) - expected) <= 0.15 * expected
    assert len(messages) == stats.messages
    now = datetime.now(UTC)
    for msg in messages:
        batch = parse_telemetry(msg.data, now=now)
        reading = batch.readings[0]
        assert msg.subject == f"tele.acme.{reading.equipment_id}"
        assert msg.headers["Nats-Msg-Id"] == f"acme/{reading.equipment_id}:{format_ts(reading.ts)}"


async def test_two_tenants_feeding_the_same_equipment_at_the_same_instant_both_keep_their_message(
        nats_url: str) -> None:
    # JetStream deduplicates by Nats-Msg-Id across the one TELEMETRY stream that all tenants share: ids without the
    # tenant dropped most of the second tenant's feed as duplicates of the first's (bench.soak --tenants 10).
    import nats

    from sim.publish import SimulationStats, _Publisher

    body = {"equipment_id": "PJ-0001", "ts": format_ts(T0), "values": {"tubing_psi": 1.0}}
    message = sim_feed.SimMessage("PJ-0001", body, f"PJ-0001:{format_ts(T0)}", 1)
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_telemetry_stream(js)
        for tenant in (f"dedup-a-{uuid.uuid4().hex[:6]}", f"dedup-b-{uuid.uuid4().hex[:6]}"):
            stats = SimulationStats()
            publisher = _Publisher(nc, js, tenant, stats, asyncio.Event())
            await publisher.publish(message)
            await publisher.drain()
            assert (stats.acked, stats.duplicates) == (1, 0), tenant
            stored = await js.get_last_msg("TELEMETRY", f"tele.{tenant}.PJ-0001")
            assert stored.headers["Nats-Msg-Id"] == f"{tenant}/PJ-0001:{format_ts(T0)}"
    finally:
        await nc.close()


async def test_simctl_injects_faults_while_running_and_ignores_bad_ones(nats_url: str) -> None:
    import nats

    stop = asyncio.Event()
    task = asyncio.create_task(
        run_simulation(
            nats_url, "beta", equipment=3, rate=200.0, fault_every=None, stop=stop, ensure_stream=True
        )
    )
    nc = await nats.connect(nats_url)
    announced: list[dict[str, Any]] = []

    async def on_fault(msg: Any) -> None:
        announced.append(json.loads(msg.data))

    await nc.subscribe(simctl_truth_subject("beta"), cb=on_fault)
    try:
        good = b'{"equipment_id": "PJ-0001", "kind": "spike", "sensor": "tubing_psi"}'
        for _ in range(50):  # until the simulator has subscribed
            try:
                reply = await nc.request("simctl.beta", good, timeout=0.2)
                break
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                await asyncio.sleep(0.1)
        else:
            pytest.fail("simulator never answered on simctl.beta")
        assert json.loads(reply.data) == {"ok": True}
        for bad in [b"not json", b'{"equipment_id": "PJ-9999", "kind": "spike"}', b'{"kind": "melt"}']:
            reply = await nc.request("simctl.beta", bad, timeout=2)
            assert json.loads(reply.data)["ok"] is False
        await _received(announced, 1)
        # The fault's ground truth is announced beside the control subject (it starts at the next tick).
        assert [(r["kind"], r["sensor"]) for r in announced] == [("spike", "tubing_psi")]

        async def spiked() -> list[Any]:
            messages, _ = await _stream_messages(nats_url, "beta")
            high = SPEC[(EquipmentType.PUMP_JACK, "tubing_psi")].high
            spikes = [m for m in messages for r in parse_telemetry(m.data).readings
                      if r.values.get("tubing_psi", 0.0) > high]
            return spikes if len(spikes) >= SPIKE_DEFAULT_READINGS else []

        assert len(await wait_for(spiked, timeout=10)) == SPIKE_DEFAULT_READINGS
    finally:
        stop.set()
        await nc.close()
    stats = await asyncio.wait_for(task, timeout=15)
    assert stats.faults_injected == 1
    assert len(await spiked()) == SPIKE_DEFAULT_READINGS  # and none after


def test_simulate_command_prints_a_json_summary(nats_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = make_parser().parse_args(
        [
            *(
                "--nats",
                nats_url,
                "--tenant",
                "gamma",
                "--equipment",
                "4",
                "--rate",
                "200",
                "--duration",
                "0.5",
            ),
            *("--fault", "comms_loss:PJ-0001@0.1+0.2", "--snapshots-per-message", "2"),
        ]
    )
    assert simulate_command(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["tenant"] == "gamma"
    assert summary["faults_injected"] == 1
    assert summary["messages"] > 0 and summary["publish_errors"] == 0


# ---------------------------------------------------------------------------------------------------
# Ground truth and normal behaviour (issue 11)
# ---------------------------------------------------------------------------------------------------


def test_every_injected_fault_is_recorded_in_the_truth() -> None:
    fleet = demo_fleet(10)
    sim = FeedSimulator(fleet, seed=3, schedule=FaultSchedule(20, seed=3))
    sim.inject(Fault(FaultKind.STUCK, "SEP-0003", "pressure_psi", timedelta(seconds=5), timedelta(seconds=30)))
    sim.inject(Fault(FaultKind.BEARING_WEAR, "CMP-0002", start=timedelta(seconds=10), duration=timedelta(hours=2)))
    run_ticks(sim, 200)
    truth = sim.drain_truth()
    assert len(truth) == sim.faults_injected == 2 + 9  # two given, one scheduled every 20 s after the first
    assert sim.drain_truth() == [] and sim.truth == truth
    stuck = truth[0]
    assert stuck == {"kind": "stuck", "equipment_id": "SEP-0003", "equipment_type": "separator",
                     "sensor": "pressure_psi", "sensors": ["pressure_psi"],
                     "start": format_ts(T0 + timedelta(seconds=5)), "end": format_ts(T0 + timedelta(seconds=35))}
    wear = truth[1]
    assert wear["kind"] == "bearing_wear" and wear["sensor"] is None
    assert wear["sensors"] == ["vibration_mm_s", "discharge_temp_f"]
    for record in truth:
        json.dumps(record)
        assert record["equipment_id"] in {e.equipment_id for e in fleet}
        if record["kind"] == "spike":
            assert record["end"] is None and record["readings"] == SPIKE_DEFAULT_READINGS


def test_precursor_develops_over_hours_on_both_sensors() -> None:
    spec = EquipmentSpec("CMP-0001", EquipmentType.COMPRESSOR)
    clean = FeedSimulator([spec], seed=8, normal=NormalBehaviour.none())
    worn = FeedSimulator([spec], seed=8, normal=NormalBehaviour.none())
    worn.inject(Fault(FaultKind.BEARING_WEAR, "CMP-0001", start=timedelta(hours=2), duration=timedelta(hours=4)))
    diffs = []
    for k in range(7 * 60):
        ts = T0 + timedelta(minutes=k)
        a, b = clean.next_snapshots(ts)[0]["values"], worn.next_snapshots(ts)[0]["values"]
        diffs.append({n: b[n] - a[n] for n in a})
    sigma = worn.truth[0]
    assert sigma["start"] == format_ts(T0 + timedelta(hours=2))
    assert all(d["vibration_mm_s"] == 0 and d["discharge_temp_f"] == 0 for d in diffs[:120])
    vib = [d["vibration_mm_s"] for d in diffs[120:360]]
    assert vib[60] < vib[120] < vib[-1] and vib[-1] > 4 * vib[60]  # slow first, accelerating
    assert diffs[350]["discharge_temp_f"] > 0 and diffs[350]["discharge_psi"] == 0
    assert all(d["vibration_mm_s"] == 0 for d in diffs[361:])  # repaired at the end


def test_normal_behaviour_is_deterministic_and_not_a_fault() -> None:
    fleet = demo_fleet(10)
    normal = NormalBehaviour(setpoint_changes_per_day=6.0, pump_on_hours=(1.0, 2.0), late_per_day=24.0)

    def run() -> tuple[list[list[dict[str, Any]]], FeedSimulator]:
        sim = FeedSimulator(fleet, seed=2, normal=normal)
        return run_ticks(sim, 6 * 360, step_s=10.0), sim

    ticks, sim = run()
    assert ticks == run()[0]
    assert sim.truth == [] and sim.faults_injected == 0 and sim.active_faults == []
    pj = [live(b, "PJ-0001") for b in ticks]
    stopped = [p for p in pj if p is not None and p["values"]["strokes_per_minute"] == 0.0]
    assert stopped and all(p["values"]["motor_current_a"] == 0.0 for p in stopped)
    assert any("readings" in b for bodies in ticks for b in bodies)  # late data arrived as batches
    # Recorded as normal events (what a false alert can be traced to), in time order, never in the truth.
    events = sim.normal_events("PJ-0001")
    assert {"setpoint_change", "pump_stop", "pump_start", "late_delivery"} <= {kind for _, kind in events}
    assert [ts for ts, _ in events] == sorted(ts for ts, _ in events)
    first_stop = next(ts for ts, kind in events if kind == "pump_stop")
    assert T0 <= first_stop <= datetime.fromisoformat(stopped[0]["ts"])


async def test_run_simulation_writes_the_truth_file_and_announces_on_simctl(nats_url: str, tmp_path: Any) -> None:
    import nats

    nc = await nats.connect(nats_url)
    got: list[dict[str, Any]] = []

    async def on_fault(msg: Any) -> None:
        got.append(json.loads(msg.data))

    await nc.subscribe(simctl_truth_subject("delta"), cb=on_fault)
    await nc.flush()
    path = tmp_path / "truth" / "faults.jsonl"
    try:
        stats = await run_simulation(
            nats_url, "delta", equipment=3, rate=300.0, duration=1.0, fault_every=None, truth_path=path,
            faults=[parse_fault_spec("stuck:SEP-0003:pressure_psi@0.2+0.3"),
                    parse_fault_spec("comms_loss:PJ-0001@0.5")],
        )
        await _received(got, 2)
    finally:
        await nc.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert stats.faults_injected == 2
    assert [(r["kind"], r["equipment_id"], r["sensor"]) for r in lines] == [
        ("stuck", "SEP-0003", "pressure_psi"), ("comms_loss", "PJ-0001", None)]
    assert got == lines
    start = datetime.fromisoformat(lines[0]["start"])
    assert datetime.fromisoformat(lines[0]["end"]) - start == timedelta(milliseconds=300)


def test_a_feed_user_may_announce_its_tenants_faults_only() -> None:
    from store import nats_auth

    allowed = nats_auth.feed_permissions("delta")["publish"]["allow"]  # type: ignore[index]
    assert simctl_truth_subject("delta") in allowed
    assert simctl_subject("delta") not in allowed and "simctl.>" not in allowed


async def test_run_simulation_as_a_feed_user_announces_the_truth(tmp_path: Any) -> None:
    import nats

    from store.embedded import EmbeddedNats

    server = EmbeddedNats(tmp_path / "nats", tenants=["echo"]).start()
    got: list[dict[str, Any]] = []
    try:
        app = await nats.connect(server.url)
        await ensure_telemetry_stream(app.jetstream())  # the app makes the stream, not the feed

        async def on_fault(msg: Any) -> None:
            got.append(json.loads(msg.data))

        await app.subscribe(simctl_truth_subject("echo"), cb=on_fault)
        await app.flush()
        path = tmp_path / "truth.jsonl"
        try:
            stats = await run_simulation(server.feed_url("echo"), "echo", equipment=2, rate=200.0, duration=1.0,
                                         fault_every=None, truth_path=path,
                                         faults=[parse_fault_spec("spike:PJ-0001:tubing_psi@0.2")])
            await _received(got, 1)
        finally:
            await app.close()
    finally:
        server.stop()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["kind"] for r in lines] == ["spike"] and got == lines
    assert stats.publish_errors == 0 and stats.acked == stats.messages > 0


async def _received(messages: list[Any], n: int) -> None:
    """Wait until `n` messages have arrived on a subscription (a fixed sleep guessed how long that takes)."""
    async def arrived() -> bool:
        return len(messages) >= n

    await wait_for(arrived, timeout=10, interval=0.02)
