"""Rate limits against a real PostgreSQL: the limiter (two pools stand for two Serve
replicas), both backends (one-statement SQL and limits' strategy on PostgresStorage),
and the HTTP behaviour through a tiny FastAPI app. Tests of windows passing give the limiter a
`ManualClock` and move it on instead of waiting for the database clock."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Annotated, Any

import asyncpg
import httpx
import pytest
from fastapi import Depends, FastAPI, Request

from config import Settings
from config.clock import SYSTEM_CLOCK, ManualClock
from serve import errors
from serve.ingress import RequestContext
from serve.ratelimit import enforce_rate_limit, get_limiter, rules_for
from store import db
from store.migrate import migrate
from store.ratelimit import Decision, LimitsRateLimiter, PostgresRateLimiter, PostgresStorage, Rule


@pytest.fixture(scope="module")
def migrated(database_url: str) -> str:
    migrate(database_url)
    return database_url


@pytest.fixture(scope="module")
async def pools(migrated: str) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Pool]]:
    """Two pools: what two Serve replicas would hold."""
    a = await db.create_pool(migrated, max_size=4)
    b = await db.create_pool(migrated, max_size=4)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


Factory = Callable[..., Any]  # (pool, clock=None): a limiter on that clock, or on the database's
BACKENDS: dict[str, Factory] = {
    "sql": PostgresRateLimiter,
    "limits+pg": lambda pool, clock=None: LimitsRateLimiter(PostgresStorage(pool, clock=clock),
                                                           clock or SYSTEM_CLOCK),
}


@pytest.fixture(params=list(BACKENDS))
def make(request: pytest.FixtureRequest) -> Factory:
    return BACKENDS[request.param]


def key(prefix: str = "k") -> str:
    return f"{prefix}:{uuid.uuid4().hex}"


def at_window_start(period: float) -> ManualClock:
    """A clock standing at the start of a window of `period` (the latest one begun), moved only by the test."""
    return ManualClock(datetime.fromtimestamp(time.time() // period * period, UTC))


def seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


@pytest.mark.fast
async def test_n_allowed_then_refused_with_retry_after(pools: Any, make: Factory) -> None:
    limiter = make(pools[0])
    rule = Rule(key(), 5, 3600, "user")
    for i in range(5):
        decision = await limiter.hit([rule])
        assert decision.allowed, i
        assert decision.binding.remaining == 4 - i
    refused = await limiter.hit([rule])
    assert not refused.allowed
    assert refused.binding.remaining == 0
    # All five in this hour's window: admitted again when the next one starts.
    expected = 3600 - time.time() % 3600
    assert abs(refused.retry_after - expected) < 2, (refused.retry_after, expected)
    assert refused.binding.reset_after >= refused.retry_after


@pytest.mark.fast
async def test_two_replicas_share_the_count(pools: Any, make: Factory) -> None:
    a, b = make(pools[0]), make(pools[1])
    rule = Rule(key(), 6, 3600)
    results = [(await (a if i % 2 else b).hit([rule])).allowed for i in range(10)]
    assert results == [True] * 6 + [False] * 4


@pytest.mark.fast
async def test_concurrent_hits_admit_exactly_the_limit(pools: Any) -> None:
    # The one-statement backend is exact under concurrency (row locks); limits' storages
    # can only undo an over-count after the fact, so this is asserted for SQL alone.
    limiters = [PostgresRateLimiter(pools[0]), PostgresRateLimiter(pools[1])]
    rules = [Rule(key("u"), 20, 3600), Rule(key("t"), 1000, 3600)]
    decisions = await asyncio.gather(*(limiters[i % 2].hit(rules) for i in range(60)))
    assert sum(d.allowed for d in decisions) == 20


@pytest.mark.fast
async def test_tenant_limit_across_users(pools: Any) -> None:
    limiter = PostgresRateLimiter(pools[0])
    settings = Settings(rate_limit_user_per_minute=3, rate_limit_tenant_per_hour=5)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    users = [SimpleNamespace(tenant_id=tenant, subject=f"user-{i}") for i in range(4)]
    outcomes = [(await limiter.hit(rules_for(settings, u))).allowed for u in users for _ in range(2)]
    assert outcomes == [True] * 5 + [False] * 3
    refused = await limiter.hit(rules_for(settings, users[3]))
    assert refused.binding.rule.scope == "tenant"
    assert refused.binding.rule.limit == 5
    # All or nothing: the refused requests did not count against user-3's own minute.
    user3 = next(s for s in refused.states if s.rule.scope == "user")
    assert user3.cur == 0
    assert user3.admitted


@pytest.mark.fast
async def test_one_principal_takes_only_its_share_and_acknowledging_is_exempt(pools: Any) -> None:
    """One viewer at full speed cannot spend the tenant's hour; acknowledging still works when it is spent."""
    limiter = PostgresRateLimiter(pools[0])
    settings = Settings(rate_limit_user_per_minute=100, rate_limit_tenant_per_hour=8, rate_limit_principal_share=0.25)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    viewer, operators = (SimpleNamespace(tenant_id=tenant, subject="viewer"),
                         [SimpleNamespace(tenant_id=tenant, subject=f"op-{i}") for i in range(4)])
    hogging = [(await limiter.hit(rules_for(settings, viewer))) for _ in range(5)]
    assert [d.allowed for d in hogging] == [True] * 2 + [False] * 3
    assert hogging[-1].binding.rule.scope == "user's share of the tenant"
    assert [(await limiter.hit(rules_for(settings, op))).allowed for op in operators for _ in range(2)] == (
        [True] * 6 + [False] * 2)  # the tenant's 8: 2 of the viewer, 6 of the operators
    essential = [await limiter.hit(rules_for(settings, operators[3], essential=True)) for _ in range(3)]
    assert all(d.allowed for d in essential)  # an acknowledgement gets through the spent hour


