"""Publishing the feed: paced to a rate, to JetStream ``tele.<tenant>.<equipment>`` with ``Nats-Msg-Id`` so
resends dedup; ``simctl.<tenant>`` accepts faults on demand while it runs, and each fault's ground truth is
announced on ``simctl.<tenant>.faults`` and appended to a file.

Subjects come from `schema.subjects`, the TELEMETRY stream's configuration from `store.bus`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import orjson
from pydantic import BaseModel, ConfigDict, Field

from schema.ids import EquipmentId, SensorName, check_tenant_id
from schema.subjects import (
    TELEMETRY_STREAM,
    TELEMETRY_SUBJECTS,
    simctl_subject,
    simctl_truth_subject,
    tele_msg_id,
    tele_subject,
)
from sim.faults import Fault, FaultKind, FaultSchedule
from sim.feed import FeedSimulator, MessageBatcher, SimMessage
from sim.fleet import demo_fleet, snapshot_interval, truncate_ms
from sim.normal import NormalBehaviour
from store.nats_auth import FEED_USER_PREFIX, feed_inbox_prefix, redact_url, url_user

__all__ = ["DEFAULT_NATS_URL", "SimulationStats", "ensure_telemetry_stream", "run_simulation"]

log = logging.getLogger(__name__)

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
# Async publishes in flight at most (JetStream acks outstanding). Bounded so a slow or absent server
# applies backpressure to the generator instead of growing memory; ~1 s of the default rate and well
# under the ~28k msg/s measured for publish_async here.
MAX_OUTSTANDING_PUBLISHES = 2_000
ACK_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0


@dataclass(slots=True)
class SimulationStats:
    """What a run did; ``readings`` counts sensor values (the unit of ``rate``), not snapshots."""

    messages: int = 0
    readings: int = 0
    faults_injected: int = 0
    elapsed_s: float = 0.0
    acked: int = 0
    duplicates: int = 0
    publish_errors: int = 0


class _ControlMessage(BaseModel):
    """Body of a ``simctl.<tenant>`` message: inject this fault now."""

    model_config = ConfigDict(extra="forbid")

    equipment_id: EquipmentId
    kind: FaultKind
    sensor: SensorName | None = None
    duration_s: float | None = Field(default=None, gt=0, le=7 * 24 * 3600, allow_inf_nan=False)


async def ensure_telemetry_stream(js: Any) -> None:
    """Create the TELEMETRY stream if missing (as the app creates it, `store.bus.telemetry_stream_config`), or
    add ``tele.>`` to it if it lacks that subject.

    An existing stream's limits are left alone: someone operating it may have tuned them; the simulator
    only needs its subjects to be captured.
    """
    from nats.js.errors import APIError, NotFoundError

    from store.bus import telemetry_stream_config

    for attempt in range(2):
        try:
            info = await js.stream_info(TELEMETRY_STREAM)
        except NotFoundError:
            try:
                await js.add_stream(telemetry_stream_config())
                log.info("created stream %s on %s", TELEMETRY_STREAM, TELEMETRY_SUBJECTS)
                return
            except APIError:
                if attempt:  # someone else created it between our two calls; look again once
                    raise
                continue
        subjects = list(info.config.subjects or [])
        if TELEMETRY_SUBJECTS not in subjects:
            await js.update_stream(info.config.evolve(subjects=[*subjects, TELEMETRY_SUBJECTS]))
            log.info("added %s to stream %s", TELEMETRY_SUBJECTS, TELEMETRY_STREAM)
        return


class _Publisher:
    """JetStream async publishing with a bounded number of unacknowledged messages.

    nats-py's ``publish_async`` futures never time out on their own: an ack lost in a reconnect would hold
    a slot of the pending semaphore forever. So every future is also kept here in publish order and
    cancelled once older than ``ack_timeout`` (cancelling releases its slot), and counted as an error.

    While the connection is down it does not publish at all: nats-py would buffer, then fail with
    ``OutboundBufferLimitError`` after registering the ack future, leaking a slot for good. Waiting
    instead makes the paced loop fall behind and catch up on reconnect with the original timestamps,
    which is what a store-and-forward gateway does anyway.
    """

    def __init__(
        self,
        nc: Any,
        js: Any,
        tenant: str,
        stats: SimulationStats,
        stop: asyncio.Event,
        ack_timeout: float = ACK_TIMEOUT_S,
    ):
        self.nc = nc
        self.stop = stop
        self.js = js
        self.tenant = tenant
        self.stats = stats
        self.ack_timeout = ack_timeout
        self._subjects: dict[str, str] = {}
        self._inflight: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._logged_errors = 0

    async def _connected(self) -> bool:
        """Wait out a reconnect; ``False`` if stopping (or closed) while still disconnected."""
        while not self.nc.is_connected:
            if self.stop.is_set() or self.nc.is_closed:
                return False
            await asyncio.sleep(0.1)
        return True

    def _error(self, what: str, exc: BaseException) -> None:
        self.stats.publish_errors += 1
        if self._logged_errors < 10:  # one bad stream config would otherwise log every message
            self._logged_errors += 1
            log.warning("%s: %r", what, exc)

    async def publish(self, message: SimMessage) -> None:
        from nats.errors import OutboundBufferLimitError
        from nats.js.errors import TooManyStalledMsgsError

        if not self.nc.is_connected and not await self._connected():
            self._error("NATS disconnected, message dropped on stop", ConnectionError(message.msg_id))
            return
        subject = self._subjects.get(message.equipment_id)
        if subject is None:
            subject = self._subjects[message.equipment_id] = tele_subject(self.tenant, message.equipment_id)
        payload = orjson.dumps(message.body)
        while True:
            try:
                future = await self.js.publish_async(subject, payload, wait_stall=self.ack_timeout,
                                                     headers={"Nats-Msg-Id": tele_msg_id(self.tenant, message.msg_id)})
                break
            except TooManyStalledMsgsError:
                log.warning("no JetStream acks for %.0fs; dropping stale pending publishes", self.ack_timeout)
                self.sweep(force_age=self.ack_timeout / 2)
            except OutboundBufferLimitError as exc:  # disconnected between the check and the publish
                self._error("NATS disconnected, message dropped", exc)
                return
        future.add_done_callback(self._on_ack)
        self._inflight.append((time.monotonic(), future))
        self.stats.messages += 1
        self.stats.readings += message.values

    def _on_ack(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            self.stats.publish_errors += 1
            return
        exc = future.exception()
        if exc is not None:
            self._error("JetStream publish failed", exc)
            return
        self.stats.acked += 1
        if getattr(future.result(), "duplicate", False):
            self.stats.duplicates += 1

    def sweep(self, force_age: float | None = None) -> None:
        """Forget acked futures and cancel ones older than the ack timeout (publish order = age order)."""
        max_age = self.ack_timeout if force_age is None else force_age
        now = time.monotonic()
        while self._inflight:
            started, future = self._inflight[0]
            if not future.done():
                if now - started < max_age:
                    break
                future.cancel()
            self._inflight.popleft()

    async def drain(self) -> None:
        """Wait for the outstanding acks (bounded), so the stats count what the server really holds."""
        try:
            await asyncio.wait_for(self.js.publish_async_completed(), timeout=self.ack_timeout)
        except TimeoutError:
            pending = self.js.publish_async_pending()
            log.warning("%d publishes unacknowledged after %.0fs", pending, self.ack_timeout)
        self.sweep(force_age=0.0)


class _Truth:
    """Where each fault's ground truth goes as it starts: ``path`` (JSON lines, appended and flushed at once, so a
    restarted feed adds to what it recorded) and `simctl_truth_subject`."""

    def __init__(self, sim: FeedSimulator, tenant: str, path: str | os.PathLike[str] | None) -> None:
        self.sim = sim
        self.subject = simctl_truth_subject(tenant)
        self.file: TextIO | None = None
        if path is not None:
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            self.file = target.open("a", encoding="utf-8")

    async def record(self, nc: Any) -> None:
        for record in self.sim.drain_truth():
            line = orjson.dumps(record)
            if self.file is not None:
                self.file.write(line.decode() + "\n")
                self.file.flush()
            with contextlib.suppress(Exception):  # an announcement lost must not stop the feed
                await nc.publish(self.subject, line)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


@dataclass(slots=True)
class _Feed:
    """One run's generator, batching, ground truth, counts and stop signal."""

    sim: FeedSimulator
    batcher: MessageBatcher
    truth: _Truth
    stop: asyncio.Event
    stats: SimulationStats


