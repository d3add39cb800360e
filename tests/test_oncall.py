"""Per-user preferences and on-call schedules against PostgreSQL alone (fast tier): preferences read with their
defaults, replaced, refused naming the field, and applied by the notifier to the users' in-app notifications; a
schedule refused naming the field (overlapping overrides, unknown members), who is on call across a handoff, an
override and a daylight-saving change. The pure rotation logic has its own unit tests here too.
"""

import uuid
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import ValidationError

from config import ManualClock
from notify.oncall import Override, Rotation, Schedule, ScheduleError
from notify.preferences import Preferences
from schema.errors import InvalidInput, NotFound
from schema.oncall import PreferencesBody, ScheduleCreate, ScheduleUpdate
from serve import oncall as service
from serve.app import build_app
from serve.auth import Principal, Role
from store import db
from store.audit import AuditContext
from tests.helpers import auth, seeded_tenant, user_email
from tests.test_notifications import notifier, open_alert

pytestmark = pytest.mark.fast
CHICAGO = ZoneInfo("America/Chicago")


@pytest.fixture(scope="module")
async def tenant(services: Any) -> str:
    tenant_id = await seeded_tenant(services.settings.database_url, "oncall", [("PJ-1", "pump_jack")])
    async with db.tenant_tx(services.pool, tenant_id) as conn:
        await conn.execute("UPDATE tenants SET settings = settings || '{\"timezone\": \"America/Chicago\"}'"
                           " WHERE id = $1", tenant_id)
    return tenant_id


@pytest.fixture(scope="module")
async def users(services: Any, tenant: str) -> dict[str, uuid.UUID]:
    async with db.tenant_tx(services.pool, tenant) as conn:
        rows = await conn.fetch("SELECT id, role FROM users WHERE tenant_id = $1", tenant)
    return {r["role"]: r["id"] for r in rows}


def as_user(tenant: str, users: dict[str, uuid.UUID], role: str) -> tuple[Principal, AuditContext]:
    principal = Principal(tenant, str(users[role]), role=Role(role), email=user_email(tenant, role))
    return principal, AuditContext(tenant, "user", str(users[role]), "127.0.0.1", "req-1")


# ------------------------------------------------------------------------------------------- preferences


async def test_preferences_default_replace_and_refuse(services: Any, tenant: str,
                                                      users: dict[str, uuid.UUID]) -> None:
    operator, audit = as_user(tenant, users, "operator")
    mine = await service.get_preferences(services, operator)
    assert mine["updated_at"] is None and mine["timezone"] == "America/Chicago"
    assert mine["channels"] == {"info": ["in_app"], "warning": ["in_app", "email"],
                                "critical": ["in_app", "email", "sms"]}
    body = PreferencesBody.model_validate({"channels": {"warning": ["email"]}, "phone": "+15550100123",
                                           "quiet_hours": {"start": "22:00", "end": "06:30"}})
    saved = await service.put_preferences(services, operator, audit, body)
    assert saved["channels"]["warning"] == ["email"] and saved["channels"]["info"] == ["in_app"]
    assert saved["quiet_hours"] == {"start": "22:00", "end": "06:30"} and saved["phone"] == "+15550100123"

    admin, _ = as_user(tenant, users, "admin")
    assert (await service.get_preferences(services, admin, users["operator"]))["phone"] == "+15550100123"
    with pytest.raises(NotFound):
        await service.get_preferences(services, admin, uuid.uuid4())
    for bad, field in (({"channels": {"warning": ["pager"]}}, ("channels", "warning", 0)),
                       ({"channels": {"severe": ["email"]}}, ("channels", "severe", "[key]")),
                       ({"channels": {"info": ["email", "email"]}}, ("channels",)),
                       ({"quiet_hours": {"start": "25:00", "end": "06:00"}}, ("quiet_hours", "start")),
                       ({"phone": "555-0100"}, ("phone",)), ({"colour": "red"}, ("colour",))):
        with pytest.raises(ValidationError) as refused:
            PreferencesBody.model_validate(bad)
        assert refused.value.errors()[0]["loc"] == field, (bad, refused.value.errors())


