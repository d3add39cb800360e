"""Edge buffer catch-up: how fast a gateway's store-and-forward buffer (`gateway.edge`) empties into the hub once
the link returns after an outage.

The gateway publishes ``--readings`` readings (default 20,000: five minutes of a 67 readings/s site) while the hub
is down; they wait in the local JetStream. Then the hub starts and the forwarder sends them, in order, one PubAck
at a time, each marked historical (re-encoded with ``"historical": true``, as after a real outage). Catch-up rate =
readings / time from the first to the last arriving in the hub's TELEMETRY stream.
Baseline in the same run: a gateway publishing the same number of readings straight to the hub with the same
awaited PubAck per message (what `gateway.publish.ReadingPublisher` does without a buffer). Prints JSON.

    python -m bench.gateway_edge [--readings 20000]
"""

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats

from bench.common import emit
from gateway.edge import EdgeBuffer
from gateway.publish import GatewayMetrics, ReadingPublisher
from schema.subjects import TELEMETRY_STREAM
from schema.telemetry import Reading
from sim.publish import ensure_telemetry_stream
from store.embedded import EmbeddedNats

TENANT = "bench-edge"


def _readings(n: int, offset: int) -> list[Reading]:
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    return [Reading(equipment_id=f"PJ-{k % 50:04d}", ts=base + timedelta(milliseconds=offset + k),
                    values={"tubing_psi": 800.0 + k % 7, "casing_psi": 300.0}) for k in range(n)]


async def _count(js: Any) -> int:
    return int((await js.stream_info(TELEMETRY_STREAM)).state.messages)


async def _wait_count(js: Any, at_least: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while await _count(js) < at_least:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {at_least} messages after {timeout}s")
        await asyncio.sleep(0.01)
    return time.monotonic()


async def run(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wp-bench-edge-") as tmp:
        hub = EmbeddedNats(Path(tmp) / "hub", tenants=[TENANT])
        metrics = GatewayMetrics()
        # late_after_s=0: every buffered reading goes out marked historical (re-encoded), as after a real
        # five-minute outage, so the figure includes that cost.
        edge = await EdgeBuffer(Path(tmp) / "edge", TENANT, hub.feed_url(TENANT), metrics, late_after_s=0.0).start()
        stop = asyncio.Event()
        forwarder = asyncio.create_task(edge.forward(stop))
        try:
            local = ReadingPublisher(edge.local_url, TENANT, metrics)
            await local.connect()
            t0 = time.monotonic()
            for reading in _readings(n, 0):
                await local.publish(reading)
            buffered_s = time.monotonic() - t0
            await local.close()
            await asyncio.to_thread(hub.start)  # the link returns
            nc = await nats.connect(hub.url)
            js = nc.jetstream()
            await ensure_telemetry_stream(js)
            first = await _wait_count(js, 1, 60)
            last = await _wait_count(js, n, 600)
            catch_up = (n - 1) / max(1e-9, last - first)

            direct = ReadingPublisher(hub.feed_url(TENANT), TENANT, GatewayMetrics())
            await direct.connect()
            t0 = time.monotonic()
            for reading in _readings(n, n):
                await direct.publish(reading)
            baseline = n / (time.monotonic() - t0)
            await direct.close()
            assert await _count(js) == 2 * n, "a reading was lost or doubled"
            await nc.close()
        finally:
            stop.set()
            await asyncio.wait_for(forwarder, timeout=10)
            await edge.stop()
            hub.stop()
    return {"bench": "gateway_edge", "readings": n, "buffer_publish_per_s": round(n / buffered_s),
            "catch_up_per_s": round(catch_up), "marked_historical": edge.forwarded_historical,
            "baseline_direct_publish_per_s": round(baseline),
            "ratio_catch_up_to_direct": round(catch_up / baseline, 2),
            "outage_minutes_at_67_per_s": round(n / 67 / 60, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=20_000)
    args = parser.parse_args()
    emit(asyncio.run(run(args.readings)))


if __name__ == "__main__":
    main()