async def _connect(nats_url: str, tenant: str) -> Any:
    """A connection that rides out a NATS restart; a tenant's feed user may only receive PubAcks under its own
    inbox prefix."""
    import nats

    async def on_error(exc: Exception) -> None:
        log.warning("NATS: %r", exc)

    try:
        return await asyncio.wait_for(
            nats.connect(
                nats_url,
                name=f"wellpulse-simulator:{tenant}",
                inbox_prefix=feed_inbox_prefix(tenant),
                max_reconnect_attempts=-1,  # a demo feed should ride out a NATS restart
                reconnect_time_wait=1,
                error_cb=on_error,
            ),
            timeout=CONNECT_TIMEOUT_S,
        )
    except TimeoutError as exc:
        raise ConnectionError(f"no NATS at {redact_url(nats_url)} within {CONNECT_TIMEOUT_S:.0f}s") from exc


def _control_handler(sim: FeedSimulator, nc: Any) -> Callable[[Any], Awaitable[None]]:
    """The ``simctl.<tenant>`` subscriber: inject the fault a message asks for, answer ``{"ok": ...}``."""

    async def on_control(msg: Any) -> None:
        try:
            ctl = _ControlMessage.model_validate_json(msg.data)
            duration_td = None if ctl.duration_s is None else timedelta(seconds=ctl.duration_s)
            fault = Fault(ctl.kind, ctl.equipment_id, ctl.sensor, None, duration_td)
            sim.inject(fault)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError too
            log.warning("ignored bad control message on %s: %s", msg.subject, exc)
            reply: dict[str, Any] = {"ok": False, "error": str(exc)}
        else:
            log.info("injected %s on %s (%s)", fault.kind, fault.equipment_id, fault.sensor or "-")
            # {"ok": true} only (the contract of tests/test_nats_auth): the fault's ground truth is announced
            # on simctl_truth_subject, by the app's connection and by a feed user alike, and in the truth file.
            reply = {"ok": True}
        if msg.reply:
            with contextlib.suppress(Exception):
                await nc.publish(msg.reply, orjson.dumps(reply))

    return on_control


