"""Rate limit counters shared by every Serve replica, kept in PostgreSQL.

The algorithm is the *sliding window counter* of the ``limits`` library (its
``SlidingWindowCounterRateLimiter``): per key, the count of the current fixed window plus
the previous window's count weighted by how much of it the sliding window still
covers; a request is admitted while ``floor(weighted) + 1 <= limit``.

Two backends share that algorithm and the :class:`Decision` they return:

* :class:`PostgresRateLimiter` (the default): the function ``wellpulse_rate_limit_hit``
  (schema/sql/004_rate_limits.sql) checks and counts *all* limits of a request (user
  and tenant) atomically, all or nothing, in one round trip, on the database clock.
* :class:`LimitsRateLimiter`: any async storage of ``limits`` that supports the sliding
  window counter (``async+redis://...``, ``async+memory://``, or :class:`PostgresStorage`
  below). Two storage calls per limit, and not atomic across limits; used when
  ``WELLPULSE_RATE_LIMIT_STORAGE_URL`` is set.

Both read the database clock, so replicas on different hosts agree on the windows; a test passes a
`config.clock.ManualClock` instead and moves time on rather than waiting for a window to pass.

Nothing here does work at import time; pools and storages are passed in.
"""

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from limits.aio.storage import Storage
from limits.aio.storage.base import SlidingWindowCounterSupport

from config.clock import SYSTEM_CLOCK, Clock


@dataclass(frozen=True)
class Rule:
    """One limit: at most ``limit`` requests per ``period`` seconds for ``key``."""

    key: str
    limit: int
    period: int
    scope: str = ""  # what the key stands for in messages ("user", "tenant")


@dataclass(frozen=True)
class RuleState:
    rule: Rule
    prev: int  # count of the previous fixed window
    cur: int  # count of the current fixed window (this request included if consumed)
    elapsed: float  # how far into the current window we are, 0 <= elapsed < 1
    admitted: bool  # this limit alone admits the request

    @property
    def weighted(self) -> float:
        return self.prev * (1 - self.elapsed) + self.cur

    @property
    def remaining(self) -> int:
        return max(0, self.rule.limit - math.floor(self.weighted))

    @property
    def reset_after(self) -> float:
        """Seconds until the quota is fully restored (both windows have aged out)."""
        left = (1 - self.elapsed) * self.rule.period
        if self.cur:
            return left + self.rule.period
        return left if self.prev else 0.0

    @property
    def retry_after(self) -> float:
        """Seconds until one more request would be admitted (0 if it would be now)."""
        p, c, f, limit, period = self.prev, self.cur, self.elapsed, self.rule.limit, self.rule.period
        if limit <= 0:
            return float(period)
        if p * (1 - f) + c < limit:
            return 0.0
        if c < limit:  # the previous window's weight must fade: p * (1 - f') + c < limit
            return max(0.0, period * (1 - (limit - c) / p - f))
        # wait for the next window, in which this window's count fades in turn
        return (1 - f) * period + period * max(0.0, 1 - limit / c)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    states: tuple[RuleState, ...]

    @property
    def binding(self) -> RuleState:
        """The limit to report: on refusal the one that refuses longest, else the tightest."""
        if not self.allowed:
            return max((s for s in self.states if not s.admitted), key=lambda s: s.retry_after)
        return min(self.states, key=lambda s: (s.remaining, -s.reset_after))

    @property
    def retry_after(self) -> float:
        return max((s.retry_after for s in self.states if not s.admitted), default=0.0)


# ------------------------------------------------------------- PostgreSQL, one round trip