@pytest.mark.fast
async def test_batch_burst_beyond_user_limit_bounded_by_tenant(pools: Any) -> None:
    limiter = PostgresRateLimiter(pools[0], at_window_start(60))  # all hits in one minute window
    settings = Settings(rate_limit_user_per_minute=3, rate_limit_batch_burst=4, rate_limit_tenant_per_hour=20,
                        rate_limit_principal_share=1.0)
    gateway = SimpleNamespace(tenant_id=f"t-{uuid.uuid4().hex[:8]}", subject="gateway-1")
    assert [(await limiter.hit(rules_for(settings, gateway))).allowed for _ in range(4)] == [True] * 3 + [False]
    # Batch requests of the same user go on, up to 3 + 4 in the minute...
    batch = [(await limiter.hit(rules_for(settings, gateway, batch=True))) for _ in range(5)]
    assert [d.allowed for d in batch] == [True] * 4 + [False]
    assert batch[-1].binding.rule.limit == 7 and batch[-1].binding.rule.scope == "user"
    # ... while interactive requests of that user stay refused.
    assert not (await limiter.hit(rules_for(settings, gateway))).allowed

    # The tenant's limit still bounds a burst: 5 per hour here.
    tight = Settings(rate_limit_user_per_minute=3, rate_limit_batch_burst=100, rate_limit_tenant_per_hour=5,
                     rate_limit_principal_share=1.0)
    other = SimpleNamespace(tenant_id=f"t-{uuid.uuid4().hex[:8]}", subject="gateway-2")
    burst = [await limiter.hit(rules_for(tight, other, batch=True)) for _ in range(7)]
    assert [d.allowed for d in burst] == [True] * 5 + [False] * 2
    assert burst[-1].binding.rule.scope == "tenant"


