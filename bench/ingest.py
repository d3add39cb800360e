"""Sustained end-to-end ingest: published to NATS until committed, models updated and acked.

Baselines measured in the same run, on the same servers: raw asyncpg COPY into the
``readings`` table, and raw JetStream publish / pull-consume. Prints JSON.

    python -m bench.ingest [--readings 300000] [--equipment 50] [--snapshots-per-message 1]
"""

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
import psutil
from nats.js.api import StreamConfig

from bench.common import MemorySampler, emit, new_tenant, start_stack
from schema.equipment import SENSORS_BY_TYPE, EquipmentType
from schema.subjects import tele_subject
from serve.runtime import Stack
from store import bus, db, readings

PUMP_JACK = SENSORS_BY_TYPE[EquipmentType.PUMP_JACK]


def build_messages(equipment: list[str], snapshots: int, per_message: int) -> list[tuple[str, bytes]]:
    """Gateway-like messages: each a pump-jack snapshot (5 sensors), or a list of them."""
    start = datetime.now(UTC) - timedelta(hours=6)
    per_equipment = snapshots // len(equipment)
    streams: list[list[tuple[str, bytes]]] = []
    for e_index, equipment_id in enumerate(equipment):
        stream: list[tuple[str, bytes]] = []
        batch: list[dict[str, Any]] = []
        for i in range(per_equipment):
            ts = start + timedelta(milliseconds=250 * i)
            values = {s.name: round(s.low + (s.high - s.low) * (0.5 + 0.1 * ((i * 7 + e_index) % 5 - 2) / 2), 2)
                      for s in PUMP_JACK}
            batch.append({"equipment_id": equipment_id, "ts": ts.isoformat(), "values": values})
            if len(batch) == per_message:
                body = batch[0] if per_message == 1 else {"readings": batch}
                stream.append((equipment_id, json.dumps(body).encode()))
                batch = []
        streams.append(stream)
    # Round robin over equipment, each in time order, as a gateway polling many RTUs sends them.
    return [m for group in zip(*streams, strict=True) for m in group]


async def publish_all(js: Any, tenant: str, messages: list[tuple[str, bytes]]) -> float:
    started = time.perf_counter()
    window: list[Any] = []
    for equipment_id, body in messages:
        window.append(await js.publish_async(tele_subject(tenant, equipment_id), body))
        if len(window) >= 2000:
            await asyncio.gather(*window)
            window.clear()
    await asyncio.gather(*window)
    return time.perf_counter() - started


async def wait_ingested(pool: Any, js: Any, tenant: str, expected_rows: int) -> None:
    """Until the tenant's readings are all stored, learned and acked."""
    while True:
        stored = await readings.count_readings(pool, tenant)
        pending, ack_pending = await bus.consumer_lag(js, tenant)
        if stored >= expected_rows and pending == 0 and ack_pending == 0:
            return
        await asyncio.sleep(0.05)


