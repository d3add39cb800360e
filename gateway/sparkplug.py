"""Sparkplug B host: edge nodes' ``spBv1.0/<group>/<type>/<node>[/<device>]`` payloads become WellPulse readings.

Edge nodes publish over MQTT to the NATS server's MQTT listener (store/nats_auth.py), which makes each topic a NATS
subject (``.`` in a topic becomes ``//``, ``/`` becomes ``.``: ``spBv1.0/g/DDATA/n/d`` is ``spBv1//0.g.DDATA.n.d``).
`SparkplugBridge` subscribes to those subjects with the app's credentials: no second MQTT hop, the broker is the
same server. It is a core subscription, not a JetStream consumer, on purpose: Sparkplug recovers a host's view by
its own protocol (a host that restarts, or misses a message, asks the node for a rebirth and learns its state
afresh), and replaying stale births and deaths from a stream after a restart would be wrong, not safer.

`SparkplugHost` is the pure part (no IO, testable and benchmarked alone):

- a group maps to a tenant through `SparkplugConfig` (``groups``; by default a group named like a tenant is that
  tenant, which is also what the embedded NATS's feed permissions let a tenant's devices publish);
- a device maps to equipment: ``equipment["group/node/device"]`` or its own name (a node's own metrics: the node's);
- metric aliases from the birth certificate (NBIRTH, DBIRTH) are honoured in NDATA and DDATA; DBIRTH (and NBIRTH)
  metrics are registered as the equipment's sensors with their units (property ``engUnit``);
- NDEATH (its ``bdSeq`` matching the birth's) marks the node's devices offline, DDEATH one device: the caller opens
  a ``comms_loss`` alert at once (`models.equipment.EquipmentState.comms_lost`);
- sequence numbers (0-255) are checked per node: a gap is counted and a rebirth requested (NCMD
  ``Node Control/Rebirth``), as is data from a node whose birth this host has not seen;
- ``is_historical`` metrics become historical readings (stored and learned, no live alerts); a ``Quality``
  property (OPC DA quality byte, as Ignition sends it) becomes the value's quality;
- a payload that does not decode, an unknown alias, a birth for a group no tenant owns: counted per device
  (`SparkplugHost.counters`) and, where a tenant is known, dead-lettered with the reason.

The protobuf code is generated from ``schema/sparkplug_b.proto`` (the Eclipse Tahu schema) by grpcio-tools' bundled
protoc and checked in as ``schema/sparkplug_b_pb2.py``: protoc is on PyPI (grpcio-tools), so the generated module is
reproducible, and importing it costs nothing at run time (no .proto parsing on every start).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
import tomllib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily

from schema import sparkplug_b_pb2 as pb
from schema.ids import InvalidIdentifier, check_equipment_id, check_tenant_id
from schema.sparkplug import BD_SEQ, REBIRTH, SUBJECT_FILTER, SparkplugError, Topic, parse_topic

log = logging.getLogger(__name__)

_SENSOR_CHARS = re.compile(r"[^a-z0-9]+")
_SIGNED_BITS: dict[int, int] = {pb.Int8: 8, pb.Int16: 16, pb.Int32: 32, pb.Int64: 64}
_NUMERIC: frozenset[int] = frozenset({pb.Int8, pb.Int16, pb.Int32, pb.Int64, pb.UInt8, pb.UInt16, pb.UInt32,
                                      pb.UInt64, pb.Float, pb.Double, pb.Boolean})


def sensor_name(metric: str) -> str:
    """A metric's name as a WellPulse sensor name.

    >>> sensor_name("Pressure/Tubing PSI")
    'pressure_tubing_psi'
    """
    name = _SENSOR_CHARS.sub("_", metric.lower()).strip("_")[:64]
    if not name:
        raise SparkplugError(f"metric name {metric!r} has no usable characters", "bad_metric")
    return name


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SparkplugConfig:
    """Which tenant a group belongs to, which equipment a device is.

    ``groups``: group -> tenant; with ``groups_are_tenants`` a group not listed that is a valid tenant id is that
    tenant. ``equipment``: ``"group/node/device"`` (or ``"group/node"`` for a node's own metrics) -> equipment id;
    a device not listed is the equipment of its own name.
    """

    groups: dict[str, str] = field(default_factory=dict)
    equipment: dict[str, str] = field(default_factory=dict)
    groups_are_tenants: bool = True

    @classmethod
    def from_toml(cls, path: Path) -> SparkplugConfig:
        """``[groups]`` and ``[equipment]`` tables, and ``groups_are_tenants``."""
        data = tomllib.loads(Path(path).read_text())
        groups = {str(g): check_tenant_id(str(t)) for g, t in data.get("groups", {}).items()}
        equipment = {str(k): check_equipment_id(str(v)) for k, v in data.get("equipment", {}).items()}
        return cls(groups, equipment, bool(data.get("groups_are_tenants", True)))

    def tenant_of(self, group: str) -> str | None:
        if group in self.groups:
            return self.groups[group]
        if not self.groups_are_tenants:
            return None
        try:
            return check_tenant_id(group)
        except InvalidIdentifier:
            return None

    def equipment_of(self, topic: Topic) -> str:
        name = self.equipment.get(topic.key) or (topic.device or topic.node)
        try:
            return check_equipment_id(name)
        except InvalidIdentifier as exc:
            raise SparkplugError(f"{topic.key}: {exc}; map it in [equipment]", "bad_equipment") from exc


# ---------------------------------------------------------------- decoding


@dataclass
class Outcome:
    """What one message means for WellPulse (the bridge does the IO)."""

    tenant: str | None = None
    readings: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # equipment -> Reading JSON
    sensors: dict[str, dict[str, str]] = field(default_factory=dict)  # equipment -> sensor -> unit (births)
    offline: list[str] = field(default_factory=list)  # equipment whose communication was lost
    rebirth: Topic | None = None  # the node to ask for a rebirth
    error: SparkplugError | None = None


@dataclass
class _Node:
    seq: int | None = None
    bd_seq: int | None = None
    aliases: dict[int, tuple[str, int]] = field(default_factory=dict)  # alias -> (metric name, datatype)
    devices: set[str] = field(default_factory=set)


def _number(metric: Any, datatype: int) -> float | None:
    """A metric's numeric value (None: null, or not a number WellPulse stores)."""
    if metric.is_null or datatype not in _NUMERIC:
        return None
    kind = metric.WhichOneof("value")
    if kind is None:
        return None
    raw = getattr(metric, kind)
    if kind in ("int_value", "long_value") and datatype in _SIGNED_BITS:
        bits = _SIGNED_BITS[datatype]
        raw &= (1 << bits) - 1
        if raw >= 1 << (bits - 1):
            raw -= 1 << bits
    if not isinstance(raw, (int, float, bool)):
        return None
    return float(raw)


def _property(metric: Any, key: str) -> Any:
    props = metric.properties
    for k, v in zip(props.keys, props.values, strict=False):
        if k == key and not v.is_null:
            kind = v.WhichOneof("value")
            return None if kind is None else getattr(v, kind)
    return None


def _quality(metric: Any) -> str | None:
    """The ``Quality`` property (an OPC DA quality: 0xC0 good, 0x40 uncertain, 0x00 bad) as a WellPulse quality."""
    q = _property(metric, "Quality")
    if not isinstance(q, int):
        return None
    top = q & 0xC0
    return None if top == 0xC0 else "bad" if top == 0 else "uncertain"


class SparkplugHost:
    """The Sparkplug B host's state: births, aliases and sequence numbers per edge node; counters per device."""

    def __init__(self, config: SparkplugConfig) -> None:
        self.config = config
        self.nodes: dict[tuple[str, str], _Node] = {}
        self.counters: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def count(self, topic: Topic, what: str, n: int = 1) -> None:
        self.counters[topic.key][what] += n

    def handle(self, topic: Topic, data: bytes, now: datetime | None = None) -> Outcome:
        """One message: never raises; an unusable one comes back with `Outcome.error` (and is counted)."""
        out = Outcome(tenant=self.config.tenant_of(topic.group))
        try:
            if out.tenant is None:
                raise SparkplugError(f"group {topic.group!r} belongs to no tenant", "foreign_group")
            try:
                payload = pb.Payload.FromString(data)
            except DecodeError as exc:
                raise SparkplugError(f"payload does not decode as Sparkplug B: {exc}", "bad_payload") from exc
            self._handle(topic, payload, now or datetime.now(UTC), out)
        except SparkplugError as exc:
            out.error = exc
            self.count(topic, exc.code)
        return out

    def _handle(self, topic: Topic, payload: Any, now: datetime, out: Outcome) -> None:
        kind = topic.message_type
        node_key = (topic.group, topic.node)
        if kind in ("NCMD", "DCMD"):
            return  # commands to the edge (our own rebirth requests among them)
        if kind == "NDEATH":
            self._node_death(topic, payload, out)
            return
        if kind in ("NBIRTH", "DBIRTH"):
            self.count(topic, "births")
        if kind == "NBIRTH":
            self.nodes[node_key] = _Node(seq=payload.seq if payload.HasField("seq") else 0)
        node = self.nodes.get(node_key)
        if node is None:
            self.count(topic, "unborn")  # data from a node whose birth we missed: ask for one
            out.rebirth = topic
            node = self.nodes[node_key] = _Node()
        elif kind != "NBIRTH":
            self._check_seq(topic, node, payload, out)
        if kind == "DDEATH":
            node.devices.discard(topic.device or "")
            out.offline.append(self.config.equipment_of(topic))
            self.count(topic, "deaths")
            return
        equipment = self.config.equipment_of(topic)
        if kind == "DBIRTH":
            node.devices.add(topic.device or "")
        birth = kind in ("NBIRTH", "DBIRTH")
        self._metrics(topic, node, payload, equipment, birth, now, out)

    def _check_seq(self, topic: Topic, node: _Node, payload: Any, out: Outcome) -> None:
        seq = payload.seq if payload.HasField("seq") else None
        if seq is None or node.seq is None:
            node.seq = seq
            return
        expected = (node.seq + 1) % 256
        node.seq = seq
        if seq != expected:
            self.count(topic, "seq_gaps")
            out.rebirth = topic

    def _node_death(self, topic: Topic, payload: Any, out: Outcome) -> None:
        node = self.nodes.get((topic.group, topic.node))
        bd_seq = next((int(m.long_value or m.int_value) for m in payload.metrics if m.name == BD_SEQ), None)
        if node is not None and node.bd_seq is not None and bd_seq is not None and bd_seq != node.bd_seq:
            self.count(topic, "stale_deaths")  # the will of an earlier session, delivered late
            return
        self.nodes.pop((topic.group, topic.node), None)
        self.count(topic, "deaths")
        devices = sorted(node.devices) if node is not None else []
        for device in devices:
            out.offline.append(self.config.equipment_of(Topic(topic.group, "DDEATH", topic.node, device)))
        own = self.config.equipment.get(topic.key)
        if own is not None or not devices:
            out.offline.append(self.config.equipment_of(topic))

    def _metrics(self, topic: Topic, node: _Node, payload: Any, equipment: str, birth: bool, now: datetime,
                 out: Outcome) -> None:
        snapshots: dict[tuple[int, bool], dict[str, Any]] = {}
        default_ts = payload.timestamp if payload.HasField("timestamp") else int(now.timestamp() * 1000)
        unknown = 0
        for metric in payload.metrics:
            name, datatype = self._resolve(node, metric, birth)
            if name is None:
                unknown += 1
                continue
            if name == BD_SEQ and topic.message_type == "NBIRTH":
                node.bd_seq = int(metric.long_value or metric.int_value)
                continue
            if name.startswith(("Node Control/", "Device Control/", "Properties/")) or name == BD_SEQ:
                continue
            sensor = sensor_name(name)
            if birth and datatype in _NUMERIC:
                unit = _property(metric, "engUnit")
                out.sensors.setdefault(equipment, {})[sensor] = unit if isinstance(unit, str) else ""
            value = _number(metric, datatype)
            if value is None:
                continue
            ts = metric.timestamp if metric.HasField("timestamp") else default_ts
            snap = snapshots.setdefault((ts, metric.is_historical), {"values": {}, "quality": {}})
            snap["values"][sensor] = value
            quality = _quality(metric)
            if quality is not None:
                snap["quality"][sensor] = quality
        self.count(topic, "metrics", len(payload.metrics) - unknown)
        for (ts, historical), snap in sorted(snapshots.items()):
            reading: dict[str, Any] = {"equipment_id": equipment,
                                       "ts": datetime.fromtimestamp(ts / 1000, UTC).isoformat(),
                                       "values": snap["values"]}
            if snap["quality"]:
                reading["quality"] = snap["quality"]
            if historical:
                reading["historical"] = True
            out.readings.setdefault(equipment, []).append(reading)
        if unknown:
            self.count(topic, "unknown_alias", unknown)
            out.rebirth = out.rebirth or topic
            out.error = SparkplugError(f"{unknown} metric(s) with an alias the birth did not declare", "unknown_alias")

    @staticmethod
    def _resolve(node: _Node, metric: Any, birth: bool) -> tuple[str | None, int]:
        """(name, datatype) of a metric: from itself, and its alias recorded at birth; from the alias alone later."""
        if metric.HasField("name"):
            if birth and metric.HasField("alias"):
                node.aliases[metric.alias] = (metric.name, metric.datatype)
            datatype = metric.datatype if metric.HasField("datatype") else pb.Double
            return metric.name, datatype
        if metric.HasField("alias") and metric.alias in node.aliases:
            name, datatype = node.aliases[metric.alias]
            return name, metric.datatype if metric.HasField("datatype") else datatype
        return None, 0


class SparkplugCounters:
    """`SparkplugHost.counters` as Prometheus counters, read at each scrape (``--metrics-port`` serves them):
    ``wellpulse_sparkplug_events_total{device="group/node/device", kind=...}``, kind ``metrics``, ``seq_gaps``,
    ``bad_payload``, ``unknown_alias``, ``foreign_group``, ``deaths`` and the others the host counts.

    >>> host = SparkplugHost(SparkplugConfig())
    >>> host.count(parse_topic("spBv1.0/east/DDATA/rtu-7/PJ-1"), "bad_payload")
    >>> registry = SparkplugCounters(host).registry()
    >>> registry.get_sample_value("wellpulse_sparkplug_events_total", {"device": "east/rtu-7/PJ-1",
    ...                                                                 "kind": "bad_payload"})
    1.0
    """

    def __init__(self, host: SparkplugHost) -> None:
        self.host = host

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("wellpulse_sparkplug_events", "Sparkplug messages and problems, per device",
                                     labels=["device", "kind"])
        for device, kinds in list(self.host.counters.items()):
            for kind, n in list(kinds.items()):
                family.add_metric([device, kind], float(n))
        yield family

    def registry(self) -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return registry


def rebirth_payload(now: datetime | None = None) -> bytes:
    """NCMD ``Node Control/Rebirth = true``."""
    payload = pb.Payload(timestamp=int((now or datetime.now(UTC)).timestamp() * 1000))
    metric = payload.metrics.add()
    metric.name, metric.datatype, metric.boolean_value = REBIRTH, pb.Boolean, True
    return payload.SerializeToString()


# ---------------------------------------------------------------- the bridge (IO)


class SparkplugBridge:
    """Runs a `SparkplugHost` on a NATS connection: readings to ``tele.<tenant>.<equipment>`` (JetStream, so the
    publish is acknowledged), births' sensors to the registry (``register``: an async callable, when the bridge has
    the database), deaths to ``ctl.<tenant>`` as ``comms_loss`` commands, rebirth requests to NCMD, unusable
    messages to ``dlq.<tenant>`` (the payload base64-encoded)."""

    def __init__(self, nc: Any, config: SparkplugConfig, register: Any = None) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.host = SparkplugHost(config)
        self.register = register
        self.rebirths_requested = 0
        self._sub: Any = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(SUBJECT_FILTER, cb=self.on_message)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def on_message(self, msg: Any) -> None:
        try:
            topic = parse_topic(msg.subject)
        except SparkplugError:
            return  # STATE and other namespaces' topics
        async with self._lock:  # one message at a time: sequence numbers are in order
            try:
                await self.apply(topic, msg.data, self.host.handle(topic, msg.data))
            except Exception:  # the bridge must outlive any one message
                log.exception("sparkplug message on %s failed", msg.subject)
                self.host.count(topic, "errors")

    async def apply(self, topic: Topic, data: bytes, out: Outcome) -> None:
        from schema.subjects import ctl_subject, tele_subject
        from store import bus

        tenant = out.tenant
        if tenant is None:
            log.warning("sparkplug: %s", out.error.reason if out.error else "no tenant")
            return
        if out.sensors and self.register is not None:
            await self.register(tenant, out.sensors)
        for equipment, readings in out.readings.items():
            await self.js.publish(tele_subject(tenant, equipment), json.dumps({"readings": readings}).encode())
        now = datetime.now(UTC).isoformat()
        for equipment in out.offline:
            await self.nc.publish(ctl_subject(tenant), json.dumps(
                {"reload": "comms_loss", "equipment_id": equipment, "ts": now,
                 "reason": f"Sparkplug {topic.message_type} from {topic.key}"}).encode())
        if out.rebirth is not None:
            self.rebirths_requested += 1
            command = Topic(out.rebirth.group, "NCMD", out.rebirth.node)
            await self.nc.publish(command.subject(), rebirth_payload())
        if out.error is not None:
            await bus.publish_dlq(self.js, tenant, subject=topic.subject(), payload=base64.b64encode(data),
                                  reason=f"sparkplug {out.error.code}: {out.error.reason}",
                                  headers={"WellPulse-Encoding": "base64"})
        if out.offline or out.readings:
            await self.nc.flush()


async def register_sensors(pool: Any, tenant: str, sensors: dict[str, dict[str, str]]) -> None:
    """A birth's metrics as the equipment's sensors (with units); a sensor already registered keeps its details."""
    from store import assets as asset_store
    from store.db import tenant_tx

    async with tenant_tx(pool, tenant) as conn:
        await asset_store.register_seen_equipment(conn, tenant, list(sensors))
        await asset_store.register_seen_sensors(conn, tenant, [(e, s, u) for e, units in sensors.items()
                                                               for s, u in units.items()])


async def run_bridge(nats_url: str, config: SparkplugConfig, database_url: str | None,
                     stop: asyncio.Event | None = None, stats_every: float = 60.0,
                     metrics_port: int | None = None) -> None:
    """``wellpulse sparkplug bridge``: run until `stop` is set (or for ever), logging the counters (and serving
    them to Prometheus on `metrics_port`)."""
    import nats

    from store import db

    nc = await nats.connect(nats_url, name="sparkplug-bridge")
    pool = await db.create_pool(database_url) if database_url else None

    async def register(tenant: str, sensors: dict[str, dict[str, str]]) -> None:
        await register_sensors(pool, tenant, sensors)

    bridge = SparkplugBridge(nc, config, register if pool is not None else None)
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, registry=SparkplugCounters(bridge.host).registry())
    await bridge.start()
    stop = stop or asyncio.Event()
    try:
        last = time.monotonic()
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=stats_every)
            except TimeoutError:
                pass
            if time.monotonic() - last >= stats_every:
                last = time.monotonic()
                log.info("sparkplug counters: %s", json.dumps(bridge.host.counters))
    finally:
        await bridge.stop()
        await nc.close()
        if pool is not None:
            await pool.close()
