"""The alert operations against PostgreSQL alone (fast tier): acknowledge, resolve, shelve, escalate, silence.

Time-driven outcomes run one housekeeping round (`actors.tenant.housekeeping_round`, what the TenantActor runs
every few seconds) at a `ManualClock`'s time: an hour of escalation delay or a half-hour silence passes in no
time, and "nothing happened yet" is checked at a known instant instead of after a sleep.
"""

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from actors.equipment import publish_alert_events
from actors.tenant import housekeeping_round
from config import ManualClock
from schema.errors import Conflict, InvalidInput
from schema.severity import SEVERITY_RANK
from store import alerts as alert_store
from tests.helpers import new_tenant_id, now_utc, seed_tenant, seeded_tenant

pytestmark = pytest.mark.fast
ESCALATE_AFTER = 15 * 60.0  # the server default (Settings.escalate_after_seconds)


async def _opened(services: Any, tenant: str, clock: ManualClock, rule_id: str = "r1",
                  equipment_id: str = "MTR-1") -> list[Any]:
    """A model's "opened" for (equipment, rule) at the clock's time, committed as the EquipmentActor does."""
    change = alert_store.AlarmChange("opened", equipment_id, rule_id, "warning", clock.now(), "p high", {"v": 1})
    async with services.tenant_tx(tenant) as conn:
        return await alert_store.persist_changes(conn, tenant, [change])


async def _round(services: Any, tenant: str, clock: ManualClock, after: timedelta | float = 0,
                 ) -> list[tuple[str, str]]:
    """Advance the clock by `after`, then run a housekeeping round; returns (kind, rule) of its events."""
    clock.advance(after)
    async with services.tenant_tx(tenant) as conn:
        events = await housekeeping_round(conn, tenant, now=clock.now(), default_escalate_after=ESCALATE_AFTER)
    return [(e["kind"], e["rule_id"]) for e in events]


async def _alert(services: Any, tenant: str, alert_id: int) -> Any:
    async with services.tenant_tx(tenant) as conn:
        return await alert_store.get_alert(conn, tenant, alert_id)


@pytest.fixture
async def tenant(services: Any) -> str:
    return await seeded_tenant(services.settings.database_url, "ops", [("MTR-1", "meter"), ("MTR-2", "meter")])


@pytest.fixture
def clock() -> ManualClock:
    # A little in the past: an alert opening "now" is checked against silences by the database's own time.
    return ManualClock(now_utc() - timedelta(minutes=1))


async def test_acknowledge_then_resolve_with_a_verdict(services: Any, tenant: str, clock: ManualClock) -> None:
    (opened,) = await _opened(services, tenant, clock)
    alert_id = opened["alert_id"]
    async with services.tenant_tx(tenant) as conn:
        alert, events = await alert_store.acknowledge_alert(conn, tenant, alert_id, actor="ops", comment="on it",
                                                            now=clock.advance(60))
    assert alert["state"] == "acknowledged" and [e["kind"] for e in events] == ["acknowledged"]
    async with services.tenant_tx(tenant) as conn:  # again: nothing changes
        assert (await alert_store.acknowledge_alert(conn, tenant, alert_id, actor="ops", comment=None,
                                                    now=clock.now()))[1] == []
        alert, events = await alert_store.resolve_alert(conn, tenant, alert_id, actor="ops", comment="fixed",
                                                        now=clock.advance(60), verdict="real")
    assert alert["state"] == "resolved" and [e["kind"] for e in events] == ["resolved"]
    async with services.tenant_tx(tenant) as conn:
        with pytest.raises(Conflict):
            await alert_store.resolve_alert(conn, tenant, alert_id, actor="ops", comment=None, now=clock.now(),
                                            verdict="false_alarm")
    async with services.tenant_tx(tenant) as conn:
        with pytest.raises(Conflict):
            await alert_store.acknowledge_alert(conn, tenant, alert_id, actor="ops", comment=None, now=clock.now())
        assert await alert_store.acknowledge_alert(conn, tenant, 999_999_999, actor="ops", comment=None,
                                                   now=clock.now()) == (None, [])
        # Another tenant's alert is not found (row-level security and the tenant filter).
    other = new_tenant_id("ops-b")
    await seed_tenant(services.settings.database_url, other, [])
    async with services.tenant_tx(other) as conn:
        assert await alert_store.get_alert(conn, other, alert_id) is None


