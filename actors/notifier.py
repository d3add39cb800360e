"""The notifier: committed alert openings and escalations, delivered to the tenant's channels.

Where it runs: a task of the tenant's `TenantActor`, started with its consume loop. The Supervisor keeps exactly
one TenantActor per active tenant (a named actor, restarted by Ray), and that actor already holds a pool bound to
the tenant (row-level security), a NATS connection and the `config.Clock` housekeeping decides by. So each
tenant's deliveries have one sender at a time without leases or locks between nodes, follow the tenant when it
moves, and stop when it is deactivated; a NotifierActor per node would have to partition tenants among
notifiers itself. Sending is IO-bound and awaits, so it does not hold up ingest on the same event loop.

Nothing lost, nothing doubled (docs/architecture.md):

1. `store.notifications.plan_deliveries` reads ``alert_events`` after the tenant's cursor (by seq, which is commit
   order within a tenant, as for the WebSocket hub) and, in one transaction, inserts one ``pending`` delivery per
   (event, channel) and moves the cursor. The unique (event seq, channel) key is the idempotency key: a restart
   re-reads from the committed cursor and plans nothing twice, and an event is never skipped. The same
   transaction plans the users' in-app notifications (`store.in_app_notifications`, keyed by user and event).
2. Due deliveries are sent outside any transaction; each outcome is then committed: ``sent``, or another attempt
   after an exponential backoff with jitter, or (once `notification_retry_seconds` have passed since the event,
   or on an answer a retry cannot change) ``failed`` with a ``notification_failed`` alert event, published on
   ALERTS after the commit. A process dying between a send and its record sends that delivery again (at least
   once on the wire); the message carries the delivery id (``X-WellPulse-Delivery``, the mail's Message-ID) so a
   receiver can drop the repeat.

3. Escalations (`store.escalations`): an alert opened on a policy route that names an escalation chain starts it
   in the planning transaction; each round fires the steps that are due, planning their deliveries (keyed by
   event, round, step, recipient and medium) and moving the escalation on in one transaction.

In-app notifications committed by 1 and 3 are announced on ``inapp.<tenant>`` (core NATS) for the WebSocket hub.
The ALERTS stream wakes it; it also polls every `POLL_SECONDS` (a lost wake-up, a retry coming due).
`Notifier.run_round` is one round, which a test runs against PostgreSQL alone with a `config.ManualClock`.
"""

import asyncio
import logging
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import asyncpg

from config import Clock, Settings
from config.secrets import SecretBox
from notify.acklinks import AckLinks
from notify.routing import PolicyError
from schema.severity import SEVERITIES
from store import db, escalations
from store import in_app_notifications as in_app
from store import notification_policies as policies
from store import notifications as store
from store.senders import Notice, SendResult, http_session, send

__all__ = ["LATENCY_BUCKETS", "Notifier", "RetryPolicy", "ack_links_of"]

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0
PLAN_PAGE = 500
SEND_PAGE = 100
CONCURRENCY = 16
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"))