class PostgresRateLimiter:
    """All limits of a request checked and counted in one statement (see module doc)."""

    PRUNE_EVERY_SECONDS = 600.0

    def __init__(self, pool: asyncpg.Pool, clock: Clock | None = None) -> None:
        self.pool = pool
        self.clock = clock  # None: the database clock
        self._next_prune = time.monotonic() + self.PRUNE_EVERY_SECONDS
        self._prune_task: asyncio.Task[Any] | None = None

    async def hit(self, rules: Sequence[Rule]) -> Decision:
        rows = await self.pool.fetch(
            "SELECT idx, prev_count, cur_count, elapsed, admitted, consumed"
            " FROM wellpulse_rate_limit_hit($1::text[], $2::int[], $3::int[], $4::float8)",
            [r.key for r in rules], [r.limit for r in rules], [r.period for r in rules],
            None if self.clock is None else self.clock.now().timestamp(),
        )
        self._maybe_prune()
        states = tuple(
            RuleState(rules[row["idx"] - 1], row["prev_count"], row["cur_count"], row["elapsed"], row["admitted"])
            for row in rows
        )
        return Decision(allowed=bool(rows) and rows[0]["consumed"], states=states)

    async def clear(self, keys: Sequence[str]) -> None:
        await self.pool.execute("DELETE FROM rate_limit_windows WHERE key = ANY($1::text[])", list(keys))

    async def prune(self) -> int:
        """Delete dead rows (keys idle for two periods); returns how many."""
        status = await self.pool.execute("DELETE FROM rate_limit_windows WHERE expires_at < coalesce($1, now())",
                                         None if self.clock is None else self.clock.now())
        return int(status.rsplit(" ", 1)[-1])

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now < self._next_prune or (self._prune_task is not None and not self._prune_task.done()):
            return
        self._next_prune = now + self.PRUNE_EVERY_SECONDS
        self._prune_task = asyncio.get_running_loop().create_task(self._prune_quietly())

    async def _prune_quietly(self) -> None:
        try:
            await self.prune()
        except Exception:  # best effort: a dead row costs only a little space  # noqa: S110  best effort, the caller goes on either way
            pass

    async def close(self) -> None:
        if self._prune_task is not None:
            await asyncio.gather(self._prune_task, return_exceptions=True)


# ------------------------------------------------------------- limits' own storages


class LimitsRateLimiter:
    """The same algorithm on any ``limits`` async storage with sliding window counter support.

    Limits are hit in order and the first refusal stops; a refusal by a later limit
    leaves the earlier ones counted (storages of ``limits`` have no multi-key atomicity).
    """

    def __init__(self, storage: Storage, clock: Clock = SYSTEM_CLOCK) -> None:
        if not isinstance(storage, SlidingWindowCounterSupport):
            raise ValueError(f"{type(storage).__name__} does not support the sliding window counter")
        self.storage = storage
        self.clock = clock  # where the window stands when the storage has no previous one to tell

    async def hit(self, rules: Sequence[Rule]) -> Decision:
        storage: Any = self.storage
        states: list[RuleState] = []
        allowed = True
        for rule in rules:
            admitted = await storage.acquire_sliding_window_entry(rule.key, rule.limit, rule.period, 1)
            prev, prev_ttl, cur, _ = await storage.get_sliding_window(rule.key, rule.period)
            # limits reports the previous window's weight as its TTL: prev_ttl / period == 1 - elapsed
            elapsed = 1 - prev_ttl / rule.period if prev else (self.clock.now().timestamp() / rule.period) % 1
            states.append(RuleState(rule, prev, cur, elapsed, admitted))
            if not admitted:
                allowed = False
                break
        return Decision(allowed=allowed, states=tuple(states))

    async def clear(self, keys: Sequence[str], periods: Sequence[int]) -> None:
        storage: Any = self.storage
        for key, period in zip(keys, periods, strict=True):
            await storage.clear_sliding_window(key, period)

    async def close(self) -> None:
        pass


# The time the statements below read: their $3, or the database clock when that is NULL (see PostgresStorage).
_NOW = "coalesce($3::timestamptz, clock_timestamp())"