async def test_escalation_after_the_delay_once_and_never_when_acknowledged(services: Any, tenant: str,
                                                                            clock: ManualClock) -> None:
    (quiet,) = await _opened(services, tenant, clock, "r-quiet")
    (acked,) = await _opened(services, tenant, clock, "r-acked")
    async with services.tenant_tx(tenant) as conn:
        await alert_store.acknowledge_alert(conn, tenant, acked["alert_id"], actor="ops", comment=None,
                                            now=clock.now())
    clock.advance(timedelta(minutes=14))
    assert await _round(services, tenant, clock) == []  # not overdue yet
    clock.advance(timedelta(minutes=2))
    assert await _round(services, tenant, clock) == [("escalated", "r-quiet")]
    assert (await _alert(services, tenant, quiet["alert_id"]))["severity"] == "critical"
    clock.advance(timedelta(hours=1))
    assert await _round(services, tenant, clock) == []  # once
    assert (await _alert(services, tenant, acked["alert_id"]))["escalated_at"] is None


async def test_the_tenants_own_escalation_delay(services: Any, tenant: str, clock: ManualClock) -> None:
    conn = await asyncpg.connect(services.settings.database_url)  # the owner: the app role may not write tenants
    try:
        await conn.execute("UPDATE tenants SET settings = jsonb_build_object('escalate_after_minutes', 2)"
                           " WHERE id = $1", tenant)
    finally:
        await conn.close()
    await _opened(services, tenant, clock)
    assert await _round(services, tenant, clock, timedelta(minutes=1)) == []
    assert await _round(services, tenant, clock, timedelta(minutes=2)) == [("escalated", "r1")]


async def test_a_shelve_ends_by_the_clock(services: Any, tenant: str, clock: ManualClock) -> None:
    (opened,) = await _opened(services, tenant, clock)
    alert_id = opened["alert_id"]
    async with services.tenant_tx(tenant) as conn:
        with pytest.raises(InvalidInput):
            await alert_store.shelve_alert(conn, tenant, alert_id, minutes=9 * 60, reason="x", actor="ops",
                                           now=clock.now())
    async with services.tenant_tx(tenant) as conn:
        alert, events = await alert_store.shelve_alert(conn, tenant, alert_id, minutes=30, reason="known issue",
                                                       actor="ops", now=clock.now())
    assert alert["state"] == "shelved" and [e["kind"] for e in events] == ["shelved"]
    clock.advance(timedelta(minutes=29))
    assert await _round(services, tenant, clock) == []  # shelved alerts do not escalate either
    clock.advance(timedelta(minutes=1))
    assert await _round(services, tenant, clock) == [("unshelved", "r1")]
    alert = await _alert(services, tenant, alert_id)
    assert alert["state"] == "open" and alert["acknowledged_at"] is None
    async with services.tenant_tx(tenant) as conn:
        with pytest.raises(Conflict):
            await alert_store.unshelve_alert(conn, tenant, alert_id, actor="ops", now=clock.now())


async def test_unshelve_by_hand(services: Any, tenant: str, clock: ManualClock) -> None:
    (opened,) = await _opened(services, tenant, clock)
    async with services.tenant_tx(tenant) as conn:
        await alert_store.shelve_alert(conn, tenant, opened["alert_id"], minutes=30, reason="x", actor="ops",
                                       now=clock.now())
        alert, events = await alert_store.unshelve_alert(conn, tenant, opened["alert_id"], actor="ops",
                                                         now=clock.advance(60))
    assert alert["state"] == "open" and [e["kind"] for e in events] == ["unshelved"]


