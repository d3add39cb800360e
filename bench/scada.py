"""SCADA protocols: MQTT QoS 1 ingest end to end against a bare NATS publish of the same messages, in the same run
on the same stack; and the Sparkplug B host's decoding cost per metric against a bare protobuf parse. Prints JSON.

    python -m bench.scada [--readings 50000] [--equipment 20] [--sparkplug-messages 20000] [--edge-readings 20000]

End to end: published until every reading is stored, learned and acked. MQTT: paho-mqtt at QoS 1 (up to
``--inflight`` unacknowledged), as a feed user, to the embedded NATS's MQTT listener; NATS: JetStream publishes
(windows of 2,000 PubAcks) as the app, to another tenant with the same equipment. Last, the edge buffer's catch-up
after a five-minute outage (`bench.gateway_edge`, its own hub and gateway, against a direct publish).
"""

import argparse
import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import nats
import paho.mqtt.client as mqtt

from bench import gateway_edge
from bench.common import emit, new_tenant, start_stack
from bench.ingest import PUMP_JACK, build_messages, publish_all, wait_ingested
from gateway.sparkplug import SparkplugConfig, SparkplugHost
from schema import sparkplug_b_pb2 as pb
from serve.runtime import Stack
from sim.sparkplug import EdgeNode
from store import db, nats_auth


async def publish_mqtt(stack: Stack, tenant: str, messages: list[tuple[str, bytes]], inflight: int) -> float:
    """QoS 1 publishes of every message; returns the seconds until the last PUBACK."""
    assert stack.nats is not None and stack.nats.mqtt_port is not None
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{tenant}")
    client.username_pw_set(nats_auth.feed_user(tenant), nats_auth.feed_password(stack.nats.feed_secret, tenant))
    client.max_inflight_messages_set(inflight)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", stack.nats.mqtt_port)
    client.loop_start()
    try:
        started = time.perf_counter()
        infos = [client.publish(f"tele/{tenant}/{equipment}", body, qos=1) for equipment, body in messages]
        for info in infos:
            await asyncio.to_thread(info.wait_for_publish, 60)
        return time.perf_counter() - started
    finally:
        client.disconnect()
        client.loop_stop()


async def ingest(stack: Stack, args: argparse.Namespace, via: str) -> dict[str, Any]:
    tenant = new_tenant(via)
    equipment = [f"PJ-{i:04d}" for i in range(args.equipment)]
    await stack.register_tenant(tenant, tenant, [(e, "pump_jack", e) for e in equipment])
    await asyncio.to_thread(stack.sync_nats_users)  # its feed user, at once
    snapshots = args.readings // len(PUMP_JACK)
    messages = build_messages(equipment, snapshots, 1)
    expected = (snapshots // len(equipment)) * len(equipment) * len(PUMP_JACK)
    nc = await nats.connect(stack.settings.nats_url)
    pool = await db.create_pool(stack.settings.database_url, max_size=1)
    js = nc.jetstream()
    try:
        started = time.perf_counter()
        if via == "mqtt":
            publish_seconds = await publish_mqtt(stack, tenant, messages, args.inflight)
        else:
            publish_seconds = await publish_all(js, tenant, messages)
        await wait_ingested(pool, js, tenant, expected)
        elapsed = time.perf_counter() - started
        return {"readings": expected, "messages": len(messages), "seconds": round(elapsed, 3),
                "readings_per_s": round(expected / elapsed), "publish_seconds": round(publish_seconds, 3),
                "publish_messages_per_s": round(len(messages) / publish_seconds)}
    finally:
        await nc.close()
        await pool.close()


def sparkplug_decoding(messages: int, metrics: int) -> dict[str, Any]:
    """`SparkplugHost.handle` (parse, aliases, sequence, mapping to readings) vs `Payload.FromString` alone, on the
    same DDATA payloads of `metrics` metrics each, sent by alias as an edge node sends them."""
    names = {f"Metric {i}": "u" for i in range(metrics)}
    edge = EdgeNode("bench", "rtu-1", {"PJ-1": names})
    now = datetime.now(UTC)
    births = list(edge.births({"PJ-1": dict.fromkeys(names, 1.0)}, now))
    data = [edge.ddata("PJ-1", {n: float(i + j) for j, n in enumerate(names)}, now) for i in range(messages)]
    started = time.perf_counter()
    for _topic, payload in data:
        pb.Payload.FromString(payload)
    bare = time.perf_counter() - started
    host = SparkplugHost(SparkplugConfig())
    for topic, payload in births:
        host.handle(topic, payload, now)
    started = time.perf_counter()
    for topic, payload in data:
        host.handle(topic, payload, now)
    full = time.perf_counter() - started
    counted = host.counters["bench/rtu-1/PJ-1"]
    assert counted["metrics"] == metrics * (messages + 1) and not counted.get("seq_gaps")
    total = messages * metrics
    return {"messages": messages, "metrics_per_message": metrics,
            "host_us_per_metric": round(full / total * 1e6, 3),
            "bare_parse_us_per_metric": round(bare / total * 1e6, 3),
            "host_metrics_per_s": round(total / full), "ratio_host_to_bare_parse": round(full / bare, 2)}


async def main(args: argparse.Namespace) -> None:
    stack = await asyncio.to_thread(start_stack, serve_http=False)
    try:
        nats_result = await ingest(stack, args, "nats")
        mqtt_result = await ingest(stack, args, "mqtt")
    finally:
        await asyncio.to_thread(stack.stop)
    edge = await gateway_edge.run(args.edge_readings)
    emit({
        "benchmark": "scada",
        "mqtt_qos1_end_to_end": mqtt_result,
        "baseline_nats_jetstream_end_to_end": nats_result,
        "ratio_mqtt_to_nats_readings_per_s": round(mqtt_result["readings_per_s"] / nats_result["readings_per_s"], 3),
        "sparkplug_decode": sparkplug_decoding(args.sparkplug_messages, args.metrics),
        "edge_buffer_catch_up": edge,
    })

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readings", type=int, default=50_000, help="sensor values per protocol")
    parser.add_argument("--equipment", type=int, default=20)
    parser.add_argument("--inflight", type=int, default=1000, help="MQTT QoS 1 messages in flight at most")
    parser.add_argument("--sparkplug-messages", type=int, default=20_000)
    parser.add_argument("--metrics", type=int, default=5, help="metrics per Sparkplug DDATA")
    parser.add_argument("--edge-readings", type=int, default=20_000,
                        help="readings buffered at the edge during the outage (20,000: 5 minutes at 67/s)")
    asyncio.run(main(parser.parse_args()))
