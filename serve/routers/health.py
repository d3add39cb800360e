"""Health of the parts: database, NATS, Ray actors, notification channels failing, and which storage flavour is
in use."""

import asyncio
from typing import Any

from fastapi import APIRouter, Response

from schema.api import HealthReport
from serve.deps import ServicesDep
from serve.services import Services
from store import bus
from store import notifications as notification_store

router = APIRouter(tags=["health"])
CHECK_TIMEOUT = 3.0
STREAM_WARN_PERCENT = 80.0


async def check_db(services: Services) -> dict[str, Any]:
    await asyncio.wait_for(services.pool.fetchval("SELECT 1"), CHECK_TIMEOUT)
    return {"ok": True, "storage": services.flavour}


async def stream_usage(services: Services) -> list[dict[str, Any]]:
    """Disk each stream with a byte limit takes, against that limit (JetStream drops its oldest messages there)."""
    out = []
    for config in bus.stream_configs():
        assert config.name is not None  # noqa: S101  narrows a type: every stream config of ours is named
        info = await services.js.stream_info(config.name)
        limit = info.config.max_bytes or 0
        if limit > 0:
            used = info.state.bytes
            out.append({"stream": config.name, "bytes": used, "max_bytes": limit,
                        "percent": round(100.0 * used / limit, 1)})
    return out


async def check_nats(services: Services) -> dict[str, Any]:
    info = await asyncio.wait_for(services.js.account_info(), CHECK_TIMEOUT)
    usage = await asyncio.wait_for(stream_usage(services), CHECK_TIMEOUT)
    warnings = [f"stream {u['stream']} at {u['percent']} % of its {u['max_bytes']} bytes: past 100 % its oldest"
                " messages are dropped, read or not" for u in usage if u["percent"] >= STREAM_WARN_PERCENT]
    return {"ok": services.nc.is_connected, "streams": info.streams, "stream_usage": usage, "warnings": warnings}


async def check_ray(services: Services) -> dict[str, Any]:
    status = await asyncio.wait_for(services.supervisor().status.remote(), CHECK_TIMEOUT)
    # Counts only: /health is public, and tenant ids are not for anyone who can reach the port.
    running = sum(1 for s in status["tenants"].values() if s.get("running"))
    total = len(status["tenants"])
    return {"ok": running == total and status["last_error"] is None, "tenants_running": running,
            "tenants": total, "last_error": "supervisor error" if status["last_error"] else None}


async def check_notifications(services: Services) -> dict[str, Any]:
    """Channels whose last `notify_failing_after` finished deliveries all failed, counted per kind (counts only,
    as for tenants). A tenant's broken webhook is a warning, not an unhealthy node: ``ok`` stays true."""
    after = services.settings.notify_failing_after
    failing = await asyncio.wait_for(notification_store.failing_channel_counts(services.pool, after), CHECK_TIMEOUT)
    warnings = [f"{n} {kind} notification channel(s) failed each of their last {after} deliveries"
                for kind, n in sorted(failing.items())]
    return {"ok": True, "failing_channels": failing, "failing_after": after, "warnings": warnings}


CHECKS = {"db": check_db, "nats": check_nats, "ray": check_ray, "notifications": check_notifications}


async def run_check(name: str, services: Services) -> dict[str, Any]:
    try:
        return await CHECKS[name](services)
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}


@router.get("/health", response_model=HealthReport)
async def health(services: ServicesDep, response: Response) -> HealthReport:
    results = await asyncio.gather(*(run_check(n, services) for n in CHECKS))
    checks = dict(zip(CHECKS, results, strict=True))
    ok = all(c["ok"] for c in checks.values())
    response.status_code = 200 if ok else 503
    warnings = [w for c in checks.values() for w in c.get("warnings", ())]
    return HealthReport(status="ok" if ok else "degraded", storage=services.flavour, checks=checks,
                        warnings=warnings)


@router.get("/health/{part}", response_model=dict[str, Any])
async def health_part(part: str, services: ServicesDep, response: Response) -> dict[str, Any]:
    if part not in CHECKS:
        response.status_code = 404
        return {"error": {"code": "NOT_FOUND", "message": f"no health check {part!r}", "details": []}}
    result = await run_check(part, services)
    response.status_code = 200 if result["ok"] else 503
    return result