async def _paced(feed: _Feed, publisher: _Publisher, nc: Any, interval: float, duration: float | None) -> None:
    """Publish tick ``k`` at ``start + k * interval`` until ``duration`` or stop, then what is still held."""
    loop = asyncio.get_running_loop()
    wall0 = truncate_ms(datetime.now(UTC))
    t0 = loop.time()
    try:
        k = 0
        while not feed.stop.is_set():
            offset = k * interval
            if duration is not None and offset >= duration:
                break
            delay = t0 + offset - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(feed.stop.wait(), timeout=delay)
                if feed.stop.is_set():
                    break
            elif k % 32 == 0:
                await asyncio.sleep(0)  # catching up: still let acks and control messages in
            # Rounded to whole ms: interval >= 1 ms keeps consecutive stamps distinct.
            ts = wall0 + timedelta(milliseconds=round(offset * 1000))
            for message in feed.sim.next_messages(ts):
                for out in feed.batcher.add(message):
                    await publisher.publish(out)
            if feed.sim.truth_pending:
                await feed.truth.record(nc)
            if k % 64 == 0:
                publisher.sweep()
            k += 1
        for message in [*feed.sim.flush(), *feed.batcher.flush()]:
            await publisher.publish(message)
        await publisher.drain()
    finally:
        feed.stats.elapsed_s = round(loop.time() - t0, 3)


async def _close(nc: Any) -> None:
    try:
        await nc.drain()
    except Exception:  # e.g. still reconnecting: drain refuses, but the client must not leak
        with contextlib.suppress(Exception):
            await nc.close()


async def run_simulation(
    nats_url: str,
    tenant: str,
    *,
    equipment: int = 50,
    rate: float = 2000.0,
    duration: float | None = None,
    seed: int = 0,
    fault_every: float | None = 60.0,
    faults: list[Fault] | None = None,
    snapshots_per_message: int = 1,
    stop: asyncio.Event | None = None,
    ensure_stream: bool = True,
    truth_path: str | os.PathLike[str] | None = None,
    normal: NormalBehaviour | None = None,
) -> SimulationStats:
    """Publish a demo fleet's telemetry to JetStream at ``rate`` sensor values per second.

    Pacing: tick ``k`` is due at ``start + k * interval`` (monotonic clock), so sleeping late never
    accumulates drift and a stall is caught up by publishing the overdue ticks back to back. Each tick's
    timestamp is its scheduled instant, so the data stays evenly spaced whatever the scheduler did.
    Runs until ``duration`` seconds of ticks were generated or ``stop`` is set; the snapshots still held
    (partial batches, late batches mid-outage) are sent before returning. Each fault, as it starts, is
    appended to ``truth_path`` (JSON lines, flushed at once) and published on `simctl_truth_subject`.
    """
    check_tenant_id(tenant)
    if equipment < 1:
        raise ValueError("equipment must be >= 1")
    if duration is not None and duration < 0:
        raise ValueError("duration must be >= 0")
    fleet = demo_fleet(equipment)
    interval = snapshot_interval(fleet, rate)
    schedule = FaultSchedule(fault_every, seed=seed) if fault_every else None
    sim = FeedSimulator(fleet, seed=seed, schedule=schedule, normal=normal)
    for fault in faults or []:
        sim.inject(fault)  # raises before connecting if a fault names unknown equipment
    batcher = MessageBatcher(snapshots_per_message)
    feed = _Feed(sim, batcher, _Truth(sim, tenant, truth_path), stop or asyncio.Event(), SimulationStats())
    try:
        nc = await _connect(nats_url, tenant)
        try:
            js = nc.jetstream(publish_async_max_pending=MAX_OUTSTANDING_PUBLISHES)
            # A feed user (``wellpulse nats feed-credentials``) may not call the JetStream API: the app made it.
            if ensure_stream and not (url_user(nats_url) or "").startswith(FEED_USER_PREFIX):
                await ensure_telemetry_stream(js)
            await nc.subscribe(simctl_subject(tenant), cb=_control_handler(sim, nc))
            await _paced(feed, _Publisher(nc, js, tenant, feed.stats, feed.stop), nc, interval, duration)
        finally:
            feed.stats.faults_injected = sim.faults_injected
            with contextlib.suppress(Exception):
                await feed.truth.record(nc)
            await _close(nc)
    finally:
        feed.truth.close()
    return feed.stats
