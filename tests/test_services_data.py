"""The data services (readings, telemetry ingest, production, field events, rules) called as their routes call
them, against PostgreSQL and NATS alone (fast tier): no Ray, no Serve.

Each happy path checks the answer, the rows it leaves and what the outside hears after the commit (the
``ctl.<tenant>`` nudge the actors would get, the ``tele``/``field``/``alerts`` messages), read off NATS as they
arrive. Each refusal is the typed `schema.errors` class and leaves the rows, the audit log and NATS as they were.
"No message" is checked after a later change's message has arrived: one connection's messages arrive in order.
"""

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from schema.errors import Conflict, EventIdReused, IdempotencyKeyReused, InvalidInput, NotFound
from schema.field_events import ParsedEvent, parse_event
from schema.production import ProductionCreate, parse_production_csv
from schema.rules import AnomalyRuleCreate, RuleUpdate, ThresholdParams, ThresholdRuleCreate
from schema.telemetry import parse_telemetry
from serve import field_events, production, readings, rules, telemetry
from serve.auth import Principal, Role
from store import production as production_store
from store import readings as store_readings
from store.audit import AuditContext
from store.bus import TELEMETRY_STREAM
from store.listing import ListQuery, parse_list_query
from tests.helpers import seeded_tenant, wait_for

pytestmark = pytest.mark.fast


@pytest.fixture
async def tenant(services: Any) -> str:
    return await seeded_tenant(services.settings.database_url, "data",
                               [("PJ-1", "pump_jack"), ("PJ-2", "pump_jack")], users=False)


@pytest.fixture
def audit(tenant: str) -> AuditContext:
    return AuditContext(tenant, "user", str(uuid.uuid4()), "127.0.0.1", "req-1")


@pytest.fixture
def principal(tenant: str, audit: AuditContext) -> Principal:
    return Principal(tenant, audit.actor_id, role=Role.OPERATOR, email=f"op@{tenant}.example")


@pytest.fixture
async def heard(services: Any, tenant: str) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
    """(subject, body) of every message about the tenant, as it arrives: ctl, tele, field, alerts."""
    received: list[tuple[str, dict[str, Any]]] = []

    async def on_message(msg: Any) -> None:
        received.append((msg.subject, json.loads(msg.data)))

    subs = [await services.nc.subscribe(subject, cb=on_message)
            for subject in (f"ctl.{tenant}", f"tele.{tenant}.>", f"field.{tenant}.>", f"alerts.{tenant}.>")]
    await services.nc.flush()
    try:
        yield received
    finally:
        for sub in subs:
            await sub.unsubscribe()


async def _heard(heard: list[tuple[str, dict[str, Any]]], subject: str, count: int = 1,
                 ) -> list[dict[str, Any]]:
    """The first ``count`` bodies heard on ``subject`` (waits for them)."""
    async def enough() -> list[dict[str, Any]] | None:
        bodies = [b for s, b in heard if s == subject]
        return bodies[:count] if len(bodies) >= count else None

    return await wait_for(enough, timeout=10, interval=0.02)


async def _owner(services: Any) -> asyncpg.Connection:
    """The database's owner (no row-level security): to seed rows and read what a service left."""
    return await asyncpg.connect(services.settings.database_url)


