"""Store-and-forward at the edge: a local NATS JetStream holds every reading until the hub has acknowledged it.

With ``[nats.edge]`` in a gateway's configuration the gateway starts its own nats-server (`store.embedded`, the
binary WellPulse already ships, with JetStream on disk under ``data_dir``) and publishes there, so polling and
subscribing never wait on the WAN. The ``EDGE_BUFFER`` stream (work-queue retention: a message is deleted once
forwarded) holds ``tele.<tenant>.>``; a forwarder reads it through a durable pull consumer, in stream order, and
publishes each message to the hub's TELEMETRY stream with the tenant's feed credentials and the message's own
``Nats-Msg-Id``, and acknowledges it locally only after the hub's PubAck. So:

- nothing is lost: a message leaves the local disk only once the hub holds it, and the buffer survives a gateway
  restart (the consumer's ack floor is on disk too);
- nothing is doubled: a message re-sent after a lost ack has the same ``Nats-Msg-Id`` (the hub's 2-minute dedup
  window) and the same readings key (the store's ``ON CONFLICT DO NOTHING``) for anything later;
- order is kept: one message in flight at a time; on a failure the unsent rest of the batch is nak'ed and comes
  back first, in sequence order.

Why not a leaf node whose stream the hub's TELEMETRY sources (``$JS.<domain>.API``)? That needs the hub to change
per gateway (a leaf listener, a leaf user allowed the JetStream API of the gateway's domain, a source added to
TELEMETRY), and a leaf link would also carry every local ``tele.>`` publish to the hub as core NATS, a second copy
beside the sourced one. Pushing with the feed credentials asks nothing of the hub: to it the edge is a feed.

Late readings are marked ``historical``. A message forwarded more than ``late_after_s`` (default 10 s) after the
local JetStream stored it (both instants on the gateway's own clock, so a device's clock skew does not matter)
waited out an outage, or the catch-up after one: its readings get ``"historical": true`` and the hub stores and
learns them without opening, updating or resolving an alert (`models.equipment.EquipmentState`). So a stale-data
or ``comms_loss`` alert that opened while the link was down stays open through the catch-up and is resolved by the
first live reading: it fires once, and a value out of limits during the outage raises no alert after the fact.
Anything forwarded sooner is byte for byte what the gateway published. Why an age rather than "published while
the link was down": the forwarder learns of a cut only when a send fails (up to ``ack_timeout`` later), and a
backlog left on disk by a gateway restart is as late as one left by a cut link.

Measured on this machine (2 cores, ``python -m bench.gateway_edge``): 20,000 buffered readings (five minutes of a
67 readings/s site), each marked historical on the way, reach the hub at 2,186 readings/s, 0.86 of publishing
straight to the hub with the same awaited PubAck per message (2,557/s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from gateway.publish import CONNECT_TIMEOUT_S, GatewayMetrics
from schema.ids import check_tenant_id
from schema.subjects import tele_tenant_filter
from store.nats_auth import feed_inbox_prefix, redact_url, url_user

__all__ = ["DEFAULT_LATE_AFTER_S", "EDGE_STREAM", "FORWARDER", "EdgeBuffer", "mark_historical"]

log = logging.getLogger(__name__)

EDGE_STREAM = "EDGE_BUFFER"
FORWARDER = "hub-forwarder"
DEFAULT_LATE_AFTER_S = 10.0


def mark_historical(data: bytes) -> bytes:
    """The message with every snapshot marked ``historical`` (one snapshot, or a ``readings`` list); a body that
    is not such JSON is returned as it is (the hub dead-letters it with its reason).

    >>> mark_historical(b'{"equipment_id":"PJ-1","ts":"2026-12-04T06:00:00Z","values":{"a":1}}')
    b'{"equipment_id":"PJ-1","ts":"2026-12-04T06:00:00Z","values":{"a":1},"historical":true}'
    >>> mark_historical(b'{"readings":[{"values":{}},{"values":{}}]}')
    b'{"readings":[{"values":{},"historical":true},{"values":{},"historical":true}]}'
    >>> mark_historical(b'not json')
    b'not json'
    """
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data
    if not isinstance(body, dict):
        return data
    snapshots = body.get("readings") if "readings" in body else [body]
    if not isinstance(snapshots, list):
        return data
    for snapshot in snapshots:
        if isinstance(snapshot, dict):
            snapshot["historical"] = True
    return orjson.dumps(body)


class EdgeBuffer:
    """The local server, its stream, and the forwarder to ``hub_url``. `local_url` is where the gateway publishes
    (the local server's feed user for ``tenant``)."""

    def __init__(self, data_dir: Path, tenant: str, hub_url: str, metrics: GatewayMetrics, *,
                 port: int | None = None, max_bytes: int = 1 << 30, batch: int = 256,
                 ack_timeout: float = 5.0, backoff_max_s: float = 10.0,
                 late_after_s: float = DEFAULT_LATE_AFTER_S) -> None:
        self.data_dir = Path(data_dir)
        self.tenant = check_tenant_id(tenant)
        self.hub_url = hub_url
        self.metrics = metrics
        self.port = port
        self.max_bytes = max_bytes
        self.batch = batch
        self.ack_timeout = ack_timeout
        self.backoff_max_s = backoff_max_s
        self.late_after_s = late_after_s
        self.forwarded = 0
        self.forwarded_historical = 0
        self._server: Any = None
        self._local: Any = None

    @property
    def local_url(self) -> str:
        if self._server is None:
            raise RuntimeError("EdgeBuffer.start() has not run")
        url: str = self._server.feed_url(self.tenant)
        return url

    async def start(self) -> EdgeBuffer:
        import nats
        from nats.js.api import (
            AckPolicy,
            ConsumerConfig,
            DiscardPolicy,
            RetentionPolicy,
            StorageType,
            StreamConfig,
        )

        from store.embedded import EmbeddedNats

        self._server = await asyncio.to_thread(
            EmbeddedNats(self.data_dir, port=self.port, tenants=[self.tenant]).start)
        self._local = await nats.connect(self._server.url, name="wellpulse-edge-forwarder")
        js = self._local.jetstream()
        config = StreamConfig(name=EDGE_STREAM, subjects=[tele_tenant_filter(self.tenant)],
                              storage=StorageType.FILE, retention=RetentionPolicy.WORK_QUEUE,
                              discard=DiscardPolicy.OLD, max_bytes=self.max_bytes, duplicate_window=120.0)
        try:
            await js.add_stream(config)
        except Exception:  # exists from an earlier run: keep its messages, apply the limits given now
            await js.update_stream(config)
        await js.add_consumer(EDGE_STREAM, ConsumerConfig(
            durable_name=FORWARDER, ack_policy=AckPolicy.EXPLICIT, max_ack_pending=self.batch, ack_wait=30.0))
        log.info("edge buffer on %s (JetStream in %s)", redact_url(self._server.public_url), self.data_dir)
        return self

    async def pending(self) -> int:
        """Messages not yet forwarded (waiting, or sent and not yet acknowledged)."""
        info = await self._local.jetstream().consumer_info(EDGE_STREAM, FORWARDER)
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def _connect_hub(self) -> Any:
        import nats

        async def on_error(exc: Exception) -> None:
            log.debug("hub NATS: %r", exc)

        user = url_user(self.hub_url) or ""
        inbox = feed_inbox_prefix(self.tenant) if user.startswith("feed-") else "_INBOX"
        while True:  # the hub may be unreachable when the gateway starts: that is what the buffer is for
            try:
                return await asyncio.wait_for(nats.connect(
                    self.hub_url, name=f"wellpulse-edge:{self.tenant}", inbox_prefix=inbox,
                    max_reconnect_attempts=-1, reconnect_time_wait=0.5, error_cb=on_error,
                    allow_reconnect=True), timeout=CONNECT_TIMEOUT_S)
            except Exception as exc:
                log.info("hub %s not reachable yet: %r", redact_url(self.hub_url), exc)
                await asyncio.sleep(1.0)

    def _is_late(self, msg: Any) -> bool:
        """Stored locally more than ``late_after_s`` ago (the stream's timestamp, from the ack subject)."""
        try:
            stored: datetime = msg.metadata.timestamp
        except Exception:  # not a JetStream delivery: cannot be late
            return False
        return (datetime.now(UTC) - stored).total_seconds() > self.late_after_s

    async def _send(self, hub_js: Any, hub: Any, msg: Any) -> bool:
        if not hub.is_connected:
            return False
        data, late = msg.data, self._is_late(msg)
        if late:
            data = mark_historical(data)
        try:
            await hub_js.publish(msg.subject, data, timeout=self.ack_timeout, headers=msg.headers)
        except Exception as exc:
            log.debug("forward failed: %r", exc)
            return False
        if late:
            self.forwarded_historical += 1
            self.metrics.forwarded_historical.inc()
        return True

    async def forward(self, stop: asyncio.Event) -> None:
        """Forward until ``stop``; on a failure nak the unsent rest and back off (doubling, bounded)."""
        hub = await self._connect_hub()
        hub_js = hub.jetstream()
        sub = await self._local.jetstream().pull_subscribe_bind(FORWARDER, stream=EDGE_STREAM)
        failures = 0
        try:
            while not stop.is_set():
                try:
                    msgs = await sub.fetch(self.batch, timeout=0.5)
                except TimeoutError:
                    continue
                for i, msg in enumerate(msgs):
                    if not await self._send(hub_js, hub, msg):
                        failures += 1
                        self.metrics.errors.labels("edge", "forward").inc()
                        for rest in msgs[i:]:
                            await rest.nak()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), min(0.1 * 2.0 ** min(failures, 20),
                                                                    self.backoff_max_s))
                        break
                    failures = 0
                    await msg.ack()
                    self.forwarded += 1
                    self.metrics.forwarded.inc()
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            with contextlib.suppress(Exception):
                await hub.close()

    async def drain(self, timeout: float) -> int:
        """Wait (bounded) until everything is forwarded; the messages still waiting."""
        deadline = asyncio.get_running_loop().time() + timeout
        # The state polled is the server's (the consumer's ack floor): no local event to wait on.
        while (left := await self.pending()) and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return left

    async def stop(self) -> None:
        if self._local is not None:
            with contextlib.suppress(Exception):
                await self._local.close()
            self._local = None
        if self._server is not None:
            await asyncio.to_thread(self._server.stop)
            self._server = None