async def test_window_reset(pools: Any, make: Factory) -> None:
    period = 2
    clock = at_window_start(period)
    limiter = make(pools[0], clock)
    rule = Rule(key(), 3, period)
    assert [(await limiter.hit([rule])).allowed for _ in range(4)] == [True] * 3 + [False]
    refused = await limiter.hit([rule])
    assert 0 < refused.retry_after <= period
    clock.advance(seconds(refused.retry_after + 0.05))
    # The previous window still weighs in: its count fades over the next window.
    assert (await limiter.hit([rule])).allowed
    clock.advance(seconds(2 * period))
    fresh = [await limiter.hit([rule]) for _ in range(3)]
    assert all(d.allowed for d in fresh)


async def test_retry_after_is_when_the_next_request_is_admitted(pools: Any) -> None:
    period = 2
    clock = at_window_start(period)
    limiter = PostgresRateLimiter(pools[0], clock)
    rule = Rule(key(), 4, period)
    for _ in range(4):
        assert (await limiter.hit([rule])).allowed
    # Next window: the 4 of the previous window weigh 4 * (1 - elapsed); after one hit more
    # the limit is reached again and the next admission needs that weight to fade.
    clock.advance(seconds(period + 0.05))
    while (await limiter.hit([rule])).allowed:
        pass
    refused = await limiter.hit([rule])
    assert not refused.allowed and refused.retry_after > 0
    clock.advance(seconds(max(0.0, refused.retry_after - 0.15)))
    early = await limiter.hit([rule])
    clock.advance(seconds(0.3))
    late = await limiter.hit([rule])
    assert late.allowed
    assert not early.allowed or refused.retry_after < 0.2


async def test_prune_and_clear(pools: Any) -> None:
    # A day back: pruning at this clock's time leaves alone the live rows of tests running beside this one.
    clock = ManualClock(datetime.now(UTC) - timedelta(days=1))
    limiter = PostgresRateLimiter(pools[0], clock)
    rule = Rule(key(), 1, 1)
    await limiter.hit([rule])
    await limiter.clear([rule.key])
    assert (await limiter.hit([rule])).allowed
    clock.advance(seconds(2.1))  # its window and the next are over: the row is dead
    assert await limiter.prune() >= 1
    assert await pools[0].fetchval("SELECT count(*) FROM rate_limit_windows WHERE key = $1", rule.key) == 0


@pytest.mark.fast
async def test_app_role_may_use_the_limiter(migrated: str) -> None:
    """The app connects as wellpulse_app (no ownership): the grants cover table and function."""
    settings = Settings(database_url=migrated)  # type: ignore[call-arg]
    migrate(migrated, app_password=settings.secret("app_db_password"))  # the suite's password (tests/conftest.py)
    url = settings.resolved_app_database_url()
    try:
        pool = await db.create_pool(url, max_size=1)
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError) as exc:
        pytest.skip(f"cannot log in as the app role here: {exc}")
    try:
        assert await pool.fetchval("SELECT current_user") == "wellpulse_app"
        limiter = PostgresRateLimiter(pool)
        assert (await limiter.hit([Rule(key(), 1, 60)])).allowed
        assert await limiter.prune() >= 0
    finally:
        await pool.close()


@pytest.mark.fast
def test_decision_math_matches_limits() -> None:
    """The weighting is limits' sliding window counter: remaining and retry-after follow it."""
    from store.ratelimit import RuleState

    rule = Rule("k", 10, 60)
    # 8 in the previous minute, 20% into this one with 4 so far: 8 * 0.8 + 4 = 10.4 -> full
    state = RuleState(rule, prev=8, cur=4, elapsed=0.2, admitted=False)
    assert state.remaining == 0
    # admitted once 8 * (1 - f) + 4 < 10, i.e. f > 0.25: 3 s from now
    assert abs(state.retry_after - 3.0) < 1e-9
    assert Decision(False, (state,)).retry_after == state.retry_after


# ------------------------------------------------------------------ HTTP