async def _fetch(services: Any, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await _owner(services)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def _audited(services: Any, tenant: str, entity_type: str) -> list[tuple[str, str | None]]:
    return [(r["action"], r["entity_id"]) for r in await _fetch(
        services, "SELECT action, entity_id FROM audit_log WHERE tenant_id = $1 AND entity_type = $2 ORDER BY id",
        tenant, entity_type)]


# ---------------------------------------------------------------------- serve.readings


@pytest.fixture
async def series_start(services: Any, tenant: str) -> datetime:
    """90 minutes of PJ-1 readings from a whole hour three hours ago: tubing_psi = i, casing_psi = 100 + i."""
    now = datetime.now(UTC)
    t0 = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    rows = [(tenant, "PJ-1", sensor, t0 + timedelta(minutes=i), base + i)
            for i in range(90) for sensor, base in (("tubing_psi", 0.0), ("casing_psi", 100.0))]
    conn = await _owner(services)
    try:
        async with conn.transaction():  # as the ingest writer stores them: the latest values kept with them
            await conn.copy_records_to_table("readings", records=rows, columns=store_readings.READING_COLUMNS)
            await store_readings.keep_latest(conn, rows)
    finally:
        await conn.close()
    return t0


async def test_raw_series_pages_by_cursor(services: Any, tenant: str, series_start: datetime) -> None:
    t0 = series_start
    first = await readings.series(services, tenant, "PJ-1", sensors=None, start=t0, end=t0 + timedelta(minutes=10),
                                  bucket=None, after=None, limit=3)
    assert [(r["ts"], r["sensor"], r["value"]) for r in first] == [
        (t0, "casing_psi", 100.0), (t0, "tubing_psi", 0.0), (t0 + timedelta(minutes=1), "casing_psi", 101.0)]
    rest = await readings.series(services, tenant, "PJ-1", sensors=["tubing_psi"], start=t0,
                                 end=t0 + timedelta(minutes=10), bucket=None,
                                 after=(first[-1]["ts"], first[-1]["sensor"]), limit=100)
    assert [r["value"] for r in rest] == [float(i) for i in range(1, 10)]  # [start, end): minute 10 is out
    with pytest.raises(NotFound):
        await readings.series(services, tenant, "PJ-404", sensors=None, start=t0, end=t0 + timedelta(hours=1),
                              bucket=None, after=None, limit=10)


async def test_bucketed_series_widen_to_whole_buckets(services: Any, tenant: str, series_start: datetime) -> None:
    t0 = series_start
    half_hours = await readings.series(services, tenant, "PJ-1", sensors=["tubing_psi"],
                                       start=t0 + timedelta(minutes=5), end=t0 + timedelta(hours=1),
                                       bucket=timedelta(minutes=30), after=None, limit=100)
    # [t0 + 5 min, t0 + 1 h) widens to [t0, t0 + 1 h): an end on a bucket edge adds no bucket.
    assert [(r["bucket"], r["avg"], r["min"], r["max"], r["last"], r["count"]) for r in half_hours] == [
        (t0, 14.5, 0.0, 29.0, 29.0, 30), (t0 + timedelta(minutes=30), 44.5, 30.0, 59.0, 59.0, 30)]
    # Whole hours come from the hourly rollup on plain PostgreSQL, which this read fills.
    hours = await readings.series(services, tenant, "PJ-1", sensors=None, start=t0, end=t0 + timedelta(minutes=90),
                                  bucket=timedelta(hours=1), after=None, limit=100)
    assert [(r["bucket"], r["sensor"], r["avg"], r["count"]) for r in hours] == [
        (t0, "casing_psi", 129.5, 60), (t0, "tubing_psi", 29.5, 60),
        (t0 + timedelta(hours=1), "casing_psi", 174.5, 30), (t0 + timedelta(hours=1), "tubing_psi", 74.5, 30)]
    if services.flavour != "timescaledb":
        rolled = await _fetch(services, "SELECT bucket, sum, count FROM readings_hourly WHERE tenant_id = $1"
                              " AND sensor = 'tubing_psi' ORDER BY bucket", tenant)
        assert [(r["bucket"], r["sum"], r["count"]) for r in rolled] == [
            (t0, float(sum(range(60))), 60), (t0 + timedelta(hours=1), float(sum(range(60, 90))), 30)]


async def test_latest_values_and_the_csv_export(services: Any, tenant: str, series_start: datetime) -> None:
    t0, last = series_start, series_start + timedelta(minutes=89)
    latest = await readings.latest_values(services, tenant, ["PJ-1", "PJ-2", "PJ-404"], sensors=None)
    assert latest == {"PJ-1": [{"sensor": "casing_psi", "ts": last, "value": 189.0},
                               {"sensor": "tubing_psi", "ts": last, "value": 89.0}],
                      "PJ-2": []}  # unknown ids are absent; known ones without readings are empty
    assert await readings.latest_values(services, tenant, ["PJ-1"], sensors=["tubing_psi"]) == {
        "PJ-1": [{"sensor": "tubing_psi", "ts": last, "value": 89.0}]}
    chunks = await readings.export_csv(services, tenant, "PJ-1", sensors=["casing_psi"], start=t0,
                                       end=t0 + timedelta(minutes=2))
    text = "".join([c async for c in chunks])
    assert text.splitlines() == ["ts,sensor,value", f"{t0.isoformat()},casing_psi,100.0",
                                 f"{(t0 + timedelta(minutes=1)).isoformat()},casing_psi,101.0"]
    with pytest.raises(NotFound):  # before the response starts
        await readings.export_csv(services, tenant, "PJ-404", sensors=None, start=t0, end=last)
    other = await seeded_tenant(services.settings.database_url, "data-b", [], users=False)
    with pytest.raises(NotFound):  # another tenant's equipment is unknown
        await readings.series(services, other, "PJ-1", sensors=None, start=t0, end=last, bucket=None, after=None,
                              limit=10)
    assert await readings.latest_values(services, other, ["PJ-1"], sensors=None) == {}


# ---------------------------------------------------------------------- serve.telemetry


def _telemetry(values: dict[str, float]) -> bytes:
    ts = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    return json.dumps({"readings": [{"equipment_id": "PJ-1", "ts": ts, "values": values},
                                    {"equipment_id": "PJ-2", "ts": ts, "values": {"tubing_psi": 7.0}},
                                    {"equipment_id": "PJ-1", "ts": ts, "values": {"rpm": 9.0}}]}).encode()


async def _stored(services: Any, tenant: str) -> int:
    """How many messages the TELEMETRY stream holds for the tenant (after JetStream's dedup)."""
    info = await services.js.stream_info(TELEMETRY_STREAM, subjects_filter=f"tele.{tenant}.>")
    return sum((info.state.subjects or {}).values())


async def test_ingest_publishes_once_per_key(services: Any, tenant: str, heard: list) -> None:
    body = _telemetry({"tubing_psi": 812.0, "casing_psi": 95.0})
    batch = parse_telemetry(body)
    answer, replayed = await telemetry.ingest(services, tenant, batch, body=body, idempotency_key="batch-1")
    assert not replayed and (answer.messages, answer.readings, answer.equipment) == (2, 4, ["PJ-1", "PJ-2"])
    (pj1,) = await _heard(heard, f"tele.{tenant}.PJ-1")
    assert [r["values"] for r in pj1["readings"]] == [{"tubing_psi": 812.0, "casing_psi": 95.0}, {"rpm": 9.0}]
    assert (await _heard(heard, f"tele.{tenant}.PJ-2"))[0]["readings"][0]["values"] == {"tubing_psi": 7.0}

    again, replayed = await telemetry.ingest(services, tenant, batch, body=body, idempotency_key="batch-1")
    assert replayed and again.idempotent_replay and again.readings == 4
    other = _telemetry({"tubing_psi": 1.0})
    with pytest.raises(IdempotencyKeyReused):
        await telemetry.ingest(services, tenant, parse_telemetry(other), body=other, idempotency_key="batch-1")
    assert (await telemetry.ingest(services, tenant, batch, body=body, idempotency_key="batch-1"))[1]  # kept
    # Without a key, the body names the messages: the same body twice is stored once (JetStream's dedup).
    for _ in range(2):
        await telemetry.ingest(services, tenant, parse_telemetry(other), body=other, idempotency_key=None)
    await _heard(heard, f"tele.{tenant}.PJ-1", 3)
    assert len([s for s, _ in heard if s.startswith("tele.")]) == 6  # the replay and the refusal sent nothing
    assert await _stored(services, tenant) == 4


async def test_two_tenants_sending_the_same_body_without_a_key_both_keep_their_messages(services: Any,
                                                                                          tenant: str) -> None:
    # JetStream's dedup spans the stream all tenants share: a body-named id must name its tenant too.
    neighbour = f"{tenant}-n"
    body = _telemetry({"tubing_psi": 3.0})
    for who in (tenant, neighbour):
        await telemetry.ingest(services, who, parse_telemetry(body), body=body, idempotency_key=None)
    assert (await _stored(services, tenant), await _stored(services, neighbour)) == (2, 2)


# ---------------------------------------------------------------------- serve.production


@pytest.fixture
async def wells(services: Any, tenant: str) -> list[str]:
    conn = await _owner(services)
    try:
        await conn.executemany("INSERT INTO wells (tenant_id, id, api_number, name) VALUES ($1, $2, $3, $2)",
                               [(tenant, "W-1", "4250120130"), (tenant, "W-2", "4250120131")])
    finally:
        await conn.close()
    return ["W-1", "W-2"]


async def _records(services: Any, tenant: str) -> list[tuple[str, date, float, int, bool]]:
    return [(r["well_id"], r["day"], r["oil_bbl"], r["version"], r["deleted_at"] is not None) for r in await _fetch(
        services, "SELECT well_id, day, oil_bbl, version, deleted_at FROM production_records WHERE tenant_id = $1"
        " ORDER BY well_id, day, created_at", tenant)]


async def test_production_records_are_stored_all_or_nothing(services: Any, tenant: str, audit: AuditContext,
                                                            wells: list[str]) -> None:
    day = date.today() - timedelta(days=3)  # the tenant's zone is UTC; "today" is the database's
    single = await production.create_records(services, audit, [ProductionCreate(well_id="W-1", day=day, oil_bbl=40)],
                                             source="api", label=production_store.single_label)
    assert single[0]["oil_bbl"] == 40.0 and single[0]["version"] == 1 and single[0]["created_by"] == audit.actor_id
    batch = [ProductionCreate(well_id="W-2", day=day, oil_bbl=10), ProductionCreate(well_id="W-1", day=day
                                                                                    - timedelta(days=1), oil_bbl=5)]
    rows = await production.create_records(services, audit, batch, source="api", label=production_store.batch_label)
    assert [(r["well_id"], r["day"]) for r in rows] == [("W-2", day), ("W-1", day - timedelta(days=1))]
    csv_text = f"well_id,day,oil_bbl\nW-2,{day - timedelta(days=1)},3.5\n"
    imported = await production.create_records(services, audit, [r for _, r in parse_production_csv(csv_text)],
                                               source="import", label=production_store.batch_label)
    assert imported[0]["source"] == "import"
    audited = await _audited(services, tenant, "production_record")
    assert audited == [("create", str(single[0]["id"])), ("batch_create", None), ("import", None)]
    before = await _records(services, tenant)
    assert len(before) == 4

    refusals = [
        ([ProductionCreate(well_id="W-1", day=date.today() + timedelta(days=2))], InvalidInput, "records.0.day"),
        ([ProductionCreate(well_id="W-404", day=day)], InvalidInput, "records.0.well_id"),
        ([ProductionCreate(well_id="W-2", day=day - timedelta(days=9)),
          ProductionCreate(well_id="W-2", day=day - timedelta(days=9))], InvalidInput, "records.1.day"),
        # A good record with one that duplicates a stored day: neither is stored.
        ([ProductionCreate(well_id="W-2", day=day - timedelta(days=8)), ProductionCreate(well_id="W-1", day=day)],
         Conflict, "records.1.day"),
    ]
    for records, error, field in refusals:
        with pytest.raises(error) as refused:
            await production.create_records(services, audit, records, source="api",
                                            label=production_store.batch_label)
        assert type(refused.value) is error and refused.value.details[0]["field"] == field
    assert await _records(services, tenant) == before
    assert await _audited(services, tenant, "production_record") == audited


async def test_production_update_delete_and_reports(services: Any, tenant: str, audit: AuditContext,
                                                    wells: list[str]) -> None:
    day = date.today() - timedelta(days=3)
    one, two = await production.create_records(
        services, audit, [ProductionCreate(well_id="W-1", day=day, oil_bbl=40, notes="ok"),
                          ProductionCreate(well_id="W-1", day=day - timedelta(days=1), oil_bbl=20)],
        source="api", label=production_store.batch_label)
    updated = await production.update_record(services, audit, one["id"], {"oil_bbl": 42.0, "notes": None}, 1)
    assert (updated["oil_bbl"], updated["notes"], updated["version"]) == (42.0, None, 2)
    same = await production.update_record(services, audit, one["id"], {"oil_bbl": 42.0}, None)
    assert same["version"] == 2  # nothing changed: no new version, no audit row
    refusals = [
        ({"oil_bbl": 1.0}, 1, Conflict, "version"),  # a stale version
        ({"oil_bbl": None}, None, InvalidInput, "oil_bbl"),
        ({"day": day - timedelta(days=1)}, None, Conflict, "day"),  # the other record's day
        ({"well_id": "W-404"}, None, InvalidInput, "well_id"),
    ]
    for changes, version, error, field in refusals:
        with pytest.raises(error) as refused:
            await production.update_record(services, audit, one["id"], changes, version)
        assert refused.value.details[0]["field"] == field
    with pytest.raises(NotFound):
        await production.update_record(services, audit, uuid.uuid4(), {"oil_bbl": 1.0}, None)
    assert (await production.get_record(services, tenant, one["id"]))["oil_bbl"] == 42.0
    assert [a for a, _ in await _audited(services, tenant, "production_record")] == ["batch_create", "update"]

    summary = await production.summary(services, tenant, period="day", start=day - timedelta(days=1), end=day,
                                       well_id="W-1")
    assert [(r["period_start"], r["oil_bbl"], r["records"]) for r in summary] == [
        (day - timedelta(days=1), 20.0, 1), (day, 42.0, 1)]
    with pytest.raises(InvalidInput):
        await production.summary(services, tenant, period="day", start=day, end=day - timedelta(days=1),
                                 well_id=None)
    with pytest.raises(NotFound):
        await production.summary(services, tenant, period="day", start=None, end=None, well_id="W-404")
    newest_first = parse_list_query(production_store.PRODUCTION, {})  # the route's default sort: -day
    page, total = await production.list_records(services, tenant, newest_first, well_id="W-1")
    assert total == 2 and [r["day"] for r in page] == [day, day - timedelta(days=1)]
    with pytest.raises(NotFound):
        await production.list_records(services, tenant, ListQuery(), well_id="W-404")
    exported = "".join([c async for c in await production.export_csv(services, tenant, well_id="W-1", start=day,
                                                                     end=None)]).splitlines()
    assert len(exported) == 2 and exported[1].startswith(f"{one['id']},W-1,{day},42.0,")
    with pytest.raises(NotFound):
        await production.export_csv(services, tenant, well_id="W-404", start=None, end=None)

    await production.delete_record(services, audit, two["id"])
    with pytest.raises(NotFound):
        await production.get_record(services, tenant, two["id"])
    with pytest.raises(NotFound):
        await production.delete_record(services, audit, two["id"])
    # Soft deleted: the well and day may be recorded again.
    await production.create_records(services, audit, [ProductionCreate(well_id="W-1", day=two["day"], oil_bbl=21)],
                                    source="api", label=production_store.single_label)
    assert [(d, oil, deleted) for w, d, oil, _, deleted in await _records(services, tenant)] == [
        (two["day"], 20.0, True), (two["day"], 21.0, False), (day, 42.0, False)]
    assert [a for a, _ in await _audited(services, tenant, "production_record")] == [
        "batch_create", "update", "delete", "create"]


# ---------------------------------------------------------------------- serve.field_events


def _event(event_type: str, data: dict[str, Any], *, equipment_id: str = "PJ-1",
           event_id: str | None = None) -> ParsedEvent:
    event, errors = parse_event({"event_id": event_id or str(uuid.uuid4()), "type": event_type,
                                 "equipment_id": equipment_id,
                                 "occurred_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
                                 "data": data})
    assert event is not None, errors
    return event


async def _equipment_status(services: Any, tenant: str) -> str:
    (row,) = await _fetch(services, "SELECT status FROM equipment WHERE tenant_id = $1 AND id = 'PJ-1'", tenant)
    return row["status"]


async def _field_state(services: Any, tenant: str) -> tuple[Any, ...]:
    """Every row a field event may leave, to check that a refused one left none."""
    counts = []
    for table in ("field_events", "maintenance_records", "alerts", "audit_log"):
        (row,) = await _fetch(services, f"SELECT count(*) AS n FROM {table} WHERE tenant_id = $1", tenant)
        counts.append(row["n"])
    return (*counts, await _equipment_status(services, tenant))


async def test_a_maintenance_job_started_and_finished(services: Any, tenant: str, principal: Principal,
                                                     audit: AuditContext, heard: list) -> None:
    job = str(uuid.uuid4())
    started = _event("maintenance_started", {"maintenance_id": job, "kind": "corrective", "description": "rods"})
    stored = await field_events.append_event(services, principal, audit, started)
    assert (str(stored.record_id), stored.version, stored.effects, stored.duplicate) == (
        job, 1, ["maintenance_started"], False)
    (told,) = await _heard(heard, f"ctl.{tenant}")
    assert told == {"reload": "registry+silences"}  # the equipment went into maintenance
    (message,) = await _heard(heard, f"field.{tenant}.PJ-1")
    assert [(e["event_id"], e["type"], e["effects"]) for e in message["events"]] == [
        (started.event_id, "maintenance_started", ["maintenance_started"])]
    assert await _equipment_status(services, tenant) == "maintenance"
    (record,) = await _fetch(services, "SELECT id, kind, ended_at FROM maintenance_records WHERE tenant_id = $1",
                             tenant)
    assert (str(record["id"]), record["kind"], record["ended_at"]) == (job, "corrective", None)
    assert await _audited(services, tenant, "sync_chunk") == [("sync", f"user:{audit.actor_id}")]

    again = await field_events.append_event(services, principal, audit, started)  # a retry: answered as first
    assert again.duplicate and again.record_id == stored.record_id and again.effects == stored.effects
    before = await _field_state(services, tenant)
    reused = _event("maintenance_started", {"maintenance_id": job, "description": "other"},
                    event_id=started.event_id)
    with pytest.raises(EventIdReused):
        await field_events.append_event(services, principal, audit, reused)
    with pytest.raises(NotFound):
        await field_events.append_event(services, principal, audit, _event("failure_reported", {},
                                                                           equipment_id="PJ-404"))
    with pytest.raises(InvalidInput):  # the job is PJ-1's, not PJ-2's
        await field_events.append_event(services, principal, audit, _event(
            "maintenance_finished", {"maintenance_id": job}, equipment_id="PJ-2"))
    assert await _field_state(services, tenant) == before

    finished = await field_events.append_event(services, principal, audit,
                                               _event("maintenance_finished", {"maintenance_id": job}))
    assert (str(finished.record_id), finished.version, finished.effects) == (job, 2, ["maintenance_finished"])
    assert await _equipment_status(services, tenant) == "operational"
    told = await _heard(heard, f"ctl.{tenant}", 2)
    assert told[1] == {"reload": "registry+silences"}
    assert len([s for s, _ in heard if s == f"ctl.{tenant}"]) == 2  # nothing for the retry or the refusals
    assert len(await _heard(heard, f"field.{tenant}.PJ-1", 2)) == 2


async def test_a_failure_and_an_inspection_finding(services: Any, tenant: str, principal: Principal,
                                                   audit: AuditContext, heard: list) -> None:
    failure = _event("failure_reported", {"description": "rod parted", "failure_mode": "rod_part"})
    stored = await field_events.append_event(services, principal, audit, failure)
    assert (stored.outcome, stored.effects, stored.record_id) == ("recorded", ["failure_reported"], None)
    (told,) = await _heard(heard, f"ctl.{tenant}")  # a label for the failure model
    assert told == {"reload": "failure", "equipment_id": "PJ-1", "failed_at": failure.occurred_at.isoformat()}

    finding = _event("inspection_finding", {"severity": "critical", "description": "stuffing box leak"})
    stored = await field_events.append_event(services, principal, audit, finding)
    assert stored.effects == ["inspection_finding"]
    (alert,) = await _fetch(services, "SELECT rule_id, severity, state FROM alerts WHERE tenant_id = $1"
                            " AND equipment_id = 'PJ-1'", tenant)
    assert (alert["rule_id"], alert["severity"], alert["state"]) == ("inspection", "critical", "open")
    (opened,) = await _heard(heard, f"alerts.{tenant}.PJ-1")
    assert (opened["kind"], opened["rule_id"], opened["severity"]) == ("opened", "inspection", "critical")
    assert [m["events"][0]["type"] for m in await _heard(heard, f"field.{tenant}.PJ-1", 2)] == [
        "failure_reported", "inspection_finding"]
    assert [e["event_id"] for e in await _fetch(
        services, "SELECT event_id::text FROM field_events WHERE tenant_id = $1 ORDER BY received_at", tenant)] == [
        failure.event_id, finding.event_id]


# ---------------------------------------------------------------------- serve.rules


def _threshold(**changes: Any) -> ThresholdRuleCreate:
    fields: dict[str, Any] = {"id": "tubing-high", "kind": "threshold", "severity": "critical",
                              "equipment_id": "PJ-1", "params": ThresholdParams(sensor="tubing_psi", high=1100)}
    return ThresholdRuleCreate(**{**fields, **changes})


async def _rule_rows(services: Any, tenant: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await _fetch(
        services, "SELECT id, severity, equipment_id, params, deleted_at IS NOT NULL FROM alert_rules"
        " WHERE tenant_id = $1 ORDER BY id", tenant)]


async def test_rules_created_updated_deleted_and_told(services: Any, tenant: str, principal: Principal,
                                                      audit: AuditContext, heard: list) -> None:
    ctl = f"ctl.{tenant}"
    created = await rules.create_rule(services, principal, audit, _threshold())
    assert (created["id"], created["severity"], created["params"]) == (
        "tubing-high", "critical", {"sensor": "tubing_psi", "high": 1100.0})
    assert created["created_by"] == principal.actor and created["name"] == "tubing-high"
    assert await _heard(heard, ctl) == [{"reload": "rules"}]
    generated = await rules.create_rule(services, principal, audit, AnomalyRuleCreate(kind="anomaly"))
    assert generated["id"].startswith("rule-") and generated["params"] == {}

    before = await _rule_rows(services, tenant)
    refusals = [
        (_threshold(), Conflict, "id"),
        (_threshold(id="low-high", params=ThresholdParams(sensor="tubing_psi", high=10, low=20)), InvalidInput,
         "params"),
        (_threshold(id="both", equipment_type="pump_jack"), InvalidInput, "equipment_type"),
        (_threshold(id="nowhere", equipment_id="PJ-404"), InvalidInput, "equipment_id"),
    ]
    for body, error, field in refusals:
        with pytest.raises(error) as refused:
            await rules.create_rule(services, principal, audit, body)
        assert refused.value.details[0]["field"].startswith(field)
    for update, error in [(RuleUpdate(params={"high": "much"}), InvalidInput),
                          (RuleUpdate(params={"low": 2000}), InvalidInput),  # low above high
                          (RuleUpdate(equipment_id="PJ-404"), InvalidInput)]:
        with pytest.raises(error):
            await rules.update_rule(services, principal, audit, "tubing-high", update)
    with pytest.raises(NotFound):
        await rules.update_rule(services, principal, audit, "no-such-rule", RuleUpdate(enabled=False))
    with pytest.raises(NotFound):
        await rules.delete_rule(services, principal, audit, "no-such-rule")
    assert await _rule_rows(services, tenant) == before

    updated = await rules.update_rule(services, principal, audit, "tubing-high", RuleUpdate(
        severity="warning", equipment_type="pump_jack", params={"high": 1150, "hysteresis": 20}))
    assert (updated["severity"], updated["equipment_id"], updated["equipment_type"], updated["params"]) == (
        "warning", None, "pump_jack", {"sensor": "tubing_psi", "high": 1150, "hysteresis": 20})
    cleared = await rules.update_rule(services, principal, audit, "tubing-high",
                                      RuleUpdate(params={"hysteresis": None}))
    assert cleared["params"] == {"sensor": "tubing_psi", "high": 1150}  # a null param is back to its default
    assert (await rules.get_rule(services, tenant, "tubing-high"))["params"] == cleared["params"]
    await rules.delete_rule(services, principal, audit, "tubing-high")
    with pytest.raises(NotFound):
        await rules.get_rule(services, tenant, "tubing-high")
    page, total = await rules.list_rules(services, tenant, ListQuery())
    assert total == 1 and [r["id"] for r in page] == [generated["id"]]
    # Created again after the delete: the id is free.
    assert (await rules.create_rule(services, principal, audit, _threshold()))["params"]["high"] == 1100.0

    assert await _heard(heard, ctl, 6) == [{"reload": "rules"}] * 6  # one per change, none for a refusal
    await services.nc.flush()
    assert len([s for s, _ in heard if s == ctl]) == 6
    assert await _audited(services, tenant, "alert_rule") == [
        ("create", "tubing-high"), ("create", generated["id"]), ("update", "tubing-high"), ("update", "tubing-high"),
        ("delete", "tubing-high"), ("create", "tubing-high")]
