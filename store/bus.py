"""NATS JetStream adapter: connections, streams, the per-tenant consumer, DLQ and publish helpers."""

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import (
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from schema.subjects import (
    ALERTS_STREAM,
    ALERTS_SUBJECTS,
    DLQ_STREAM,
    DLQ_SUBJECTS,
    FIELD_STREAM,
    FIELD_SUBJECTS,
    TELEMETRY_STREAM,
    TELEMETRY_SUBJECTS,
    dlq_subject,
    tele_tenant_filter,
)

log = logging.getLogger(__name__)

DAY = 24 * 3600
IDEMPOTENCY_BUCKET = "idempotency"  # POST /v1/telemetry's Idempotency-Key answers
IDEMPOTENCY_TTL_SECONDS = DAY
@dataclass(frozen=True)
class StreamLimits:
    """Disk a feed may take: JetStream drops the oldest messages past these (they were acked long before)."""

    telemetry_max_bytes: int = 4 * 1024**3
    dlq_max_bytes: int = 256 * 1024**2
    # One subject is one equipment's feed: a runaway gateway churns its own subject, not everyone's disk.
    per_subject_max_msgs: int = 1_000_000
    max_msg_size: int = 4 * 1024**2  # the HTTP ingest body limit, for NATS publishers too


def telemetry_stream_config(limits: StreamLimits = StreamLimits()) -> StreamConfig:
    """TELEMETRY: 7 days, and the 2-minute dedup window that ``Nats-Msg-Id`` resends rely on."""
    return StreamConfig(name=TELEMETRY_STREAM, subjects=[TELEMETRY_SUBJECTS], storage=StorageType.FILE,
                        retention=RetentionPolicy.LIMITS, max_age=7 * DAY, duplicate_window=120.0,
                        discard=DiscardPolicy.OLD, max_bytes=limits.telemetry_max_bytes,
                        max_msgs_per_subject=limits.per_subject_max_msgs, max_msg_size=limits.max_msg_size)


def stream_configs(limits: StreamLimits = StreamLimits()) -> tuple[StreamConfig, ...]:
    return (
        telemetry_stream_config(limits),
        StreamConfig(name=ALERTS_STREAM, subjects=[ALERTS_SUBJECTS], storage=StorageType.FILE,
                     max_age=7 * DAY, duplicate_window=120.0),
        StreamConfig(name=DLQ_STREAM, subjects=[DLQ_SUBJECTS], storage=StorageType.FILE, max_age=30 * DAY,
                     max_bytes=limits.dlq_max_bytes, discard=DiscardPolicy.OLD,
                     max_msgs_per_subject=limits.per_subject_max_msgs),
        StreamConfig(name=FIELD_STREAM, subjects=[FIELD_SUBJECTS], storage=StorageType.FILE, max_age=30 * DAY,
                     duplicate_window=120.0),
    )


async def connect(url: str, name: str) -> NATS:
    """A connection that reconnects for ever: a NATS restart must not kill an actor."""

    async def _error(exc: Exception) -> None:
        log.warning("nats %s: %s", name, exc)

    return await nats.connect(
        url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5, error_cb=_error,
        allow_reconnect=True, connect_timeout=5,
    )


async def ensure_streams(js: JetStreamContext, limits: StreamLimits = StreamLimits()) -> None:
    """Create or update the streams, and the HTTP ingest's idempotency bucket: at start-up, never in a request."""
    for config in stream_configs(limits):
        assert config.name is not None  # noqa: S101  narrows a type: every config above is named
        try:
            await js.stream_info(config.name)
            await js.update_stream(config)
        except NotFoundError:
            await js.add_stream(config)
    await idempotency_bucket(js)


async def idempotency_bucket(js: JetStreamContext) -> KeyValue:
    """The key-value bucket where ``POST /v1/telemetry`` keeps each Idempotency-Key's answer for a day; created
    when missing (by `ensure_streams` at start-up, or by a replica started against an older setup)."""
    try:
        return await js.key_value(IDEMPOTENCY_BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(
            KeyValueConfig(bucket=IDEMPOTENCY_BUCKET, ttl=IDEMPOTENCY_TTL_SECONDS, history=1))


def consumer_name(tenant_id: str) -> str:
    return f"tenant-{tenant_id}"


async def telemetry_subscription(
    js: JetStreamContext, tenant_id: str, *, max_ack_pending: int, ack_wait: timedelta = timedelta(seconds=60)
) -> JetStreamContext.PullSubscription:
    """The tenant's durable pull consumer on ``tele.<tenant>.>``."""
    config = ConsumerConfig(
        durable_name=consumer_name(tenant_id),
        filter_subject=tele_tenant_filter(tenant_id),
        ack_wait=ack_wait.total_seconds(),
        max_ack_pending=max_ack_pending,
        max_waiting=16,
    )
    try:
        info = await js.consumer_info(TELEMETRY_STREAM, consumer_name(tenant_id))
    except NotFoundError:
        info = None
    if info is not None and (info.num_ack_pending or 0) > 0:
        # A previous incarnation died holding unacked messages. JetStream would hand them
        # back only after ack_wait, behind newer data; rewinding the consumer to its ack
        # floor delivers them first and in order (acked ones again, which is harmless).
        start = (info.ack_floor.stream_seq if info.ack_floor else 0) + 1
        log.info("tenant %s: rewinding consumer to stream seq %d (%d unacked)", tenant_id, start,
                 info.num_ack_pending)
        await js.delete_consumer(TELEMETRY_STREAM, consumer_name(tenant_id))
        config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = start
    return await js.pull_subscribe(
        tele_tenant_filter(tenant_id), durable=consumer_name(tenant_id), stream=TELEMETRY_STREAM, config=config,
        pending_msgs_limit=max(max_ack_pending * 2, 1024),
    )


async def fetch_batch(sub: JetStreamContext.PullSubscription, batch: int, wait: float) -> list[Any]:
    """Up to ``batch`` messages; an empty list when none arrive in time.

    A short timeout, never ``None``: nats.py#791 (slow) and #933 (orphaned pull hangs).
    """
    try:
        return await sub.fetch(batch=batch, timeout=wait)
    except (TimeoutError, nats.errors.TimeoutError):
        return []


async def publish_dlq(
    js: JetStreamContext, tenant_id: str, *, subject: str, payload: bytes, reason: str,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Park a rejected message with its reason; the original bytes are kept for replay."""
    body = {
        "subject": subject,
        "reason": reason,
        "payload": payload.decode("utf-8", errors="replace"),
        "headers": dict(headers or {}),
    }
    await js.publish(dlq_subject(tenant_id), json.dumps(body).encode(), headers={"WellPulse-Reason": reason[:200]})


async def consumer_lag(js: JetStreamContext, tenant_id: str) -> tuple[int, int]:
    """(messages not yet delivered, delivered but not acked) for the tenant's consumer."""
    info = await js.consumer_info(TELEMETRY_STREAM, consumer_name(tenant_id))
    return int(info.num_pending or 0), int(info.num_ack_pending or 0)