async def test_the_notifier_keeps_in_app_only_for_users_who_want_it(services: Any, tenant: str,
                                                                    users: dict[str, uuid.UUID]) -> None:
    viewer, audit = as_user(tenant, users, "viewer")
    await service.put_preferences(services, viewer, audit, PreferencesBody.model_validate(
        {"channels": {"warning": ["email"], "critical": ["in_app"]}}))
    clock = ManualClock(datetime.now(UTC))
    warning = await open_alert(services, tenant, "warning", rule="flow_high")
    critical = await open_alert(services, tenant, "critical", rule="motor_trip")
    await notifier(services, tenant, clock).run_round()
    await notifier(services, tenant, clock).run_round()  # a restart plans nothing twice
    async with db.tenant_tx(services.pool, tenant) as conn:
        rows = await conn.fetch("SELECT user_id, event_seq FROM in_app_notifications WHERE tenant_id = $1",
                                tenant)
    got = {(r["user_id"], r["event_seq"]) for r in rows}
    assert (users["viewer"], warning["seq"]) not in got and (users["viewer"], critical["seq"]) in got
    # The operator chose email alone for warnings (the test before): no inbox entry for this one either.
    assert (users["operator"], warning["seq"]) not in got and (users["operator"], critical["seq"]) in got
    assert {(users[role], seq) for role in ("admin", "manager") for seq in (warning["seq"], critical["seq"])} <= got
    assert len(rows) == 6


def test_quiet_hours_hold_all_but_critical_to_the_inbox() -> None:
    prefs = Preferences(channels={"warning": ("email", "sms", "in_app")}, quiet_start=time(22),
                        quiet_end=time(6), phone="+15550100123")
    assert prefs.media("warning", datetime(2026, 3, 8, 21, 59)) == ("email", "sms", "in_app")
    assert prefs.media("warning", datetime(2026, 3, 8, 22, 0)) == ("in_app",)
    assert prefs.media("warning", datetime(2026, 3, 9, 6, 0)) == ("email", "sms", "in_app")
    assert prefs.media("critical", datetime(2026, 3, 9, 3, 0)) == ("in_app", "email", "sms")


# ------------------------------------------------------------------------------------------- rotation logic


def test_a_daily_handoff_stays_at_local_time_across_daylight_saving() -> None:
    rota = Rotation(("ann", "bob", "cy"), "daily", time(8), date(2026, 3, 6))
    schedule = Schedule([rota], [], "America/Chicago")
    # US clocks went forward on 2026-03-08 at 02:00: 08:00 local is 14:00 UTC before, 13:00 UTC after.
    before = schedule.on_call(datetime(2026, 3, 7, 13, 59, tzinfo=UTC))
    assert (before.user, before.until) == ("ann", datetime(2026, 3, 7, 14, 0, tzinfo=UTC))
    assert schedule.on_call(datetime(2026, 3, 7, 14, 0, tzinfo=UTC)).user == "bob"
    across = schedule.on_call(datetime(2026, 3, 8, 12, 59, tzinfo=UTC))
    assert (across.user, across.until) == ("bob", datetime(2026, 3, 8, 13, 0, tzinfo=UTC))  # a 23-hour shift
    assert schedule.on_call(datetime(2026, 3, 8, 13, 0, tzinfo=UTC)).user == "cy"
    # ...and back on 2026-11-01: a 25-hour shift.
    fall = Schedule([Rotation(("ann", "bob"), "daily", time(8), date(2026, 10, 31))], [], "America/Chicago")
    assert fall.on_call(datetime(2026, 10, 31, 13, 0, tzinfo=UTC)).until == datetime(2026, 11, 1, 14, 0, tzinfo=UTC)
    # A handoff at a skipped wall time (02:30 on the night clocks go forward) happens an hour later by the clock.
    skipped = Schedule([Rotation(("ann", "bob"), "daily", time(2, 30), date(2026, 3, 7))], [], "America/Chicago")
    assert skipped.on_call(datetime(2026, 3, 8, 3, 15, tzinfo=CHICAGO)).user == "ann"
    assert skipped.on_call(datetime(2026, 3, 8, 3, 30, tzinfo=CHICAGO)).user == "bob"


