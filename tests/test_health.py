"""/health: each part, and a warning before a stream reaches its disk limit."""

from typing import Any

import httpx
import nats

from schema.subjects import TELEMETRY_STREAM
from tests.helpers import create_tenant, new_tenant_id, now_utc, publish, snapshot


async def test_health_reports_parts_and_stream_usage(http: httpx.AsyncClient) -> None:
    r = await http.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and set(body["checks"]) == {"db", "nats", "ray", "notifications"}
    usage = {u["stream"]: u for u in body["checks"]["nats"]["stream_usage"]}
    assert TELEMETRY_STREAM in usage and 0 <= usage[TELEMETRY_STREAM]["percent"] < 80
    assert body["warnings"] == []


async def test_health_warns_at_80_percent_of_a_stream_limit(stack: Any, http: httpx.AsyncClient) -> None:
    tenant = new_tenant_id("disk")
    await create_tenant(stack, tenant, [("MTR-1", "meter")])
    start = now_utc()
    await publish(stack.settings.nats_url, tenant,
                  [("MTR-1", snapshot("MTR-1", start, {"flow_mcfd": float(i)})) for i in range(50)])
    nc = await nats.connect(stack.settings.nats_url)
    js = nc.jetstream()
    try:
        info = await js.stream_info(TELEMETRY_STREAM)
        config, used = info.config, info.state.bytes
        original = config.max_bytes
        config.max_bytes = int(used / 0.85)  # the stream now sits at 85 % of its limit
        await js.update_stream(config)
        try:
            body = (await http.get("/health")).json()
            assert body["status"] == "ok"  # still serving: a warning, not a failure
            assert any(TELEMETRY_STREAM in w and "dropped" in w for w in body["warnings"])
            usage = {u["stream"]: u for u in body["checks"]["nats"]["stream_usage"]}
            assert usage[TELEMETRY_STREAM]["percent"] >= 80
        finally:
            config.max_bytes = original
            await js.update_stream(config)
        assert (await http.get("/health")).json()["warnings"] == []
    finally:
        await nc.close()
