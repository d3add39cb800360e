"""Per-user and per-tenant rate limits, enforced in the auth dependency.

Two limits apply to every authenticated request, checked together and counted only
when both admit it (store/ratelimit.py, one database round trip):

* the user's: ``rate_limit_user_per_minute`` per (tenant, subject) over a sliding minute;
* the tenant's: ``rate_limit_tenant_per_hour`` over a sliding hour, all its users together.

Batch endpoints (ingest, sync: a gateway catching up after an outage) pass
``batch=True``: they count in the *same* per-user window but may take it up to
``user_per_minute + batch_burst`` (a burst of ``batch_burst`` requests beyond the
interactive limit), while the tenant's hourly limit still bounds the total. Interactive
requests of that user wait until the burst has faded below their own limit.

Refusal: ``429`` with the error envelope (code ``RATE_LIMITED``), ``Retry-After`` (seconds
until a request would be admitted) and ``X-RateLimit-Limit/-Remaining/-Reset`` of the
refusing limit. Admitted requests carry ``X-RateLimit-*`` of the tighter limit (the
middleware in serve/errors.py copies them from ``request.state.rate_limit_headers``).
``X-RateLimit-Reset`` is in seconds until the quota is fully restored.
"""

import logging
import math
from typing import TYPE_CHECKING, Protocol

from starlette.requests import HTTPConnection

from config import Settings
from serve.errors import ApiError
from store.ratelimit import Decision, LimitsRateLimiter, PostgresRateLimiter, Rule

if TYPE_CHECKING:  # serve.services keeps the limiter this module makes
    from serve.services import Services

log = logging.getLogger(__name__)

USER_PERIOD = 60
TENANT_PERIOD = 3600


class _Principal(Protocol):
    @property
    def tenant_id(self) -> str: ...

    @property
    def subject(self) -> str: ...


class RateLimiter(Protocol):
    async def hit(self, rules: list[Rule]) -> Decision: ...


def rules_for(settings: Settings, principal: _Principal, *, batch: bool = False, essential: bool = False,
              ) -> list[Rule]:
    """The limits a request counts against.

    Besides its own minute, a principal may take at most `rate_limit_principal_share` of the tenant's hour, so
    one busy viewer cannot exhaust the bucket the whole control room shares. ``essential`` requests (an
    operator acknowledging or resolving an alert) count only against the caller's own minute: they must get
    through when the tenant's hour is spent.
    """
    user_limit = settings.rate_limit_user_per_minute + (settings.rate_limit_batch_burst if batch else 0)
    kind = getattr(getattr(principal, "kind", None), "value", "user")  # users and API keys apart
    # tenant ids and kinds cannot contain ':', so the subject (any string, last) cannot forge another key
    who = f"{principal.tenant_id}:{kind}:{principal.subject}"
    rules = [Rule(f"u:{USER_PERIOD}:{who}", user_limit, USER_PERIOD, "user")]
    if essential:
        return rules
    tenant_limit = settings.rate_limit_tenant_per_hour
    share = max(1, math.ceil(tenant_limit * settings.rate_limit_principal_share))
    if share < tenant_limit:
        rules.append(Rule(f"s:{TENANT_PERIOD}:{who}", share, TENANT_PERIOD, "user's share of the tenant"))
    rules.append(Rule(f"t:{TENANT_PERIOD}:{principal.tenant_id}", tenant_limit, TENANT_PERIOD, "tenant"))
    return rules


def build_limiter(services: "Services") -> RateLimiter:
    url = services.settings.rate_limit_storage_url
    if url:
        from limits.aio.storage import Storage as AsyncStorage
        from limits.storage import storage_from_string

        storage = storage_from_string(url if url.startswith("async+") else f"async+{url}")
        if not isinstance(storage, AsyncStorage):  # an ``async+`` URL always makes one; this tells the checker
            raise TypeError(f"rate limit storage {url!r} is not an async storage")
        return LimitsRateLimiter(storage)
    return PostgresRateLimiter(services.pool)


def get_limiter(services: "Services") -> RateLimiter:
    """The replica's limiter, made on first use and kept on ``services`` (no await: no race)."""
    limiter: RateLimiter | None = getattr(services, "rate_limiter", None)
    if limiter is None:
        limiter = services.rate_limiter = build_limiter(services)
    return limiter


def headers_for(decision: Decision) -> dict[str, str]:
    state = decision.binding
    headers = {
        "X-RateLimit-Limit": str(state.rule.limit),
        "X-RateLimit-Remaining": str(state.remaining if decision.allowed else 0),
        "X-RateLimit-Reset": str(math.ceil(state.reset_after)),
    }
    if not decision.allowed:
        headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after)))
    return headers


async def enforce_rate_limit(request: HTTPConnection, services: "Services", principal: _Principal, *,
                             batch: bool = False, essential: bool = False) -> None:
    """Count this request against the caller's limits; ``ApiError(429)`` when over one."""
    settings = services.settings
    if not settings.rate_limit_enabled:
        return
    limiter = get_limiter(services)
    try:
        decision = await limiter.hit(rules_for(settings, principal, batch=batch, essential=essential))
    except Exception as exc:
        # Fail open: losing the limiter's storage must not take the API down with it.
        log.warning("rate limiter unavailable (%s): request admitted unchecked", type(exc).__name__)
        return
    headers = headers_for(decision)
    if decision.allowed:
        request.state.rate_limit_headers = headers
        return
    state = decision.binding
    raise ApiError(
        429,
        f"rate limit exceeded for this {state.rule.scope}: {state.rule.limit} requests per"
        f" {_period(state.rule.period)}; retry after {headers['Retry-After']} s",
        code="RATE_LIMITED",
        headers=headers,
    )


def _period(seconds: int) -> str:
    return {60: "minute", 3600: "hour"}.get(seconds, f"{seconds} s")