Publish = Callable[[Sequence[Any]], Awaitable[None]]
# In-app notifications just committed (rows of `store.in_app_notifications.INBOX_COLUMNS`), for the WebSocket.
Announce = Callable[[Sequence[Any]], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often a failing delivery is tried again."""

    retry_seconds: float = 3600.0
    backoff_seconds: float = 2.0
    backoff_max_seconds: float = 300.0
    timeout_seconds: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "RetryPolicy":
        return cls(retry_seconds=settings.notification_retry_seconds,
                   backoff_seconds=settings.notification_backoff_seconds,
                   backoff_max_seconds=settings.notification_backoff_max_seconds,
                   timeout_seconds=settings.notification_timeout_seconds)

    def delay(self, attempts: int, rng: random.Random) -> float:
        """The wait after the ``attempts``-th failed attempt: doubling from `backoff_seconds` up to
        `backoff_max_seconds`, times a jitter in [0.5, 1) so that retries after an outage do not come in step.

        >>> policy = RetryPolicy(backoff_seconds=2.0, backoff_max_seconds=300.0)
        >>> [round(policy.delay(n, random.Random(1)), 2) for n in (1, 2, 3, 10)]
        [1.13, 2.27, 4.54, 170.15]
        """
        return min(self.backoff_max_seconds, self.backoff_seconds * 2 ** (attempts - 1)) * (0.5 + rng.random() / 2)


class Notifier:
    """One tenant's deliveries: plan them from committed events, send the due ones, record each outcome."""

    def __init__(self, pool: asyncpg.Pool, tenant_id: str, box: SecretBox, *, policy: RetryPolicy, clock: Clock,
                 publish: Publish | None = None, rng: random.Random | None = None,
                 ack_links: AckLinks | None = None, announce: Announce | None = None,
                 allow_private_networks: bool = False) -> None:
        self.pool = pool
        self.allow_private_networks = allow_private_networks
        self.announce = announce
        self.ack_links = ack_links
        self.tenant_id = tenant_id
        self.box = box
        self.policy = policy
        self.clock = clock
        self.publish = publish
        self.rng = rng or random.Random()  # noqa: S311  jitter, not a secret
        self.wake = asyncio.Event()
        self._round_lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        # Per channel kind, for /metrics (serve/notifications.py turns them into metric families).
        self.sent: dict[str, int] = defaultdict(int)
        self.failed: dict[str, int] = defaultdict(int)
        self.attempt_errors: dict[str, int] = defaultdict(int)
        self.latency_hist: dict[str, list[int]] = defaultdict(lambda: [0] * len(LATENCY_BUCKETS))
        self.latency_sum: dict[str, float] = defaultdict(float)

    async def run_forever(self) -> None:
        """Rounds on every wake-up (`wake`, set by ALERTS messages) and every `POLL_SECONDS`."""
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), POLL_SECONDS)
            except TimeoutError:
                pass
            self.wake.clear()
            try:
                await self.run_round()
            except Exception:
                log.exception("notification round failed for %s", self.tenant_id)

    async def run_round(self) -> int:
        """Plan what committed events ask for, then send what is due; returns the deliveries attempted."""
        async with self._round_lock:
            while await self._plan_page() == PLAN_PAGE:
                pass
            await self._escalate()
            attempted = 0
            while True:
                async with db.tenant_tx(self.pool, self.tenant_id) as conn:
                    due = await store.due_deliveries(conn, self.tenant_id, now=self.clock.now(), limit=SEND_PAGE)
                if not due:
                    return attempted
                limit = asyncio.Semaphore(CONCURRENCY)
                await asyncio.gather(*(self._attempt(row, limit) for row in due))
                attempted += len(due)
                if len(due) < SEND_PAGE:
                    return attempted

    async def _plan_page(self) -> int:
        """One page of events planned: through the tenant's policy tree into groups (then the due groups become
        deliveries), or, with no policy, straight to every channel; and the users' in-app notifications."""
        async with db.tenant_tx(self.pool, self.tenant_id) as conn:
            now = self.clock.now()
            try:
                policy = await policies.load_policy(conn, self.tenant_id)
            except PolicyError:  # stored before a rule tightened: the channels still hear of every alert
                log.exception("the notification policy of %s cannot be read; notifying every channel",
                              self.tenant_id)
                policy = None
            # The same page of events, before the plan below moves the cursor past it: one in-app notification
            # per user who may read alerts, committed (or not) with the channel deliveries.
            inbox = await in_app.plan_in_app(conn, self.tenant_id, now=now, limit=PLAN_PAGE)
            if policy is None:
                events, _planned = await store.plan_deliveries(conn, self.tenant_id, now=now, limit=PLAN_PAGE)
            else:
                events, _entries = await policies.plan_routed(conn, self.tenant_id, policy, now=now,
                                                              limit=PLAN_PAGE)
            # Groups left by a policy since removed still speak, unmuted: nothing they gathered is dropped.
            await policies.flush_groups(conn, self.tenant_id, now=now, limit=PLAN_PAGE,
                                        muted_until=policy.muted_until if policy else _never_muted)
        await self._announce(inbox)
        return events

    async def _escalate(self) -> None:
        """Fire the escalation steps that are due (`store.escalations`): their deliveries are then sent below."""
        while True:
            async with db.tenant_tx(self.pool, self.tenant_id) as conn:
                fired = await escalations.fire_due(conn, self.tenant_id, now=self.clock.now(), limit=PLAN_PAGE)
            await self._announce([row for f in fired for row in f.in_app])
            if len(fired) < PLAN_PAGE:
                return

    async def _announce(self, inbox: Sequence[Any]) -> None:
        """Committed in-app notifications to the WebSocket; a push lost is no loss (the inbox keeps them)."""
        if inbox and self.announce is not None:
            try:
                await self.announce(inbox)
            except Exception:
                log.warning("in-app notifications of %s not pushed to the WebSocket", self.tenant_id,
                            exc_info=True)

    async def _attempt(self, row: asyncpg.Record, limit: asyncio.Semaphore) -> None:
        kind = row["channel_kind"]
        async with limit:
            try:
                secrets = store.open_secrets(self.box, row["secret"])
            except ValueError:
                result = SendResult(False, 0.0, error="the channel's secret cannot be opened (data key changed?)",
                                    permanent=True)
            else:
                result = await send(kind, row["config"], secrets, self._notice(row),
                                    timeout=self.policy.timeout_seconds, session=await self._http(),
                                    recipient=row["recipient"], allow_private_networks=self.allow_private_networks)
        await self._record(row, result)

    async def _record(self, row: asyncpg.Record, result: SendResult) -> None:
        kind, now = row["channel_kind"], self.clock.now()
        self._observe(kind, result)
        deadline = row["created_at"] + timedelta(seconds=self.policy.retry_seconds)
        failed_event = None
        async with db.tenant_tx(self.pool, self.tenant_id) as conn:
            if result.ok:
                await store.mark_sent(conn, self.tenant_id, row["id"], now=now, response_code=result.response_code,
                                      latency_ms=result.latency_ms)
            elif result.permanent or now >= deadline:
                failed_event = await store.mark_failed(conn, self.tenant_id, row["id"], now=now,
                                                       error=result.error or "failed",
                                                       response_code=result.response_code,
                                                       latency_ms=result.latency_ms)
            else:
                retry_at = min(now + timedelta(seconds=self.policy.delay(row["attempts"] + 1, self.rng)), deadline)
                await store.mark_retry(conn, self.tenant_id, row["id"], next_attempt_at=retry_at,
                                       error=result.error or "failed", response_code=result.response_code,
                                       latency_ms=result.latency_ms)
        if failed_event is not None:
            self.failed[kind] += 1
            log.warning("notification %s to a %s channel of %s failed for good", row["id"], kind, self.tenant_id)
            if self.publish is not None:
                await self.publish([failed_event])

    def _notice(self, row: asyncpg.Record) -> Notice:
        """The message of a due delivery, with its own acknowledge link (the delivery id is the link's nonce)."""
        notice = notice_of(self.tenant_id, row)
        if self.ack_links is None:
            return notice
        token, url = self.ack_links.make(self.tenant_id, row["alert_id"], row["id"].hex,
                                         now=self.clock.now().timestamp())
        return replace(notice, ack_token=token, ack_url=url)

    def _observe(self, kind: str, result: SendResult) -> None:
        if result.ok:
            self.sent[kind] += 1
        else:
            self.attempt_errors[kind] += 1
        seconds = result.latency_ms / 1000
        self.latency_sum[kind] += seconds
        hist = self.latency_hist[kind]
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                hist[i] += 1
                break

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = http_session(allow_private_networks=self.allow_private_networks)
        return self._session

    def stats(self) -> dict[str, Any]:
        """Counters per channel kind, plain data (they cross Ray to /metrics)."""
        return {"sent": dict(self.sent), "failed": dict(self.failed), "attempt_errors": dict(self.attempt_errors),
                "latency_hist": {k: list(v) for k, v in self.latency_hist.items()},
                "latency_sum": dict(self.latency_sum), "latency_buckets": list(LATENCY_BUCKETS)}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def ack_links_of(settings: Settings) -> AckLinks | None:
    """The links a tenant's notifications carry (None when no ``ack_link_key`` is configured or generated)."""
    if settings.ack_link_key is None:
        return None
    return AckLinks(settings.ack_link_key.get_secret_value().encode(), settings.public_url,
                    settings.ack_link_hours * 3600)


def _never_muted(_timings: Sequence[str], _at: datetime) -> None:
    return None


def notice_of(tenant_id: str, row: asyncpg.Record) -> Notice:
    """What a due delivery (a row of `store.notifications.due_deliveries`) says; a grouped one lists its alerts,
    under the gravest severity among them."""
    grouped: list[dict[str, Any]] = row["grouped"] or []
    severity, message = row["severity"], row["message"]
    if len(grouped) > 1:
        severity = max((a["severity"] for a in grouped), key=SEVERITIES.index)
        message = "\n".join(f"- [{a['severity']}] {a['rule_id']} on {a['equipment_id']}: {a['message']}"
                            f" (alert {a['alert_id']}, {a['event_kind']})" for a in grouped)
    return Notice(delivery_id=str(row["id"]), tenant_id=tenant_id, alert_id=row["alert_id"],
                  event_seq=row["event_seq"], event_kind=row["event_kind"], equipment_id=row["equipment_id"],
                  rule_id=row["rule_id"], severity=severity, state=row["state"], message=message,
                  occurred_at=row["occurred_at"], alerts=tuple(grouped) if len(grouped) > 1 else (),
                  group=row["route"] or "")

