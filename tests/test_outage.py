"""The database stopped under a live feed: ingest holds its batch, loses nothing, and still alerts on what
arrived while it was down.

Readings that arrive during the outage wait in JetStream. Were the TenantActor to hand a failed batch back
(a nak), newer messages would overtake it, and the models, which learn in time order and skip what is older
than the last snapshot they learned, would store an incident inside it but never alert on it (bench.chaos
counted 20 such silent incidents in its PostgreSQL scenario). This stops the session's own PostgreSQL server
for real, so it runs only where the tests started that server.
"""

import asyncio
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from store.embedded import EmbeddedPostgres
from tests.helpers import create_tenant, new_tenant_id, now_utc, publish, settled, snapshot, wait_for
from tests.test_streaming_e2e import TUBING_RULE, pump_jack_values


async def _write_retries(stack: Any, tenant: str) -> int:
    actor = await stack.supervisor.tenant.remote(tenant)
    stats = await actor.stats.remote()
    return int(stats["counters"]["write_retries"])


async def test_an_incident_sent_while_the_database_is_down_opens_its_alert_once_it_is_back(
        stack: Any, embedded_pg: EmbeddedPostgres | None) -> None:
    if embedded_pg is None:
        pytest.skip("WELLPULSE_TEST_DATABASE_URL names a server these tests did not start: it is not stopped here")
    tenant = new_tenant_id("outage")
    await create_tenant(stack, tenant, [("PJ-A", "pump_jack")], rules=[TUBING_RULE])
    start = now_utc() - timedelta(minutes=5)

    def batch(first: int, last: int, incident: range = range(0)) -> list[tuple[str, bytes]]:
        return [("PJ-A", snapshot("PJ-A", start + timedelta(seconds=i),
                                  pump_jack_values(i, 4_000.0 if i in incident else None)))
                for i in range(first, last)]

    await publish(stack.settings.nats_url, tenant, batch(0, 20))
    await settled(stack, tenant)
    await asyncio.to_thread(embedded_pg.stop)
    try:
        # While the database is down the feed goes on, as a gateway's would: the incident (three snapshots over
        # the threshold), then newer normal readings, each publish seen by ingest before the next.
        for first in range(20, 60, 5):
            tried = await _write_retries(stack, tenant)
            await publish(stack.settings.nats_url, tenant, batch(first, first + 5, incident=range(22, 25)))
            await wait_for(lambda n=tried: _retried_since(stack, tenant, n), timeout=60)
    finally:
        await asyncio.to_thread(embedded_pg.start)

    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        async def opened() -> int:
            return int(await conn.fetchval(
                "SELECT count(*) FROM alerts WHERE tenant_id = $1 AND rule_id = 'tubing_high'", tenant))

        assert await wait_for(opened, timeout=60) == 1
        await settled(stack, tenant)
        assert await opened() == 1
        alert = await conn.fetchrow(
            "SELECT opened_at FROM alerts WHERE tenant_id = $1 AND rule_id = 'tubing_high'", tenant)
        assert alert["opened_at"] == start + timedelta(seconds=22)  # at the incident's own time, not at recovery
        per_ts = await conn.fetch(
            "SELECT ts, count(*) AS n FROM readings WHERE tenant_id = $1 GROUP BY ts", tenant)
        assert len(per_ts) == 60 and {r["n"] for r in per_ts} == {5}  # every snapshot stored, and once
    finally:
        await conn.close()


async def _retried_since(stack: Any, tenant: str, before: int) -> bool:
    """The TenantActor has tried to write again since `before` retries (it is holding a batch)."""
    return await _write_retries(stack, tenant) > before
