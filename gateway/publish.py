"""What every gateway shares: its metrics, and publishing `schema.telemetry.Reading` s to NATS like any feed.

A reading goes to JetStream ``tele.<tenant>.<equipment>`` (`schema.subjects.tele_subject`) as WellPulse JSON, with
``Nats-Msg-Id: <tenant>/<equipment>@<ts>`` (`schema.subjects.tele_msg_id`): a gateway that sends one snapshot twice
(a retry after a lost ack) is deduplicated by the stream, and again by the readings' primary key. The connection
uses a tenant's feed credentials (``wellpulse nats feed-credentials T``), which may publish only to that tenant's
subjects and receive PubAcks only under `store.nats_auth.feed_inbox_prefix`.

>>> from datetime import UTC, datetime
>>> r = Reading(equipment_id="PJ-1", ts=datetime(2026, 12, 4, 6, 0, tzinfo=UTC), values={"a": 1.5})
>>> encode_reading(r)
b'{"equipment_id":"PJ-1","ts":"2026-12-04T06:00:00.000Z","values":{"a":1.5}}'
>>> message_id("acme", r)
'acme/PJ-1@2026-12-04T06:00:00.000Z/e8b7be43'
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from schema.ids import check_tenant_id
from schema.subjects import tele_msg_id, tele_subject
from schema.telemetry import Reading
from store.nats_auth import feed_inbox_prefix, redact_url, url_user

if TYPE_CHECKING:
    from gateway.config import NatsConfig

__all__ = ["GatewayMetrics", "ReadingPublisher", "encode_reading", "message_id", "open_publisher"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0


class GatewayMetrics:
    """A gateway's Prometheus metrics in a registry of its own (``--metrics-port`` serves it), labelled by
    ``device`` (the equipment id a device or node maps to).

    ``errors_total{kind}``: ``exception`` (a Modbus exception response), ``timeout``, ``connect``, ``decode`` (a
    value that is not a finite number), ``subscribe`` (an OPC UA node refused). ``comms_lost`` is 1 while a device
    has failed ``comms_loss_after`` polls in a row; ``comms_loss_total`` counts the times that began. The OPC UA
    gateway reports its connection under ``device="opcua"`` (``polls_total`` there counts sessions subscribed) and
    the edge buffer under ``device="edge"`` (``errors_total{kind="forward"}``: a send to the hub that failed).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        p = "wellpulse_gateway_"
        self.polls = Counter(p + "polls", "Polls that answered", ["device"], registry=self.registry)
        self.errors = Counter(p + "errors", "Failed polls, refused items and values not read",
                              ["device", "kind"], registry=self.registry)
        self.comms_lost = Gauge(p + "comms_lost", "1 while a device is not answering", ["device"],
                                registry=self.registry)
        self.comms_loss = Counter(p + "comms_loss", "Times a device stopped answering", ["device"],
                                  registry=self.registry)
        self.published = Counter(p + "published", "Readings acknowledged by JetStream", ["device"],
                                 registry=self.registry)
        self.publish_errors = Counter(p + "publish_errors", "Readings JetStream did not acknowledge", ["device"],
                                      registry=self.registry)
        self.forwarded = Counter(p + "edge_forwarded", "Messages the edge buffer forwarded to the hub",
                                 registry=self.registry)
        self.forwarded_historical = Counter(p + "edge_forwarded_historical",
                                            "Forwarded messages marked historical (they waited past late_after_s)",
                                            registry=self.registry)
        self.not_good = Counter(p + "values_not_good", "Values published with quality uncertain or bad",
                                ["device", "quality"], registry=self.registry)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 if never set): for tests and the CLI's summary."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found


def _ts(reading: Reading) -> str:
    return reading.ts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"  # UTC (the model's), to the millisecond


def message_id(tenant_id: str, reading: Reading) -> str:
    """Stable per snapshot: the same tenant, equipment, instant and sensors give the same id, whoever sends it
    again; two readings of one instant with different sensors (OPC UA nodes notified apart) keep apart."""
    sensors = zlib.crc32(",".join(sorted(reading.values)).encode())
    return tele_msg_id(tenant_id, f"{reading.equipment_id}@{_ts(reading)}/{sensors:08x}")


def encode_reading(reading: Reading) -> bytes:
    """WellPulse JSON; ``quality`` and ``historical`` only when they say something."""
    body: dict[str, Any] = {"equipment_id": reading.equipment_id,
                            "ts": _ts(reading), "values": reading.values}
    if reading.quality:
        body["quality"] = reading.quality
    if reading.historical:
        body["historical"] = True
    return orjson.dumps(body)


