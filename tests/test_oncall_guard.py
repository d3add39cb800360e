"""Channel destinations and failing channels, against PostgreSQL alone (fast tier) with real receivers: with
private networks not allowed (the default; the suite's fixtures allow them, for their loopback receivers) a
webhook, Slack, Teams or SMS URL on a loopback, private, link-local or metadata address is refused on create and
update naming ``config.url``, and a name that resolves to one is refused at send time after resolution; a channel
whose last deliveries all failed is counted by /health's notifications check.
"""

import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from config import ManualClock
from schema.errors import InvalidInput
from schema.notifications import ChannelUpdate
from serve import notifications as service
from serve.auth import Principal, Role
from serve.routers.health import check_notifications
from store.audit import AuditContext
from store.senders import Notice, blocked_address, send
from tests.helpers import seeded_tenant
from tests.receivers import HttpReceiver
from tests.test_notifications import CREATE, SECRET, create, notifier, open_alert, webhook

pytestmark = pytest.mark.fast


@pytest.fixture(scope="module")
async def tenant(services: Any) -> str:
    return await seeded_tenant(services.settings.database_url, "guard", [("PJ-1", "pump_jack")], users=False)


@pytest.fixture
def audit(tenant: str) -> AuditContext:
    return AuditContext(tenant, "user", str(uuid.uuid4()), "127.0.0.1", "req-1")


@pytest.fixture
def principal(tenant: str, audit: AuditContext) -> Principal:
    return Principal(tenant, audit.actor_id, role=Role.MANAGER)


@pytest.fixture
def strict(services: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The services as an operator runs them by default: private networks not allowed."""
    monkeypatch.setattr(services, "settings",
                        services.settings.model_copy(update={"notify_allow_private_networks": False}))
    return services


async def test_private_destinations_are_refused_on_create_and_update(strict: Any, principal: Principal,
                                                                     audit: AuditContext) -> None:
    for body in (webhook("http://127.0.0.1:8080/hook"), webhook("http://10.0.0.7/hook", name="b"),
                 webhook("http://localhost/hook", name="c"),
                 CREATE.validate_python({"kind": "slack", "name": "s", "config": {
                     "url": "http://169.254.169.254/latest/meta-data/"}}),
                 CREATE.validate_python({"kind": "teams", "name": "t", "config": {"url": "https://[fd00:ec2::254]/"}}),
                 CREATE.validate_python({"kind": "sms", "name": "m", "config": {"url": "http://[::ffff:192.168.0.9]/"}})):
        with pytest.raises(InvalidInput) as refused:
            await create(strict, principal, audit, body)
        assert refused.value.details[0]["field"] == "config.url"
        assert "WELLPULSE_NOTIFY_ALLOW_PRIVATE_NETWORKS" in refused.value.details[0]["message"]
    public = await create(strict, principal, audit, webhook("https://hooks.example.com/ok", name="public"))
    with pytest.raises(InvalidInput) as refused:
        await service.update_channel(strict, principal, audit, public["id"], ChannelUpdate(
            config={"url": "http://192.168.1.20/hook"}))
    assert refused.value.details[0]["field"] == "config.url"


async def test_a_name_resolving_to_a_private_address_is_refused_at_send_time(receiver: HttpReceiver) -> None:
    host = socket.gethostname()
    addresses = {info[4][0] for info in socket.getaddrinfo(host, receiver.port, type=socket.SOCK_STREAM)}
    if not all(blocked_address(a) for a in addresses):
        pytest.skip(f"{host} resolves to a public address here")
    notice = Notice(delivery_id="d-1", tenant_id="t", alert_id=1, event_seq=1, event_kind="opened",
                    equipment_id="PJ-1", rule_id="r", severity="critical", state="open", message="m",
                    occurred_at=datetime.now(UTC))
    config = {"url": f"http://{host}:{receiver.port}/hook"}
    refused = await send("webhook", config, {"secret": SECRET}, notice, timeout=5, allow_private_networks=False)
    assert not refused.ok and "resolves only to loopback" in (refused.error or "") and not receiver.requests
    literal = await send("webhook", {"url": receiver.url("/hook")}, {"secret": SECRET}, notice, timeout=5,
                         allow_private_networks=False)
    assert not literal.ok and literal.permanent and not receiver.requests
    allowed = await send("webhook", config, {"secret": SECRET}, notice, timeout=5, allow_private_networks=True)
    assert allowed.ok and len(receiver.requests) == 1


async def test_health_counts_a_channel_whose_last_deliveries_failed(services: Any) -> None:
    tenant = await seeded_tenant(services.settings.database_url, "guard-health", [("PJ-1", "pump_jack")],
                                 users=False)
    audit = AuditContext(tenant, "user", str(uuid.uuid4()), "127.0.0.1", "req-1")
    principal = Principal(tenant, audit.actor_id, role=Role.MANAGER)
    after = services.settings.notify_failing_after
    before = (await check_notifications(services))["failing_channels"].get("webhook", 0)
    dead = HttpReceiver()  # never started: connection refused
    await create(services, principal, audit, webhook(dead.url("/hook"), name="down", min_severity="info"))
    clock = ManualClock(datetime.now(UTC))
    for i in range(after):
        await open_alert(services, tenant, "warning", rule=f"rule_{i}")
        clock.advance(timedelta(seconds=1))
        await notifier(services, tenant, clock, retry_seconds=0).run_round()
        report = await check_notifications(services)
        failing = report["failing_channels"].get("webhook", 0) - before
        assert failing == (1 if i == after - 1 else 0), (i, report)
    assert report["ok"] is True and any("webhook" in w for w in report["warnings"])
