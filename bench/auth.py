"""What authentication costs: in process, end to end over HTTP, and at sign-in. Prints JSON.

(a) In process: `serve.auth.verify_access_token` + `Principal.can` per request, next to the bare
    `jwt.decode` of PyJWT and a no-op call, in µs (best of interleaved loops).
(b) Over HTTP through the Ray Serve app (`serve.runtime.Stack`): p50/p95 of authenticated routes
    (GET /v1/auth/me: JWT + session/user check; GET /v1/tenant/settings: that plus the permission
    check and the rate-limit hit) against an unauthenticated one (GET /health/db) at a stated
    concurrency, with the differences. Clients cycle through the routes, so all see one load.
    Every route here does at least one query.
(c) Sign-in: POST /v1/auth/login p50/p95 at the production argon2 cost (the config defaults), each
    followed by a bare argon2 verify with the same parameters in this process: the baseline.

    python -m bench.auth [--requests 400] [--concurrency 8] [--logins 20]

Embedded PostgreSQL and NATS unless WELLPULSE_DATABASE_URL / WELLPULSE_NATS_URL are set.
"""

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import jwt

from bench.common import emit, new_tenant, start_stack
from cli.tenant import mint_user_token
from config import Settings
from serve.auth import ALGORITHM, Principal, PrincipalKind, Role, mint_access_token, verify_access_token
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


def per_call_us(fns: dict[str, Callable[[], Any]], iterations: int, repeats: int = 7) -> dict[str, float]:
    """µs per call of each function: the best of ``repeats`` timed loops, the functions interleaved
    (A, B, C, A, B, C, ...) so a change in the machine's load hits all of them alike."""
    for fn in fns.values():
        for _ in range(min(iterations, 1000)):
            fn()
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter_ns()
            for _ in range(iterations):
                fn()
            best[name] = min(best[name], (time.perf_counter_ns() - start) / iterations / 1000)
    return {name: round(v, 3) for name, v in best.items()}


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
    us = per_call_us({"full": full, "bare": bare_decode, "can": can_only, "noop": noop}, iterations)
    return {
        "iterations_per_loop": iterations, "statistic": "best of 7 interleaved loops, µs per call",
        "verify_access_token_plus_can_us": us["full"],
        "baseline_bare_pyjwt_decode_us": us["bare"],
        "overhead_over_bare_decode_us": round(us["full"] - us["bare"], 3),
        "principal_can_only_us": us["can"],
        "baseline_noop_call_us": us["noop"],
        "token_bytes": len(token),
    }


# ----------------------------------------------------------------------------- (b) over HTTP

ROUTES = {
    "unauthenticated GET /health/db": ("/health/db", False),
    "authenticated GET /v1/auth/me": ("/v1/auth/me", True),
    "authenticated GET /v1/tenant/settings": ("/v1/tenant/settings", True),
}


async def over_http(stack: Stack, token: str, n: int, concurrency: int) -> dict[str, Any]:
    """``concurrency`` clients, each cycling through the routes, so every route sees the same load."""
    auth = {"Authorization": f"Bearer {token}"}
    names = list(ROUTES)
    latencies: dict[str, list[float]] = {name: [] for name in names}
    statuses: dict[str, dict[int, int]] = {name: {} for name in names}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30, limits=limits) as client:
        for name in names * 20:  # warm-up: pools, prepared statements, caches
            path, authenticated = ROUTES[name]
            r = await client.get(path, headers=auth if authenticated else {})
            assert r.status_code == 200, (path, r.status_code, r.text)
        counter = iter(range(n * len(names)))

        async def worker() -> None:
            for i in counter:
                name = names[i % len(names)]
                path, authenticated = ROUTES[name]
                start = time.perf_counter()
                r = await client.get(path, headers=auth if authenticated else {})
                latencies[name].append(time.perf_counter() - start)
                statuses[name][r.status_code] = statuses[name].get(r.status_code, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    out: dict[str, Any] = {"concurrency": concurrency, "requests_per_route": n,
                           "all_routes_requests_per_s": round(n * len(names) / elapsed)}
    for name in names:
        out[name] = {**ms_summary(latencies[name]), "statuses": statuses[name]}
    base = out[names[0]]
    for name in names[1:]:
        out[name]["minus_unauthenticated_p50_ms"] = round(out[name]["p50_ms"] - base["p50_ms"], 3)
        out[name]["minus_unauthenticated_p95_ms"] = round(out[name]["p95_ms"] - base["p95_ms"], 3)
    return out


# ----------------------------------------------------------------------------- (c) sign-in


async def logins(stack: Stack, tenant: str, emails: list[str]) -> dict[str, Any]:
    """One sign-in per account (no throttling state builds up), each followed by a bare argon2 verify
    with the same parameters in this process: the baseline sees the same machine load."""
    s = stack.settings
    hashing = PasswordHashing(time_cost=s.argon2_time_cost, memory_kib=s.argon2_memory_kib,
                              parallelism=s.argon2_parallelism)
    stored = await asyncio.to_thread(hashing.hash, PASSWORD)
    login_times, verify_times = [], []
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
        warm = await client.post("/v1/auth/login", json={"tenant": tenant, "email": emails[0], "password": PASSWORD})
        assert warm.status_code == 200, warm.text
        for email in emails:
            start = time.perf_counter()
            r = await client.post("/v1/auth/login", json={"tenant": tenant, "email": email, "password": PASSWORD})
            login_times.append(time.perf_counter() - start)
            assert r.status_code == 200, r.text
            start = time.perf_counter()
            assert hashing.verify(stored, PASSWORD)
            verify_times.append(time.perf_counter() - start)
    login = ms_summary(login_times)
    bare = ms_summary(verify_times)
    return {"sequential_logins": login, "baseline_bare_argon2_verify": bare,
            "login_minus_bare_verify_p50_ms": round(login["p50_ms"] - bare["p50_ms"], 3)}


async def main(args: argparse.Namespace) -> None:
    result: dict[str, Any] = {"benchmark": "auth", "load_average_1m_at_start": round(os.getloadavg()[0], 2),
                              "in_process": in_process(args.iterations)}
    # Production argon2 cost (config defaults, not the tests' cheap ones); rate limits out of the way
    # (sign-in throttling only counts failures, and every sign-in here succeeds).
    stack = await asyncio.to_thread(start_stack, serve_http=True, rate_limit_user_per_minute=10**8,
                                    rate_limit_tenant_per_hour=10**9)
    try:
        s = stack.settings
        fields = Settings.model_fields
        assert (s.argon2_time_cost, s.argon2_memory_kib, s.argon2_parallelism) == (
            fields["argon2_time_cost"].default, fields["argon2_memory_kib"].default,
            fields["argon2_parallelism"].default), "the bench must run at the production argon2 cost"
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
        result["http"] = await over_http(stack, token, args.requests, args.concurrency)
        result["login"] = {
            "argon2": {"type": "argon2id", "time_cost": s.argon2_time_cost, "memory_kib": s.argon2_memory_kib,
                       "parallelism": s.argon2_parallelism, "source": "config defaults (production cost)"},
            **await logins(stack, tenant, emails),
        }
        result["storage"] = stack.migration.flavour if getattr(stack, "migration", None) else None
        result["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
        emit(result)
    finally:
        await asyncio.to_thread(stack.stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=10_000, help="in-process calls per timed loop")
    parser.add_argument("--requests", type=int, default=400, help="HTTP requests per route")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--logins", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