class ReadingPublisher:
    """One NATS connection for a gateway; `publish` waits for the JetStream ack (bounded by ``ack_timeout``).

    A gateway sends a few messages per device per second, so an awaited ack per message costs nothing that
    matters and keeps the accounting exact: a reading is counted published only once the stream holds it. A
    reading that could not be published (the link is down, no ack in time) is counted and logged, never retried
    here: without an edge buffer the next poll's values supersede it.
    """

    def __init__(self, nats_url: str, tenant: str, metrics: GatewayMetrics, *, ack_timeout: float = 5.0,
                 name: str = "wellpulse-gateway") -> None:
        self.nats_url = nats_url
        self.tenant = check_tenant_id(tenant)
        self.metrics = metrics
        self.ack_timeout = ack_timeout
        self.name = name
        self._nc: Any = None
        self._js: Any = None
        self._logged_errors = 0

    async def connect(self) -> None:
        import nats

        async def on_error(exc: Exception) -> None:
            log.warning("NATS: %r", exc)

        user = url_user(self.nats_url) or ""
        # A feed user may receive PubAcks only under its own inbox prefix; the app user anywhere.
        inbox = feed_inbox_prefix(self.tenant) if user.startswith("feed-") else "_INBOX"
        try:
            self._nc = await asyncio.wait_for(
                nats.connect(self.nats_url, name=f"{self.name}:{self.tenant}", inbox_prefix=inbox,
                             max_reconnect_attempts=-1, reconnect_time_wait=1, error_cb=on_error),
                timeout=CONNECT_TIMEOUT_S)
        except TimeoutError as exc:
            raise ConnectionError(f"no NATS at {redact_url(self.nats_url)} within {CONNECT_TIMEOUT_S:.0f}s") from exc
        self._js = self._nc.jetstream()

    async def publish(self, reading: Reading) -> bool:
        """``True`` once JetStream acknowledged the reading (or already held it)."""
        if self._js is None:
            raise RuntimeError("ReadingPublisher.connect() has not run")
        device = reading.equipment_id
        try:
            await self._js.publish(tele_subject(self.tenant, device), encode_reading(reading),
                                   timeout=self.ack_timeout, headers={"Nats-Msg-Id": message_id(self.tenant, reading)})
        except Exception as exc:  # timeouts, no responders, disconnected: counted, the gateway goes on
            self.metrics.publish_errors.labels(device).inc()
            if self._logged_errors < 20:
                self._logged_errors += 1
                log.warning("publish of %s failed: %r", device, exc)
            return False
        self.metrics.published.labels(device).inc()
        for quality in reading.quality.values():
            self.metrics.not_good.labels(device, quality).inc()
        return True

    async def close(self) -> None:
        if self._nc is None:
            return
        try:
            await self._nc.drain()
        except Exception:
            with contextlib.suppress(Exception):
                await self._nc.close()
        self._nc = self._js = None


@contextlib.asynccontextmanager
async def open_publisher(nats_config: NatsConfig, nats_url: str, metrics: GatewayMetrics,
                         name: str) -> AsyncIterator[ReadingPublisher]:
    """A connected publisher: straight to ``nats_url``, or, with ``[nats.edge]``, into the local edge buffer whose
    forwarder sends on to ``nats_url``. On exit the buffer gets ``drain_timeout_s`` to empty; what is left stays on
    disk and goes out on the next start."""
    edge = forwarder = None
    forwarder_stop = asyncio.Event()
    url = nats_url
    if nats_config.edge is not None:
        from gateway.edge import EdgeBuffer

        cfg = nats_config.edge
        edge = await EdgeBuffer(cfg.data_dir, nats_config.tenant, nats_url, metrics, port=cfg.port or None,
                                max_bytes=cfg.max_bytes, ack_timeout=nats_config.ack_timeout_s,
                                late_after_s=cfg.late_after_s).start()
        forwarder = asyncio.create_task(edge.forward(forwarder_stop))
        url = edge.local_url
    publisher = ReadingPublisher(url, nats_config.tenant, metrics, ack_timeout=nats_config.ack_timeout_s, name=name)
    try:
        await publisher.connect()
        yield publisher
    finally:
        await publisher.close()
        if edge is not None and forwarder is not None:
            left = await edge.drain(nats_config.edge.drain_timeout_s if nats_config.edge else 0)
            if left:
                log.warning("%d readings still in the edge buffer; they go out on the next start", left)
            forwarder_stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(forwarder, timeout=5)
            await edge.stop()
