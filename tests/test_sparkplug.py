"""Sparkplug B: the host's decoding and mapping (pure, with the simulator's edge node), then end to end: an edge node
over MQTT to the embedded NATS, the bridge, ingest, a rebirth request on a sequence gap, comms_loss on NDEATH."""

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import nats
import paho.mqtt.client as mqtt
import pytest

from gateway.sparkplug import (
    SparkplugBridge,
    SparkplugConfig,
    SparkplugCounters,
    SparkplugHost,
    rebirth_payload,
    register_sensors,
)
from models import EquipmentState, Snapshot, StaleDataRule
from schema import sparkplug_b_pb2 as pb
from schema.sparkplug import Topic, parse_topic
from sim.sparkplug import EdgeNode
from store import db, nats_auth
from store.embedded import EmbeddedNats
from tests.helpers import create_tenant, new_tenant_id, wait_for

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
UNITS = {"PJ-1": {"Tubing PSI": "psi", "Motor Current": "A"}}


def node(group: str = "east") -> EdgeNode:
    return EdgeNode(group, "rtu-7", UNITS)


def test_births_aliases_units_quality_and_history() -> None:
    host, edge = SparkplugHost(SparkplugConfig()), node()
    outs = [host.handle(t, data, T0) for t, data in edge.births({"PJ-1": {"Tubing PSI": 800, "Motor Current": 40}},
                                                                 T0)]
    assert outs[1].sensors == {"PJ-1": {"tubing_psi": "psi", "motor_current": "A"}}
    assert outs[1].readings["PJ-1"][0]["values"] == {"tubing_psi": 800.0, "motor_current": 40.0}
    t, data = edge.ddata("PJ-1", {"Tubing PSI": 810, "Motor Current": 41}, T0 + timedelta(seconds=1),
                         quality={"Tubing PSI": 0})  # by alias only; OPC DA quality 0: bad
    out = host.handle(t, data, T0)
    assert out.error is None and out.rebirth is None and out.tenant == "east"
    assert out.readings["PJ-1"] == [{"equipment_id": "PJ-1", "ts": (T0 + timedelta(seconds=1)).isoformat(),
                                     "values": {"motor_current": 41.0, "tubing_psi": 810.0},
                                     "quality": {"tubing_psi": "bad"}}]
    t, data = edge.ddata("PJ-1", {"Tubing PSI": 805}, T0 - timedelta(hours=1), historical=True)
    assert host.handle(t, data, T0).readings["PJ-1"][0]["historical"] is True
    assert host.counters["east/rtu-7/PJ-1"]["metrics"] == 5


def test_gaps_unknown_aliases_bad_payloads_and_foreign_groups_are_counted() -> None:
    host, edge = SparkplugHost(SparkplugConfig()), node()
    for t, data in edge.births({"PJ-1": {"Tubing PSI": 800, "Motor Current": 40}}, T0):
        host.handle(t, data, T0)
    edge.seq += 3  # three messages lost
    out = host.handle(*edge.ddata("PJ-1", {"Tubing PSI": 1}, T0), T0)
    assert out.rebirth is not None and out.rebirth.node == "rtu-7" and out.readings  # the data is still good
    fresh = SparkplugHost(SparkplugConfig())  # a host that missed the births
    out = fresh.handle(*edge.ddata("PJ-1", {"Tubing PSI": 1}, T0), T0)
    assert out.error is not None and out.error.code == "unknown_alias" and out.rebirth is not None
    out = host.handle(parse_topic("spBv1.0/east/DDATA/rtu-7/PJ-1"), b"\xff\x00garbage", T0)
    assert out.error is not None and out.error.code == "bad_payload"
    strict = SparkplugHost(SparkplugConfig(groups={"east": "acme"}, groups_are_tenants=False))
    assert strict.handle(*node("west").nbirth(T0), T0).error.code == "foreign_group"  # type: ignore[union-attr]
    assert strict.handle(*node("east").nbirth(T0), T0).tenant == "acme"
    counts = host.counters["east/rtu-7/PJ-1"]
    assert (counts["seq_gaps"], counts["bad_payload"], fresh.counters["east/rtu-7/PJ-1"]["unknown_alias"]) == (1, 1, 1)
    scraped = SparkplugCounters(host).registry()  # what `sparkplug bridge --metrics-port` serves
    for kind in ("seq_gaps", "bad_payload", "metrics"):
        labels = {"device": "east/rtu-7/PJ-1", "kind": kind}
        value = scraped.get_sample_value("wellpulse_sparkplug_events_total", labels)
        assert value == counts[kind] and value > 0, kind