async def end_to_end(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    tenant = new_tenant("bench")
    equipment = [f"PJ-{i:04d}" for i in range(args.equipment)]
    await stack.register_tenant(tenant, tenant, [(e, "pump_jack", e) for e in equipment])
    snapshots = args.readings // len(PUMP_JACK)
    messages = build_messages(equipment, snapshots, args.snapshots_per_message)
    expected_rows = (snapshots // len(equipment)) * len(equipment) * len(PUMP_JACK)
    nc = await nats.connect(stack.settings.nats_url)
    pool = await db.create_pool(stack.settings.database_url, max_size=1)
    js = nc.jetstream()
    try:
        with MemorySampler(stack) as memory:
            psutil.cpu_percent()
            cpu_before = memory.cpu_seconds()
            started = time.perf_counter()
            publish_seconds = await publish_all(js, tenant, messages)
            await wait_ingested(pool, js, tenant, expected_rows)
            elapsed = time.perf_counter() - started
            cpu_busy = psutil.cpu_percent()
            cpu_after = memory.cpu_seconds()
            cpu_by_process = {k: round(v - cpu_before.get(k, 0.0), 2) for k, v in cpu_after.items()
                              if v - cpu_before.get(k, 0.0) > 0.05}
            memory.sample()
        status = await stack.supervisor.status.remote()
        tenant_actor = await stack.supervisor.tenant.remote(tenant)
        equipment_stages: dict[str, float] = {}
        for st in await tenant_actor.equipment_status.remote():
            for k, v in st["stage_seconds"].items():
                equipment_stages[k] = round(equipment_stages.get(k, 0.0) + v, 3)
        counters = status["tenants"][tenant]["counters"]
        return {
            "readings": expected_rows, "messages": len(messages), "snapshots_per_message": args.snapshots_per_message,
            "seconds": round(elapsed, 3), "readings_per_s": round(expected_rows / elapsed),
            "messages_per_s": round(len(messages) / elapsed),
            "publish_seconds": round(publish_seconds, 3), "machine_cpu_busy_percent": cpu_busy,
            "cpu_seconds_by_process": dict(sorted(cpu_by_process.items(), key=lambda kv: -kv[1])),
            "stage_seconds": {k: round(v, 3) for k, v in status["tenants"][tenant]["stage_seconds"].items()},
            "equipment_actor_stage_seconds_summed": equipment_stages,
            "batches": counters["batches"],
            "dlq": counters["dlq"], "peak_rss_mib_all_processes": round(memory.peak / 2**20),
        }
    finally:
        await nc.close()
        await pool.close()


async def raw_copy(stack: Stack, rows: int) -> dict[str, Any]:
    """asyncpg COPY of the same shape of rows into the same table, batches of 5,000."""
    pool = await db.create_pool(stack.settings.database_url, max_size=1)
    tenant = new_tenant("rawcopy")
    start = datetime.now(UTC) - timedelta(days=2)
    records = [(tenant, f"PJ-{i % 50:04d}", PUMP_JACK[i % 5].name, start + timedelta(milliseconds=i), 1.0)
               for i in range(rows)]
    try:
        started = time.perf_counter()
        async with pool.acquire() as conn:
            for i in range(0, rows, 5000):
                await conn.copy_records_to_table("readings", records=records[i:i + 5000],
                                                 columns=readings.READING_COLUMNS)
        elapsed = time.perf_counter() - started
        return {"rows": rows, "seconds": round(elapsed, 3), "rows_per_s": round(rows / elapsed)}
    finally:
        await pool.execute("DELETE FROM readings WHERE tenant_id = $1", tenant)
        await pool.close()


async def raw_jetstream(stack: Stack, messages: int, body: bytes) -> dict[str, Any]:
    nc = await nats.connect(stack.settings.nats_url)
    js = nc.jetstream()
    name = f"RAW{uuid.uuid4().hex[:6].upper()}"
    subject = f"rawbench.{name}"
    await js.add_stream(StreamConfig(name=name, subjects=[subject]))
    try:
        started = time.perf_counter()
        window = []
        for _ in range(messages):
            window.append(await js.publish_async(subject, body))
            if len(window) >= 2000:
                await asyncio.gather(*window)
                window.clear()
        await asyncio.gather(*window)
        publish_s = time.perf_counter() - started
        sub = await js.pull_subscribe(subject, durable="raw", stream=name)
        got = 0
        started = time.perf_counter()
        while got < messages:
            for msg in await sub.fetch(1000, timeout=1):
                await msg.ack()
                got += 1
        consume_s = time.perf_counter() - started
        return {"messages": messages, "publish_per_s": round(messages / publish_s),
                "fetch_ack_per_s": round(messages / consume_s)}
    finally:
        await js.delete_stream(name)
        await nc.close()


async def main(args: argparse.Namespace) -> None:
    stack = await asyncio.to_thread(start_stack, serve_http=False)
    try:
        e2e = await end_to_end(stack, args)
        copy = await raw_copy(stack, e2e["readings"])
        sample = build_messages(["PJ-0001"], args.snapshots_per_message, args.snapshots_per_message)[0][1]
        js = await raw_jetstream(stack, e2e["messages"], sample)
        emit({
            "benchmark": "ingest",
            "storage": stack.migration.flavour if stack.migration else None,
            "end_to_end": e2e,
            "baseline_raw_copy": copy,
            "baseline_raw_jetstream": js,
            "ratio_e2e_to_raw_copy": round(e2e["readings_per_s"] / copy["rows_per_s"], 3),
            "ratio_e2e_messages_to_raw_fetch_ack": round(e2e["messages_per_s"] / js["fetch_ack_per_s"], 3),
            "bar_readings_per_s": 50_000,
        })
    finally:
        await asyncio.to_thread(stack.stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readings", type=int, default=300_000, help="sensor values in total")
    parser.add_argument("--equipment", type=int, default=50)
    parser.add_argument("--snapshots-per-message", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
