"""Store-and-forward: a steady feed through the edge buffer while the WAN link to the hub is cut and restored."""

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest

from gateway.config import EdgeConfig, NatsConfig
from gateway.publish import GatewayMetrics, open_publisher
from schema.subjects import TELEMETRY_STREAM
from schema.telemetry import Reading
from sim.publish import ensure_telemetry_stream
from store.embedded import EmbeddedNats
from tests.gateway_support import TcpProxy
from tests.helpers import wait_for

pytestmark = pytest.mark.fast

TENANT = "gw-edge"
log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    with EmbeddedNats(tmp_path_factory.mktemp("nats-gw-hub"), tenants=[TENANT]) as nats_server:
        yield nats_server


@pytest.fixture(scope="module")
async def hub_js(hub: EmbeddedNats) -> AsyncIterator[Any]:
    nc = await nats.connect(hub.url)
    js = nc.jetstream()
    await ensure_telemetry_stream(js)
    yield js
    await nc.close()


@pytest.fixture(scope="module")
async def link(hub: EmbeddedNats) -> AsyncIterator[TcpProxy]:
    proxy = await TcpProxy(hub.port).start()
    yield proxy
    await proxy.stop()


async def _hub_messages(hub_js: Any) -> int:
    return int((await hub_js.stream_info(TELEMETRY_STREAM)).state.messages)


async def test_a_cut_link_loses_nothing_doubles_nothing_and_keeps_order(
        hub: EmbeddedNats, hub_js: Any, link: TcpProxy, tmp_path: Path) -> None:
    hub_url = hub.feed_url(TENANT).replace(f":{hub.port}", f":{link.port}")
    config = NatsConfig(tenant=TENANT, edge=EdgeConfig(data_dir=tmp_path / "edge", drain_timeout_s=10,
                                                       late_after_s=1.0))
    metrics = GatewayMetrics()
    loop = asyncio.get_running_loop()
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    n, per_s = 500, 100.0
    cut_at, restore_at = 100, 350  # readings published before the cut, before the restore (2.5 s down)
    caught_up: dict[str, float] = {}
    async with open_publisher(config, hub_url, metrics, "test-edge") as publisher:
        t0 = loop.time()
        for k in range(n):
            if k == cut_at:
                await wait_for(lambda: _hub_count_at_least(hub_js, cut_at // 2), timeout=10, interval=0.05)
                link.cut()
            if k == restore_at:
                before = await _hub_messages(hub_js)
                link.restore()
                caught_up["t_restore"], caught_up["backlog"] = loop.time(), k - before
            reading = Reading(equipment_id=f"PJ-{k % 5}", ts=base + timedelta(milliseconds=k), values={"v": k})
            assert await publisher.publish(reading)  # acknowledged by the local buffer, link or no link
            await asyncio.sleep(max(0.0, t0 + (k + 1) / per_s - loop.time()))

        async def all_there() -> bool:
            return await _hub_messages(hub_js) >= n

        await wait_for(all_there, timeout=30, interval=0.02)
        caught_up["t_done"] = loop.time()
    assert await _hub_messages(hub_js) == n  # the buffer is drained: nothing more can arrive
    seen = []
    for seq in range(1, n + 1):
        msg = await hub_js.get_msg(TELEMETRY_STREAM, seq)
        body = orjson.loads(msg.data)
        seen.append((body["values"]["v"], msg.headers["Nats-Msg-Id"], body.get("historical", False)))
    assert [v for v, _, _ in seen] == list(range(n))  # every reading once, in the order published
    assert len({i for _, i, _ in seen}) == n
    # Stored locally at least 1 s (late_after_s) before the link came back: marked historical; the first ones,
    # forwarded at once, and the last ones, after the catch-up, are not.
    assert all(h for v, _, h in seen if cut_at <= v < restore_at - 100)
    assert not any(h for v, _, h in seen if v < cut_at // 2 or v >= n - 20)
    assert metrics.value("wellpulse_gateway_edge_forwarded_historical_total") == sum(h for _, _, h in seen)
    assert metrics.value("wellpulse_gateway_edge_forwarded_total") >= n
    assert metrics.value("wellpulse_gateway_errors_total", device="edge", kind="forward") >= 1
    rate = caught_up["backlog"] / max(1e-3, caught_up["t_done"] - caught_up["t_restore"])
    log.warning("edge catch-up: %d buffered readings forwarded at >= %.0f readings/s (feed %d/s)",
                caught_up["backlog"], rate, per_s)


async def _hub_count_at_least(hub_js: Any, count: int) -> bool:
    return await _hub_messages(hub_js) >= count