def test_deaths_mark_devices_offline_and_late_wills_are_ignored() -> None:
    host, edge = SparkplugHost(SparkplugConfig(equipment={"east/rtu-7/PJ-1": "WELL-9"})), node()
    for t, data in edge.births({"PJ-1": {"Tubing PSI": 800, "Motor Current": 40}}, T0):
        host.handle(t, data, T0)
    old = EdgeNode("east", "rtu-7", UNITS)
    old.bd_seq = 41  # the will of an earlier session
    assert host.handle(*old.ndeath(), T0).offline == []
    assert host.handle(*edge.ndeath(), T0).offline == ["WELL-9"]
    assert host.handle(*edge.ddeath("PJ-1", T0), T0).offline == ["WELL-9"]


def test_comms_loss_opens_at_once_and_only_live_data_resolves_it() -> None:
    eq = EquipmentState("PJ-1", "pump_jack", [StaleDataRule(max_silence_seconds=60)])
    eq.learn_many([Snapshot(T0, {"tubing_psi": 800.0})])
    assert [(c.kind, c.rule_id) for c in eq.comms_lost(T0 + timedelta(seconds=1), "NDEATH")] == [
        ("opened", "comms_loss")]
    assert eq.comms_lost(T0 + timedelta(seconds=2), "NDEATH") == []  # once
    assert eq.tick(T0 + timedelta(seconds=10)) == []  # no rule of that name, yet not resolved as an orphan
    assert eq.learn_many([Snapshot(T0 + timedelta(seconds=11), {"tubing_psi": 801.0}, True)]) == []  # history
    back = eq.learn_many([Snapshot(T0 + timedelta(seconds=20), {"tubing_psi": 802.0})])
    assert [(c.kind, c.rule_id) for c in back] == [("resolved", "comms_loss")]


def test_a_reading_taken_before_the_death_notice_but_learned_after_it_does_not_resolve_the_comms_loss() -> None:
    """The notice comes over core NATS, the readings through JetStream and the store: a node's last reading can be
    learned after its NDEATH. It says nothing about whether the node is back."""
    eq = EquipmentState("PJ-1", "pump_jack", [])
    eq.learn_many([Snapshot(T0, {"tubing_psi": 800.0})])
    assert [c.kind for c in eq.comms_lost(T0 + timedelta(seconds=30), "NDEATH")] == ["opened"]
    assert eq.learn_many([Snapshot(T0 + timedelta(seconds=5), {"tubing_psi": 805.0})]) == []
    assert eq.alerts.is_open("comms_loss")
    restored = EquipmentState.from_bytes(eq.to_bytes())  # the notice's time is part of the checkpoint
    assert restored.learn_many([Snapshot(T0 + timedelta(seconds=30), {"tubing_psi": 806.0})]) == []
    back = restored.learn_many([Snapshot(T0 + timedelta(seconds=31), {"tubing_psi": 807.0})])
    assert [(c.kind, c.rule_id) for c in back] == [("resolved", "comms_loss")]


# ---------------------------------------------------------------- end to end


