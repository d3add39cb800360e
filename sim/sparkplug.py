"""``wellpulse simulate --sparkplug``: the demo fleet as one Sparkplug B edge node over MQTT.

The fleet's values come from `sim.FeedSimulator` (the same seeded feed as the NATS simulator); each equipment is a
device of edge node ``--node`` in group ``<tenant>`` (the group the tenant's feed user may publish to). The node
sends NBIRTH and a DBIRTH per device (aliases and units), then DDATA by alias, answers an NCMD
``Node Control/Rebirth`` with fresh births, and leaves an NDEATH as its MQTT will (sent by the server when the link
drops) and on a clean stop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

from schema import sparkplug_b_pb2 as pb
from schema.equipment import SENSORS_BY_TYPE
from schema.sparkplug import BD_SEQ, REBIRTH, Topic
from sim.feed import FeedSimulator
from sim.fleet import demo_fleet, snapshot_interval

__all__ = ["EdgeNode", "SparkplugStats", "parse_mqtt_url", "run_sparkplug_simulation"]


class EdgeNode:
    """Builds the payloads of one Sparkplug B edge node with devices (``wellpulse simulate --sparkplug`` and the
    tests): births with aliases and units, data by alias, deaths, and the sequence numbers."""

    def __init__(self, group: str, node: str, devices: dict[str, dict[str, str]]) -> None:
        self.group, self.node = group, node
        self.devices = devices  # device -> metric name -> unit
        self.seq = -1
        self.bd_seq = 0
        self.aliases: dict[tuple[str, str], int] = {}
        for i, (device, metrics) in enumerate(sorted(devices.items())):
            for j, name in enumerate(sorted(metrics)):
                self.aliases[(device, name)] = 1000 * (i + 1) + j

    def _payload(self, now: datetime) -> Any:
        self.seq = (self.seq + 1) % 256
        return pb.Payload(timestamp=int(now.timestamp() * 1000), seq=self.seq)

    def topic(self, message_type: str, device: str | None = None) -> Topic:
        return Topic(self.group, message_type, self.node, device)

    def nbirth(self, now: datetime) -> tuple[Topic, bytes]:
        self.seq = -1
        payload = self._payload(now)
        m = payload.metrics.add()
        m.name, m.datatype, m.long_value = BD_SEQ, pb.UInt64, self.bd_seq
        m = payload.metrics.add()
        m.name, m.datatype, m.boolean_value = REBIRTH, pb.Boolean, False
        return self.topic("NBIRTH"), payload.SerializeToString()

    def ndeath(self) -> tuple[Topic, bytes]:
        payload = pb.Payload()
        m = payload.metrics.add()
        m.name, m.datatype, m.long_value = BD_SEQ, pb.UInt64, self.bd_seq
        return self.topic("NDEATH"), payload.SerializeToString()

    def dbirth(self, device: str, values: dict[str, float], now: datetime) -> tuple[Topic, bytes]:
        payload = self._payload(now)
        for name, value in sorted(values.items()):
            m = payload.metrics.add()
            m.name, m.alias, m.datatype, m.double_value = name, self.aliases[(device, name)], pb.Double, value
            m.properties.keys.append("engUnit")
            unit = m.properties.values.add()
            unit.type, unit.string_value = pb.String, self.devices[device][name]
        return self.topic("DBIRTH", device), payload.SerializeToString()

    def ddata(self, device: str, values: dict[str, float], now: datetime, *, historical: bool = False,
              quality: dict[str, int] | None = None) -> tuple[Topic, bytes]:
        payload = self._payload(now)
        for name, value in sorted(values.items()):
            m = payload.metrics.add()
            m.alias, m.datatype, m.double_value = self.aliases[(device, name)], pb.Double, value
            m.timestamp = int(now.timestamp() * 1000)
            if historical:
                m.is_historical = True
            if quality and name in quality:
                m.properties.keys.append("Quality")
                q = m.properties.values.add()
                q.type, q.int_value = pb.Int32, quality[name]
        return self.topic("DDATA", device), payload.SerializeToString()

    def ddeath(self, device: str, now: datetime) -> tuple[Topic, bytes]:
        return self.topic("DDEATH", device), self._payload(now).SerializeToString()

    def births(self, values: dict[str, dict[str, float]], now: datetime) -> Iterable[tuple[Topic, bytes]]:
        yield self.nbirth(now)
        for device in sorted(self.devices):
            yield self.dbirth(device, values[device], now)


@dataclass
class SparkplugStats:
    messages: int = 0
    values: int = 0
    rebirths: int = 0
    seconds: float = 0.0


def parse_mqtt_url(url: str) -> tuple[str, int, str | None, str | None]:
    """(host, port, user, password) of ``mqtt://user:password@host:port``.

    >>> parse_mqtt_url("mqtt://feed-acme:pw@127.0.0.1:1883")
    ('127.0.0.1', 1883, 'feed-acme', 'pw')
    """
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise ValueError(f"not an mqtt:// URL: {url!r}")
    return (parts.hostname, parts.port or 1883, unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None)


class _Client:
    """paho-mqtt on its own thread; commands for the node arrive in `rebirth`."""

    def __init__(self, url: str, edge: EdgeNode, client_id: str) -> None:
        import paho.mqtt.client as mqtt

        host, port, user, password = parse_mqtt_url(url)
        self.rebirth = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if user:
            self.client.username_pw_set(user, password)
        will_topic, will = edge.ndeath()
        self.client.will_set(will_topic.mqtt(), will, qos=1)
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        self.client.subscribe(edge.topic("NCMD").mqtt(), qos=0)

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        try:
            payload = pb.Payload.FromString(msg.payload)
        except Exception:
            return
        if any(m.name == REBIRTH and m.boolean_value for m in payload.metrics):
            self.rebirth.set()

    def publish(self, message: tuple[Any, bytes]) -> Any:
        topic, data = message
        return self.client.publish(topic.mqtt(), data, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def run_sparkplug_simulation(url: str, tenant: str, *, node: str = "rtu-1", equipment: int = 5,
                                   rate: float = 50.0, duration: float | None = None, seed: int = 0,
                                   stop: asyncio.Event | None = None) -> SparkplugStats:
    """Publish the fleet as Sparkplug B until `duration` seconds pass or `stop` is set."""
    fleet = demo_fleet(equipment)
    feed = FeedSimulator(fleet, seed=seed)
    units = {e.equipment_id: {s.name: s.unit for s in SENSORS_BY_TYPE[e.equipment_type]} for e in fleet}
    edge = EdgeNode(tenant, node, units)
    interval = snapshot_interval(fleet, rate)
    client = _Client(url, edge, f"wellpulse-sim-{tenant}-{node}")
    stats = SparkplugStats()
    started = time.monotonic()
    stop = stop or asyncio.Event()
    try:
        last = _complete({}, units)  # what each device reported last: a birth declares it all
        for device, sensors, _ts, historical in _snapshots(feed, datetime.now(UTC)):
            if not historical:
                last[device].update(sensors)
        pending = [client.publish(m) for m in edge.births(last, datetime.now(UTC))]
        stats.messages += len(pending)
        while not stop.is_set() and (duration is None or time.monotonic() - started < duration):
            now = datetime.now(UTC)
            if client.rebirth.is_set():
                client.rebirth.clear()
                stats.rebirths += 1
                pending = [client.publish(m) for m in edge.births(last, now)]
                stats.messages += len(pending)
            for device, sensors, ts, historical in _snapshots(feed, now):
                if not historical:
                    last[device].update(sensors)
                # The feed's store-and-forward batches (held, then sent late) go as is_historical metrics.
                pending.append(client.publish(edge.ddata(device, sensors, ts, historical=historical)))
                stats.messages += 1
                stats.values += len(sensors)
            for info in pending:
                await asyncio.to_thread(info.wait_for_publish, 10)
            pending = []
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass
        client.publish(edge.ndeath()).wait_for_publish(5)
    finally:
        client.close()
    stats.seconds = time.monotonic() - started
    return stats


def _snapshots(feed: FeedSimulator, now: datetime) -> list[tuple[str, dict[str, float], datetime, bool]]:
    """(device, values, time, historical) of the feed's tick at `now` (moved on a millisecond if the last tick was
    that same millisecond: the feed's times must increase)."""
    if feed.last_ts is not None and now < feed.last_ts + timedelta(milliseconds=1):
        now = feed.last_ts + timedelta(milliseconds=1)
    out = []
    for body in feed.next_snapshots(now):
        for reading in body.get("readings", [body]):
            ts = datetime.fromisoformat(reading["ts"])
            out.append((reading["equipment_id"], dict(reading["values"]), ts, "readings" in body))
    return out


def _complete(values: dict[str, dict[str, float]], units: dict[str, dict[str, str]]) -> dict[str, dict[str, float]]:
    """Every device's every metric (a birth declares them all): a missing one as 0 until its first value."""
    return {d: {name: values.get(d, {}).get(name, 0.0) for name in names} for d, names in units.items()}
