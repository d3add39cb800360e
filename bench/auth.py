"""What authentication costs: in process, end to end over HTTP, and at sign-in. Prints JSON.

(a) In process: `serve.auth.verify_access_token` + `Principal.can` per request, next to the bare
    `jwt.decode` of PyJWT and a no-op loop, in µs (median of several repeats).
(b) Over HTTP through the Ray Serve app (`serve.runtime.Stack`): p50/p95 of authenticated routes
    (GET /v1/auth/me: JWT + session/user check; GET /v1/tenant/settings: that plus the permission
    check and the rate-limit hit) against an unauthenticated one (GET /health/db) at a stated
    concurrency, with the differences. Every route here does at least one query.
(c) Sign-in: POST /v1/auth/login p50/p95 at the production argon2 cost (the config defaults), and the
    bare argon2 verify with the same parameters in this process as the baseline.

    python -m bench.auth [--requests 600] [--concurrency 8] [--logins 20]

Embedded PostgreSQL and NATS unless WELLPULSE_DATABASE_URL / WELLPULSE_NATS_URL are set.
"""

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import jwt

from bench.common import emit, new_tenant, start_stack
from config import Settings
from serve.auth import ALGORITHM, Principal, PrincipalKind, Role, mint_access_token, verify_access_token
from serve.cli_tenant import mint_user_token
from serve.runtime import Stack
from serve.security import PasswordHashing
from store.admin import ensure_user

PASSWORD = "bench-Correct-Horse-42"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms_summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"p50_ms": round(percentile(ms, 0.5), 3), "p95_ms": round(percentile(ms, 0.95), 3),
            "mean_ms": round(statistics.fmean(ms), 3), "samples": len(ms)}


# ----------------------------------------------------------------------------- (a) in process


def per_call_us(fn: Callable[[], Any], iterations: int, repeats: int = 5) -> float:
    """Median over ``repeats`` of the mean time of one call, in µs."""
    for _ in range(min(iterations, 1000)):
        fn()
    results = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(iterations):
            fn()
        results.append((time.perf_counter_ns() - start) / iterations / 1000)
    return round(statistics.median(results), 3)


def in_process(iterations: int) -> dict[str, Any]:
    secret = "bench-secret-" + uuid.uuid4().hex
    token = mint_access_token(secret, tenant_id="bench-t", user_id=str(uuid.uuid4()), session_id=str(uuid.uuid4()),
                              role="operator", minutes=60)

    def full() -> bool:
        claims = verify_access_token(secret, token)
        principal = Principal(tenant_id=claims.tenant_id, subject=claims.user_id, kind=PrincipalKind.USER,
                              role=claims.role, session_id=claims.session_id)
        return principal.can("alerts:acknowledge")

    def bare_decode() -> dict:
        return jwt.decode(token, secret, algorithms=[ALGORITHM])

    principal = Principal(tenant_id="bench-t", subject="u", role=Role.OPERATOR)

    def can_only() -> bool:
        return principal.can("alerts:acknowledge")

    def noop() -> None:
        return None

    assert full() is True
    result = {
        "iterations_per_repeat": iterations,
        "verify_access_token_plus_can_us": per_call_us(full, iterations),
        "baseline_bare_pyjwt_decode_us": per_call_us(bare_decode, iterations),
        "principal_can_only_us": per_call_us(can_only, iterations * 5),
        "baseline_noop_call_us": per_call_us(noop, iterations * 5),
        "token_bytes": len(token),
    }
    result["overhead_over_bare_decode_us"] = round(
        result["verify_access_token_plus_can_us"] - result["baseline_bare_pyjwt_decode_us"], 3)
    return result


# ----------------------------------------------------------------------------- (b) over HTTP


async def load(client: httpx.AsyncClient, path: str, headers: dict[str, str], n: int, concurrency: int,
               ) -> dict[str, Any]:
    for _ in range(20):  # warm-up: pools, prepared statements, caches
        r = await client.get(path, headers=headers)
        assert r.status_code == 200, (path, r.status_code, r.text)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(n))

    async def worker() -> None:
        for _ in counter:
            start = time.perf_counter()
            r = await client.get(path, headers=headers)
            latencies.append(time.perf_counter() - start)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return {**ms_summary(latencies), "requests_per_s": round(n / elapsed), "statuses": statuses}