async def test_a_silence_holds_an_alert_back_until_it_ends_then_it_escalates(services: Any, tenant: str,
                                                                           clock: ManualClock) -> None:
    async with services.tenant_tx(tenant) as conn:
        silence = await alert_store.insert_silence(
            conn, tenant, equipment_id="MTR-1", rule_id=None, starts_at=clock.now() - timedelta(minutes=1),
            ends_at=clock.now() + timedelta(minutes=30), reason="workover", created_by="ops")
    assert silence["state"] == "active"
    assert await _opened(services, tenant, clock) == []  # held back: no alert, no event
    assert [e["kind"] for e in await _opened(services, tenant, clock, equipment_id="MTR-2")] == ["opened"]
    clock.advance(timedelta(minutes=20))
    assert await _round(services, tenant, clock) == [("escalated", "r1")]  # MTR-2's; MTR-1's is still held
    clock.advance(timedelta(minutes=11))
    assert await _round(services, tenant, clock) == [("opened", "r1")]  # the silence is over: it opens now
    async with services.tenant_tx(tenant) as conn:
        held = await conn.fetchval("SELECT count(*) FROM suppressed_alerts WHERE tenant_id = $1", tenant)
        opened_at = await conn.fetchval("SELECT opened_at FROM alerts WHERE tenant_id = $1 AND equipment_id = 'MTR-1'",
                                        tenant)
    assert held == 0 and opened_at == clock.now()
    assert await _round(services, tenant, clock, timedelta(minutes=14)) == []  # its delay starts now
    assert await _round(services, tenant, clock, timedelta(minutes=2)) == [("escalated", "r1")]


async def test_a_cancelled_silence_and_its_states(services: Any, tenant: str, clock: ManualClock) -> None:
    async with services.tenant_tx(tenant) as conn:
        later = await alert_store.insert_silence(
            conn, tenant, equipment_id=None, rule_id="r1", starts_at=clock.now() + timedelta(hours=1),
            ends_at=clock.now() + timedelta(hours=2), reason="planned", created_by="ops")
        now = await alert_store.insert_silence(
            conn, tenant, equipment_id=None, rule_id="r1", starts_at=clock.now(),
            ends_at=clock.now() + timedelta(hours=2), reason="now", created_by="ops")
    assert (later["state"], now["state"]) == ("scheduled", "active")
    assert await _opened(services, tenant, clock) == []
    async with services.tenant_tx(tenant) as conn:
        cancelled = await alert_store.cancel_silence(conn, tenant, now["id"], actor="ops")
        assert cancelled["state"] == "cancelled" and cancelled["cancelled_by"] == "ops"
        assert await alert_store.cancel_silence(conn, tenant, now["id"], actor="ops") is None  # already over
        assert await alert_store.get_silence(conn, tenant, uuid.uuid4()) is None
    # The next round (or the reload the API's ctl message starts) opens what the silence held.
    assert await _round(services, tenant, clock, 5) == [("opened", "r1")]


async def test_the_hub_sends_each_committed_event_to_the_clients_that_want_it(services: Any, tenant: str,
                                                                            clock: ManualClock) -> None:
    """serve.hub as the WebSocket route uses it: woken by ALERTS messages, it reads the events by seq."""
    everything, _ = await services.hub.register(tenant, equipment=None, min_severity=0, principal="a")
    critical_only, _ = await services.hub.register(tenant, equipment=None, min_severity=SEVERITY_RANK["critical"],
                                                   principal="b")
    other_equipment, _ = await services.hub.register(tenant, equipment=frozenset({"MTR-2"}), min_severity=0,
                                                     principal="c")
    try:
        await publish_alert_events(services.js, tenant, await _opened(services, tenant, clock))
        clock.advance(timedelta(minutes=16))
        async with services.tenant_tx(tenant) as conn:
            escalated = await housekeeping_round(conn, tenant, now=clock.now(), default_escalate_after=ESCALATE_AFTER)
        await publish_alert_events(services.js, tenant, escalated)
        got = [await asyncio.wait_for(everything.queue.get(), timeout=10) for _ in range(2)]
        assert [(e.kind, e.severity) for e in got] == [("opened", "warning"), ("escalated", "critical")]
        assert (await asyncio.wait_for(critical_only.queue.get(), timeout=10)).kind == "escalated"
        assert critical_only.queue.empty() and other_equipment.queue.empty()
    finally:
        for client in (everything, critical_only, other_equipment):
            await services.hub.unregister(client)
