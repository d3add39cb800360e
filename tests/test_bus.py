"""The NATS set-up made at start-up (store/bus.py), against NATS alone."""

from store import bus


async def test_start_up_creates_the_idempotency_bucket(nats_url: str) -> None:
    """``POST /v1/telemetry`` finds its Idempotency-Key bucket made at start-up, not in the request path."""
    nc = await bus.connect(nats_url, "test-bus")
    try:
        js = nc.jetstream()
        await bus.ensure_streams(js)
        await js.delete_key_value(bus.IDEMPOTENCY_BUCKET)  # as on a server set up before the bucket existed
        await bus.ensure_streams(js)
        await bus.ensure_streams(js)  # again: nothing to do
        kv = await js.key_value(bus.IDEMPOTENCY_BUCKET)
        status = await kv.status()
        assert status.bucket == bus.IDEMPOTENCY_BUCKET and status.ttl == bus.IDEMPOTENCY_TTL_SECONDS
        await kv.put("t.k", b"answer")
        assert (await (await bus.idempotency_bucket(js)).get("t.k")).value == b"answer"  # bound, not re-created
    finally:
        await nc.close()