def tiny_app(services: Any) -> FastAPI:
    app = FastAPI()
    errors.install(app)
    app.add_middleware(RequestContext)  # what copies an admitted request's X-RateLimit-* onto the answer

    async def caller(request: Request) -> SimpleNamespace:
        principal = SimpleNamespace(tenant_id=request.headers["x-tenant"], subject=request.headers["x-user"])
        await enforce_rate_limit(request, services, principal, batch=request.url.path.endswith("/batch"))
        return principal

    Caller = Annotated[SimpleNamespace, Depends(caller)]

    @app.get("/v1/things")
    async def things(principal: Caller) -> dict[str, Any]:
        return {"data": {"tenant": principal.tenant_id}}

    @app.post("/v1/things/batch")
    async def batch(principal: Caller) -> dict[str, Any]:
        return {"data": {"accepted": True}}

    return app


@pytest.mark.fast
async def test_http_429_envelope_and_headers(pools: Any) -> None:
    settings = Settings(rate_limit_user_per_minute=2, rate_limit_batch_burst=1, rate_limit_tenant_per_hour=50)
    services = SimpleNamespace(pool=pools[0], settings=settings)
    limiter = get_limiter(services)  # what the first request makes, kept on services
    assert isinstance(limiter, PostgresRateLimiter)
    limiter.clock = at_window_start(60)  # all hits in one minute window
    headers = {"x-tenant": f"t-{uuid.uuid4().hex[:8]}", "x-user": "alice"}
    transport = httpx.ASGITransport(app=tiny_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        first = await client.get("/v1/things", headers=headers)
        assert first.status_code == 200
        assert first.headers["X-RateLimit-Limit"] == "2"
        assert first.headers["X-RateLimit-Remaining"] == "1"
        assert int(first.headers["X-RateLimit-Reset"]) > 0
        assert "Retry-After" not in first.headers
        assert (await client.get("/v1/things", headers=headers)).headers["X-RateLimit-Remaining"] == "0"

        refused = await client.get("/v1/things", headers=headers)
        assert refused.status_code == 429
        body = refused.json()
        assert body["error"]["code"] == "RATE_LIMITED"
        assert "user" in body["error"]["message"]
        assert body["error"]["details"] == []
        retry = int(refused.headers["Retry-After"])
        assert 1 <= retry <= 60
        assert refused.headers["X-RateLimit-Limit"] == "2"
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        assert int(refused.headers["X-RateLimit-Reset"]) >= retry

        # the batch endpoint has its burst on top: one more, then refused too
        ok = await client.post("/v1/things/batch", headers=headers)
        assert ok.status_code == 200 and ok.headers["X-RateLimit-Limit"] == "3"
        assert (await client.post("/v1/things/batch", headers=headers)).status_code == 429

        # another user of the tenant is not affected
        other = await client.get("/v1/things", headers={**headers, "x-user": "bob"})
        assert other.status_code == 200
        assert services.rate_limiter is limiter  # made once, cached on services

        # disabled: no check, no headers
        settings_off = Settings(rate_limit_enabled=False)
        services.settings = settings_off
        off = await client.get("/v1/things", headers=headers)
        assert off.status_code == 200 and "X-RateLimit-Limit" not in off.headers


@pytest.mark.fast
async def test_limits_storage_url(pools: Any) -> None:
    """WELLPULSE_RATE_LIMIT_STORAGE_URL picks one of limits' own storages (memory here)."""
    settings = Settings(rate_limit_user_per_minute=1, rate_limit_tenant_per_hour=10,
                        rate_limit_storage_url="memory://")
    services = SimpleNamespace(pool=pools[0], settings=settings)
    principal = SimpleNamespace(tenant_id="t-mem", subject="alice")
    request = SimpleNamespace(state=SimpleNamespace())
    await enforce_rate_limit(request, services, principal)  # type: ignore[arg-type]
    assert isinstance(services.rate_limiter, LimitsRateLimiter)
    assert request.state.rate_limit_headers["X-RateLimit-Remaining"] == "0"
    with pytest.raises(errors.ApiError) as refused:
        await enforce_rate_limit(request, services, principal)  # type: ignore[arg-type]
    assert refused.value.status == 429 and refused.value.code == "RATE_LIMITED"
    assert refused.value.headers is not None and int(refused.value.headers["Retry-After"]) >= 1