async def over_http(stack: Stack, tenant: str, token: str, n: int, concurrency: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    out: dict[str, Any] = {"concurrency": concurrency, "requests_per_route": n}
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30, limits=limits) as client:
        # Interleaved twice so a drift in the machine's load hits every route alike; the second round is kept.
        for _ in range(2):
            out["unauthenticated GET /health/db"] = await load(client, "/health/db", {}, n, concurrency)
            out["authenticated GET /v1/auth/me"] = await load(client, "/v1/auth/me", headers, n, concurrency)
            out["authenticated GET /v1/tenant/settings"] = await load(client, "/v1/tenant/settings", headers, n,
                                                                      concurrency)
    base = out["unauthenticated GET /health/db"]
    for name in ("authenticated GET /v1/auth/me", "authenticated GET /v1/tenant/settings"):
        out[name]["minus_unauthenticated_p50_ms"] = round(out[name]["p50_ms"] - base["p50_ms"], 3)
        out[name]["minus_unauthenticated_p95_ms"] = round(out[name]["p95_ms"] - base["p95_ms"], 3)
    return out


# ----------------------------------------------------------------------------- (c) sign-in


async def logins(stack: Stack, tenant: str, emails: list[str]) -> dict[str, Any]:
    latencies = []
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
        warm = await client.post("/v1/auth/login", json={"tenant": tenant, "email": emails[0], "password": PASSWORD})
        assert warm.status_code == 200, warm.text
        for email in emails:  # one sign-in per account: no throttling state builds up
            start = time.perf_counter()
            r = await client.post("/v1/auth/login", json={"tenant": tenant, "email": email, "password": PASSWORD})
            latencies.append(time.perf_counter() - start)
            assert r.status_code == 200, r.text
    return ms_summary(latencies)


def bare_argon2(settings: Settings, samples: int) -> dict[str, Any]:
    hashing = PasswordHashing(time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib,
                              parallelism=settings.argon2_parallelism)
    stored = hashing.hash(PASSWORD)
    hashing.verify(stored, PASSWORD)
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        assert hashing.verify(stored, PASSWORD)
        times.append(time.perf_counter() - start)
    return ms_summary(times)


async def main(args: argparse.Namespace) -> None:
    result: dict[str, Any] = {"benchmark": "auth", "in_process": in_process(args.iterations)}
    # Production argon2 cost (config defaults, not the tests' cheap ones); limits out of the way.
    stack = await asyncio.to_thread(start_stack, serve_http=True, rate_limit_user_per_minute=10**8,
                                    rate_limit_tenant_per_hour=10**9)
    try:
        s = stack.settings
        defaults = Settings.model_fields
        assert (s.argon2_time_cost, s.argon2_memory_kib, s.argon2_parallelism) == (
            defaults["argon2_time_cost"].default, defaults["argon2_memory_kib"].default,
            defaults["argon2_parallelism"].default), "the bench must run at the production argon2 cost"
        tenant = new_tenant("authbench")
        await stack.register_tenant(tenant, tenant, [])
        hashing = PasswordHashing(time_cost=s.argon2_time_cost, memory_kib=s.argon2_memory_kib,
                                  parallelism=s.argon2_parallelism)
        password_hash = await asyncio.to_thread(hashing.hash, PASSWORD)
        emails = [f"login-{i}@bench.example" for i in range(args.logins)]
        for email in ["me@bench.example", *emails]:
            await asyncio.to_thread(ensure_user, s.database_url, tenant, email, role="operator",
                                    password_hash=password_hash)
        token = await asyncio.to_thread(mint_user_token, s, s.database_url, tenant, "me@bench.example", 60)
        result["http"] = await over_http(stack, tenant, token, args.requests, args.concurrency)
        result["login"] = {
            "argon2": {"type": "argon2id", "time_cost": s.argon2_time_cost, "memory_kib": s.argon2_memory_kib,
                       "parallelism": s.argon2_parallelism, "source": "config defaults (production cost)"},
            "sequential_logins": await logins(stack, tenant, emails),
            "baseline_bare_argon2_verify": await asyncio.to_thread(bare_argon2, s, max(10, args.logins // 2)),
        }
        result["login"]["login_minus_bare_verify_p50_ms"] = round(
            result["login"]["sequential_logins"]["p50_ms"] - result["login"]["baseline_bare_argon2_verify"]["p50_ms"],
            3)
        result["storage"] = stack.migration.flavour if getattr(stack, "migration", None) else None
        emit(result)
    finally:
        await asyncio.to_thread(stack.stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=20_000, help="in-process calls per repeat")
    parser.add_argument("--requests", type=int, default=600, help="HTTP requests per route and round")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--logins", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