class MqttEdge:
    """The edge node over MQTT (paho), listening for its commands at QoS 0."""

    def __init__(self, server: EmbeddedNats, tenant: str, edge: EdgeNode) -> None:
        self.edge = edge
        self.commands: list[Any] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edge-{tenant}")
        self.client.username_pw_set(nats_auth.feed_user(tenant), nats_auth.feed_password(server.feed_secret, tenant))
        self.client.on_message = lambda _c, _u, msg: self.commands.append(pb.Payload.FromString(msg.payload))
        self.client.connect("127.0.0.1", server.mqtt_port)
        self.client.loop_start()
        result, _mid = self.client.subscribe(edge.topic("NCMD").mqtt(), qos=0)
        assert result == mqtt.MQTT_ERR_SUCCESS

    async def send(self, message: Any) -> None:
        topic, data = message
        info = self.client.publish(topic.mqtt(), data, qos=1)
        await asyncio.to_thread(info.wait_for_publish, 10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
async def bridge(stack: Any) -> Any:
    nc = await nats.connect(stack.settings.nats_url)
    pool = await db.create_pool(stack.settings.database_url)

    async def register(tenant: str, sensors: dict[str, dict[str, str]]) -> None:
        await register_sensors(pool, tenant, sensors)

    running = SparkplugBridge(nc, SparkplugConfig(), register)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
        await nc.close()
        await pool.close()


async def test_edge_node_over_mqtt_is_ingested_rebirthed_and_its_death_alerts(
        stack: Any, embedded_nats: EmbeddedNats, bridge: SparkplugBridge, db_conn: asyncpg.Connection) -> None:
    tenant = new_tenant_id("spb")
    await create_tenant(stack, tenant, [("PJ-1", "pump_jack")])
    embedded_nats.set_tenants(embedded_nats.tenants | {tenant})
    device = MqttEdge(embedded_nats, tenant, EdgeNode(tenant, "rtu-7", UNITS))
    now = datetime.now(UTC) - timedelta(seconds=30)
    try:
        for message in device.edge.births({"PJ-1": {"Tubing PSI": 800, "Motor Current": 40}}, now):
            await device.send(message)
        for i in range(1, 4):
            await device.send(device.edge.ddata("PJ-1", {"Tubing PSI": 800 + i, "Motor Current": 40},
                                                now + timedelta(seconds=i)))

        async def stored() -> bool:
            return await db_conn.fetchval("SELECT count(*) FROM readings WHERE tenant_id = $1", tenant) == 8

        await wait_for(stored, timeout=60)
        units = await db_conn.fetch("SELECT name, unit FROM equipment_sensors WHERE tenant_id = $1 ORDER BY name",
                                    tenant)
        assert [(r["name"], r["unit"]) for r in units] == [("motor_current", "A"), ("tubing_psi", "psi")]

        device.edge.seq += 5  # a gap: the host asks the node for a rebirth
        await device.send(device.edge.ddata("PJ-1", {"Tubing PSI": 805}, now + timedelta(seconds=5)))
        await wait_for(lambda: _true(bool(device.commands)))
        assert [m.name for m in device.commands[0].metrics] == ["Node Control/Rebirth"]

        await device.send(device.edge.ndeath())

        async def comms_loss() -> bool:
            return bool(await db_conn.fetchval(
                "SELECT count(*) FROM alerts WHERE tenant_id = $1 AND rule_id = 'comms_loss' AND state = 'open'",
                tenant))

        await wait_for(comms_loss, timeout=60)
        topic = device.edge.topic("DDATA", "PJ-1")
        await device.send((topic, b"\xff\xffnot protobuf"))
        dlq = await _dlq(stack, tenant)
        assert dlq["reason"].startswith("sparkplug bad_payload") and base64.b64decode(dlq["payload"])
        assert bridge.host.counters[f"{tenant}/rtu-7/PJ-1"]["bad_payload"] == 1
    finally:
        device.close()


async def _true(value: bool) -> bool:
    return value


async def _dlq(stack: Any, tenant: str) -> dict[str, Any]:
    nc = await nats.connect(stack.settings.nats_url)
    try:
        sub = await nc.jetstream().pull_subscribe(f"dlq.{tenant}", durable=None, stream="DLQ")
        msgs = await sub.fetch(1, timeout=10)
        return dict(json.loads(msgs[0].data))
    finally:
        await nc.close()


async def test_simulator_edge_node_feeds_the_fleet_and_answers_a_rebirth(
        stack: Any, embedded_nats: EmbeddedNats, bridge: SparkplugBridge, db_conn: asyncpg.Connection) -> None:
    from sim.sparkplug import run_sparkplug_simulation

    tenant = new_tenant_id("spsim")
    await create_tenant(stack, tenant, [])
    embedded_nats.set_tenants(embedded_nats.tenants | {tenant})
    url = nats_auth.mqtt_url(embedded_nats.public_url, nats_auth.feed_user(tenant),
                             nats_auth.feed_password(embedded_nats.feed_secret, tenant), embedded_nats.mqtt_port)
    assert url is not None
    stop = asyncio.Event()
    run = asyncio.create_task(run_sparkplug_simulation(url, tenant, node="rtu-9", equipment=3, rate=60, stop=stop))

    async def fleet_reporting() -> bool:
        return await db_conn.fetchval("SELECT count(DISTINCT equipment_id) FROM readings WHERE tenant_id = $1",
                                      tenant) == 3

    try:
        await wait_for(fleet_reporting, timeout=60)
        before = bridge.rebirths_requested
        nc = await nats.connect(stack.settings.nats_url)  # a host asks for a rebirth: the node sends births again
        try:
            await nc.publish(Topic(tenant, "NCMD", "rtu-9").subject(), rebirth_payload())
            await nc.flush()
        finally:
            await nc.close()
        await wait_for(lambda: _true(bridge.host.counters[f"{tenant}/rtu-9"]["births"] == 2))
    finally:
        stop.set()
        stats = await run
    assert stats.rebirths == 1 and stats.values > 0 and bridge.rebirths_requested == before
    await wait_for(lambda: _true(bridge.host.counters[f"{tenant}/rtu-9"]["deaths"] == 1))  # NDEATH on a clean stop
