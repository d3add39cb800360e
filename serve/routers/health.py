"""Health of the parts: database, NATS, Ray actors, and which storage flavour is in use."""

import asyncio
from typing import Any

from fastapi import APIRouter, Response

from schema.api import HealthReport
from serve.deps import ServicesDep
from serve.services import Services

router = APIRouter(tags=["health"])
CHECK_TIMEOUT = 3.0


async def check_db(services: Services) -> dict[str, Any]:
    await asyncio.wait_for(services.pool.fetchval("SELECT 1"), CHECK_TIMEOUT)
    return {"ok": True, "storage": services.flavour}


async def check_nats(services: Services) -> dict[str, Any]:
    info = await asyncio.wait_for(services.js.account_info(), CHECK_TIMEOUT)
    return {"ok": services.nc.is_connected, "streams": info.streams}


async def check_ray(services: Services) -> dict[str, Any]:
    status = await asyncio.wait_for(services.supervisor().status.remote(), CHECK_TIMEOUT)
    # Counts only: /health is public, and tenant ids are not for anyone who can reach the port.
    running = sum(1 for s in status["tenants"].values() if s.get("running"))
    total = len(status["tenants"])
    return {"ok": running == total and status["last_error"] is None, "tenants_running": running,
            "tenants": total, "last_error": "supervisor error" if status["last_error"] else None}


CHECKS = {"db": check_db, "nats": check_nats, "ray": check_ray}


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
    return HealthReport(status="ok" if ok else "degraded", storage=services.flavour, checks=checks)


@router.get("/health/{part}", response_model=dict[str, Any])
async def health_part(part: str, services: ServicesDep, response: Response) -> dict[str, Any]:
    if part not in CHECKS:
        response.status_code = 404
        return {"error": {"code": "NOT_FOUND", "message": f"no health check {part!r}", "details": []}}
    result = await run_check(part, services)
    response.status_code = 200 if result["ok"] else 503
    return result