class PostgresStorage(Storage, SlidingWindowCounterSupport):
    """A ``limits`` async storage on the UNLOGGED table ``rate_limit_counters``.

    Supports the fixed window and sliding window counter strategies of ``limits``
    (``limits.aio.strategies``); each call is one statement.
    """

    STORAGE_SCHEME = None  # built from a pool, not from a URI

    def __init__(self, pool: asyncpg.Pool, wrap_exceptions: bool = False, clock: Clock | None = None) -> None:
        super().__init__(None, wrap_exceptions=wrap_exceptions)
        self.pool = pool
        self.clock = clock  # None: the database clock

    def _now(self) -> datetime | None:
        """The time to pass as the statements' ``$3`` (NULL: the database's ``clock_timestamp()``)."""
        return None if self.clock is None else self.clock.now()

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return (asyncpg.PostgresError, OSError)

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return await self.pool.fetchval(
            "INSERT INTO rate_limit_counters AS c (key, value, expires_at)"
            " VALUES ($1, $4::bigint, " + _NOW + " + make_interval(secs => $2::float8))"
            " ON CONFLICT (key) DO UPDATE SET"
            "  value = CASE WHEN c.expires_at <= " + _NOW + " THEN $4::bigint ELSE c.value + $4::bigint END,"
            "  expires_at = CASE WHEN c.expires_at <= " + _NOW + " THEN EXCLUDED.expires_at"
            "               ELSE c.expires_at END"
            " RETURNING value",
            key, float(expiry), self._now(), amount,
        )

    async def get(self, key: str) -> int:
        value = await self.pool.fetchval(
            "SELECT value FROM rate_limit_counters WHERE key = $1 AND expires_at > coalesce($2, clock_timestamp())",
            key, self._now(),
        )
        return int(value or 0)

    async def get_expiry(self, key: str) -> float:
        value = await self.pool.fetchval(
            "SELECT extract(epoch FROM expires_at)::float8 FROM rate_limit_counters"
            " WHERE key = $1 AND expires_at > coalesce($2, clock_timestamp())", key, self._now(),
        )
        return float(value) if value is not None else (self.clock or SYSTEM_CLOCK).now().timestamp()

    async def check(self) -> bool:
        try:
            return await self.pool.fetchval("SELECT true") is True
        except Exception:
            return False

    async def reset(self) -> int | None:
        status = await self.pool.execute("DELETE FROM rate_limit_counters")
        return int(status.rsplit(" ", 1)[-1])

    async def clear(self, key: str) -> None:
        await self.pool.execute("DELETE FROM rate_limit_counters WHERE key = $1", key)

    # Sliding window counter: the windows are keys "<key>/<window index>", as in limits.
    _SLIDING = (
        "WITH t AS (SELECT extract(epoch FROM " + _NOW + ") / $2::float8 AS x),"
        " w AS (SELECT floor(x)::bigint AS win, x - floor(x) AS f FROM t),"
        " p AS (SELECT coalesce((SELECT value FROM rate_limit_counters"
        "        WHERE key = $1 || '/' || (w.win - 1) AND expires_at > " + _NOW + "), 0) AS prev,"
        "       coalesce((SELECT value FROM rate_limit_counters"
        "        WHERE key = $1 || '/' || w.win AND expires_at > " + _NOW + "), 0) AS cur,"
        "       w.win, w.f FROM w)"
    )

    async def acquire_sliding_window_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        # Counts and increments in one statement; concurrent callers may both pass the
        # check, so (as limits' own storages do) re-check after the increment and undo.
        row = await self.pool.fetchrow(
            self._SLIDING + ","
            " ins AS (INSERT INTO rate_limit_counters AS c (key, value, expires_at)"
            "   SELECT $1 || '/' || p.win, $5::bigint, to_timestamp((p.win + 2) * $2::float8) FROM p"
            "   WHERE floor(p.prev * (1 - p.f) + p.cur) + $5::bigint <= $4::bigint"
            "   ON CONFLICT (key) DO UPDATE SET value = CASE WHEN c.expires_at <= " + _NOW +
            "     THEN $5::bigint ELSE c.value + $5::bigint END, expires_at = EXCLUDED.expires_at"
            "   RETURNING value)"
            " SELECT p.prev, p.f, (SELECT value FROM ins) AS cur, p.win FROM p",
            key, float(expiry), self._now(), limit, amount,
        )
        if row["cur"] is None:
            return False
        if math.floor(row["prev"] * (1 - row["f"]) + row["cur"]) > limit:
            await self.pool.execute(
                "UPDATE rate_limit_counters SET value = value - $2 WHERE key = $1", f"{key}/{row['win']}", amount
            )
            return False
        return True

    async def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        row = await self.pool.fetchrow(self._SLIDING + " SELECT prev, cur, f FROM p", key, float(expiry), self._now())
        prev, cur, f = int(row["prev"]), int(row["cur"]), float(row["f"])
        return prev, (1 - f) * expiry if prev else 0.0, cur, (1 - f) * expiry + expiry

    async def clear_sliding_window(self, key: str, expiry: int) -> None:
        await self.pool.execute(
            "DELETE FROM rate_limit_counters WHERE key LIKE $1 || '/%'", key.replace("%", r"\%").replace("_", r"\_")
        )
