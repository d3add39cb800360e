"""MQTT feeds: a device publishing WellPulse JSON over MQTT (QoS 1) to the embedded NATS's MQTT listener with its
tenant's feed credentials is ingested like any NATS publish; another tenant's topic is refused.

A real MQTT client (paho-mqtt) against the session's NATS server, which the stack consumes from.
"""

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import nats
import paho.mqtt.client as mqtt
import pytest

from schema.subjects import TELEMETRY_STREAM
from store import nats_auth
from store.embedded import EmbeddedNats, nats_server_binary
from tests.helpers import create_tenant, new_tenant_id, now_utc, settled, wait_for


class Device:
    """An MQTT device (paho-mqtt's threaded loop) with a tenant's feed credentials."""

    def __init__(self, server: EmbeddedNats, tenant: str) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{tenant}",
                                  protocol=mqtt.MQTTv311)
        self.client.username_pw_set(nats_auth.feed_user(tenant), nats_auth.feed_password(server.feed_secret, tenant))
        self.client.connect("127.0.0.1", server.mqtt_port)
        self.client.loop_start()

    async def publish(self, topic: str, body: bytes) -> None:
        """QoS 1: returns once the server acknowledged (PUBACK)."""
        info = self.client.publish(topic, body, qos=1)
        await asyncio.to_thread(info.wait_for_publish, 10)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def tenants(stack: Any, embedded_nats: EmbeddedNats) -> Iterator[tuple[str, str]]:
    a, b = new_tenant_id("mqtt-a"), new_tenant_id("mqtt-b")

    async def make() -> None:
        await create_tenant(stack, a, [("PJ-1", "pump_jack")])
        await create_tenant(stack, b, [("PJ-1", "pump_jack")])

    asyncio.run(make())
    embedded_nats.set_tenants(embedded_nats.tenants | {a, b})  # their feed users (`wellpulse up` syncs them)
    yield a, b


def body(equipment: str, value: float, **extra: Any) -> bytes:
    return json.dumps({"equipment_id": equipment, "ts": now_utc().isoformat(), "values": {"tubing_psi": value},
                       **extra}).encode()


async def test_mqtt_publish_is_ingested_and_other_tenants_topics_are_refused(
        stack: Any, embedded_nats: EmbeddedNats, tenants: tuple[str, str], db_conn: asyncpg.Connection) -> None:
    a, b = tenants
    device = Device(embedded_nats, a)
    try:
        await device.publish(f"tele/{a}/PJ-1", body("PJ-1", 801.0))
        # MQTT 3.1.1 has no negative acknowledgement: the server acknowledges, logs a publish violation, drops it.
        await device.publish(f"tele/{b}/PJ-1", body("PJ-1", 666.0))
        await device.publish(f"tele/{a}/PJ-1", b"{not json")
        await device.publish(f"tele/{a}/PJ-1", body("PJ-1", 802.0, quality={"tubing_psi": "uncertain"}))

        async def stored() -> list[Any]:
            return await db_conn.fetch("SELECT value, quality FROM readings WHERE tenant_id = $1 ORDER BY ts", a)

        rows = await wait_for(lambda: _when(stored, 2), timeout=60)
        assert [(r["value"], r["quality"]) for r in rows] == [(801.0, None), (802.0, "uncertain")]
        await settled(stack, a)
        assert await db_conn.fetchval("SELECT count(*) FROM readings WHERE tenant_id = $1", b) == 0
        nc = await nats.connect(stack.settings.nats_url)
        try:
            info = await nc.jetstream().stream_info(TELEMETRY_STREAM, subjects_filter=f"tele.{b}.>")
        finally:
            await nc.close()
        assert not info.state.subjects  # never reached the stream
        tenant_stats = await (await stack.supervisor.tenant.remote(a)).stats.remote()
        assert tenant_stats["counters"]["dlq"].get("not_json") == 1
    finally:
        device.close()


async def _when(fetch: Any, n: int) -> Any:
    rows = await fetch()
    return rows if len(rows) >= n else None


def test_the_printed_config_runs_an_mqtt_listener(tmp_path: Path) -> None:
    """What `wellpulse nats config` prints, with a listen line and JetStream, is a configuration nats-server
    accepts (`-t` checks it)."""
    conf = tmp_path / "nats.conf"
    conf.write_text(f"listen: 127.0.0.1:4222\njetstream {{ store_dir: {json.dumps(str(tmp_path / 'js'))} }}\n"
                    + nats_auth.authorization_block("wellpulse-app", "app-pw", "k", ["alpha"])
                    + nats_auth.server_name_line("wellpulse") + nats_auth.mqtt_block(1883))
    checked = subprocess.run([nats_server_binary(), "-t", "-c", str(conf)], capture_output=True, text=True,
                             timeout=30, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