def test_weekly_rotation_replacing_rotation_and_overrides() -> None:
    old = Rotation(("ann", "bob"), "weekly", time(9), date(2026, 1, 5))
    new = Rotation(("cy", "dee"), "weekly", time(9), date(2026, 2, 2))
    cover = Override("eve", datetime(2026, 1, 14, 6, tzinfo=UTC), datetime(2026, 1, 15, 6, tzinfo=UTC))
    schedule = Schedule([old, new], [cover], "UTC")
    at = [datetime(2026, 1, d, 10, tzinfo=UTC) for d in (5, 12, 14, 19, 26)] + [datetime(2026, 2, 2, 10, tzinfo=UTC)]
    assert [schedule.on_call(t).user for t in at] == ["ann", "bob", "eve", "ann", "bob", "cy"]
    assert schedule.on_call(datetime(2026, 1, 13, tzinfo=UTC)).until == cover.start
    assert schedule.on_call(datetime(2026, 1, 30, tzinfo=UTC)).until == datetime(2026, 2, 2, 9, tzinfo=UTC)
    gap = schedule.on_call(datetime(2026, 1, 1, tzinfo=UTC))
    assert (gap.user, gap.source, gap.until) == (None, "none", datetime(2026, 1, 5, 9, tzinfo=UTC))
    with pytest.raises(ScheduleError) as refused:
        Schedule([new, old], [], "UTC")
    assert refused.value.field == "rotations[1].start"
    with pytest.raises(ScheduleError) as refused:
        Schedule([old], [cover, Override("ann", cover.end, cover.start)], "UTC")
    assert refused.value.field == "overrides[1].end"


# ------------------------------------------------------------------------------------------- schedules


async def test_schedules_crud_refuse_naming_the_field_and_answer_who_is_on_call(
        services: Any, tenant: str, users: dict[str, uuid.UUID]) -> None:
    manager, audit = as_user(tenant, users, "manager")
    ann, bob = str(users["operator"]), str(users["viewer"])
    doc = {"name": "field crew", "rotations": [
        {"members": [ann, bob], "handoff": "daily", "handoff_time": "08:00", "start": "2026-03-06"}]}
    created = await service.create_schedule(services, manager, audit, ScheduleCreate.model_validate(doc))
    assert created["timezone"] == "America/Chicago"
    sid = created["id"]
    now = await service.on_call(services, tenant, sid, datetime(2026, 3, 8, 13, 0, tzinfo=UTC))
    assert (now["user_id"], now["source"]) == (users["operator"], "rotation")

    overlap = [{"user": ann, "start": "2026-03-09T00:00:00Z", "end": "2026-03-10T00:00:00Z"},
               {"user": bob, "start": "2026-03-09T12:00:00Z", "end": "2026-03-11T00:00:00Z"}]
    for body, field in (
            ({"overrides": overlap}, "overrides[1].start"),
            ({"overrides": [{"user": str(uuid.uuid4()), "start": "2026-03-09T00:00:00Z",
                             "end": "2026-03-10T00:00:00Z"}]}, "overrides[0].user"),
            ({"rotations": [{"members": [ann, str(uuid.uuid4())], "start": "2026-03-06"}]},
             "rotations[0].members[1]"),
            ({"rotations": [{"members": [ann, ann], "start": "2026-03-06"}]}, "rotations[0].members")):
        with pytest.raises(InvalidInput) as refused:
            await service.update_schedule(services, manager, audit, sid, ScheduleUpdate.model_validate(body))
        assert refused.value.details[0]["field"] == field, (body, refused.value.details)
    for at in (datetime(2026, 3, 9), datetime(9999, 12, 31, tzinfo=UTC)):
        with pytest.raises(InvalidInput) as refused:
            await service.on_call(services, tenant, sid, at)
        assert refused.value.details[0]["field"] == "at"
    with pytest.raises(ValidationError) as invalid:
        ScheduleUpdate.model_validate({"rotations": [{"members": [ann], "start": "9999-12-31"}]})
    assert invalid.value.errors()[0]["loc"] == ("rotations", 0, "start")

    covered = await service.update_schedule(services, manager, audit, sid, ScheduleUpdate.model_validate(
        {"overrides": overlap[:1]}))
    assert covered["name"] == "field crew" and len(covered["overrides"]) == 1
    now = await service.on_call(services, tenant, sid, datetime(2026, 3, 9, 18, 0, tzinfo=UTC))
    assert (now["user_id"], now["source"], now["until"]) == (
        users["operator"], "override", datetime(2026, 3, 10, tzinfo=UTC))
    await service.delete_schedule(services, manager, audit, sid)
    with pytest.raises(NotFound):
        await service.on_call(services, tenant, sid, None)


async def test_the_routes_answer_envelopes_naming_the_field(services: Any, tenant: str,
                                                            users: dict[str, uuid.UUID]) -> None:
    app = build_app(services.settings)
    app.state.services = services
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        bad = await http.put("/v1/notification-preferences", headers=auth(tenant, "operator"),
                             json={"quiet_hours": {"start": "7am", "end": "06:00"}})
        assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "quiet_hours.start", bad.text
        ok = await http.put("/v1/notification-preferences", headers=auth(tenant, "operator"),
                            json={"channels": {"critical": ["sms", "in_app"]}, "phone": "+15550100124"})
        assert ok.status_code == 200 and ok.json()["data"]["channels"]["critical"] == ["sms", "in_app"], ok.text
        other = f"/v1/notification-preferences/{users['operator']}"
        assert (await http.get(other, headers=auth(tenant, "manager"))).status_code == 403
        read = await http.get(other, headers=auth(tenant, "admin"))
        assert read.status_code == 200 and read.json()["data"]["phone"] == "+15550100124", read.text

        ann = str(users["operator"])
        overlap = {"name": "night", "rotations": [{"members": [ann], "start": "2026-01-05"}], "overrides": [
            {"user": ann, "start": "2026-01-06T00:00:00Z", "end": "2026-01-08T00:00:00Z"},
            {"user": ann, "start": "2026-01-07T00:00:00Z", "end": "2026-01-09T00:00:00Z"}]}
        refused = await http.post("/v1/oncall-schedules", headers=auth(tenant, "manager"), json=overlap)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["details"][0]["field"] == "overrides[1].start"
        created = await http.post("/v1/oncall-schedules", headers=auth(tenant, "manager"),
                                  json={**overlap, "overrides": overlap["overrides"][:1]})
        assert created.status_code == 201, created.text
        sid = created.json()["data"]["id"]
        who = await http.get(f"/v1/oncall-schedules/{sid}/on-call", params={"at": "2026-01-06T12:00:00Z"},
                             headers=auth(tenant, "viewer"))
        assert who.status_code == 200 and who.json()["data"]["source"] == "override", who.text
        naive = await http.get(f"/v1/oncall-schedules/{sid}/on-call", params={"at": "2026-01-06T12:00:00"},
                               headers=auth(tenant, "viewer"))
        assert naive.status_code == 422 and naive.json()["error"]["details"][0]["field"] == "at", naive.text
        listed = await http.get("/v1/oncall-schedules", headers=auth(tenant, "manager"))
        assert [s["name"] for s in listed.json()["data"]] == ["night"], listed.text
