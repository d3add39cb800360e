"""The operator console in a real headless Chromium: sign in, a live alert, acknowledge seen from another
session, the equipment chart with its alert period, a viewer without the button, a dropped socket.

Needs Debian's Chromium (``apt-get install -y chromium chromium-driver``) and the ``playwright`` package
(driving that executable: no browser download). Without them the module is skipped, saying why.
Screenshots of the three main views are the run's artefacts: under ``$WELLPULSE_TEST_ARTEFACTS/console`` when
that is set, else under pytest's temp dir (the path is printed at the end of the module).
"""

import asyncio
import importlib.util
import os
import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import websockets

from serve.security import password_hashing
from store import admin
from tests.helpers import auth, create_tenant, new_tenant_id, now_utc, publish, snapshot, wait_for

CHROMIUM = os.environ.get("WELLPULSE_CHROMIUM", "/usr/bin/chromium")
INSTALL = "apt-get install -y chromium chromium-driver"
if not shutil.which(CHROMIUM):
    pytestmark = pytest.mark.skip(reason=f"no Chromium at {CHROMIUM} (install it: {INSTALL})")
elif importlib.util.find_spec("playwright") is None:
    pytestmark = pytest.mark.skip(reason="the playwright package is missing (pip install -e '.[test]')")

def expect(locator: Any) -> Any:
    from playwright.async_api import expect as playwright_expect

    return playwright_expect(locator)


FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
PASSWORD = "console-Pa55word-2026"
LIVE_WITHIN_MS = 2000
RULE = {"id": "flow_high", "kind": "threshold",
        "params": {"sensor": "flow_mcfd", "high": 1000.0, "for_seconds": 0, "severity": "critical"}}


class Console:
    """What the tests share: the tenant, its users' emails, the browser and the artefact dir."""

    def __init__(self, stack: Any, tenant: str, browser: Any, shots: Path) -> None:
        self.stack, self.tenant, self.browser, self.shots = stack, tenant, browser, shots
        self.url = stack.base_url + "/"

    def email(self, role: str) -> str:
        return f"{role}@{self.tenant}.console.example"

    async def page(self, **context_options: Any) -> Any:
        context = await self.browser.new_context(**{"viewport": {"width": 1366, "height": 768}, **context_options})
        return self.watch(await context.new_page())

    def watch(self, page: Any) -> Any:
        """Script errors and console messages are printed with a failing test's output."""
        page.on("pageerror", lambda exc: print(f"page error: {exc}"))
        page.on("console", lambda msg: print(f"console {msg.type}: {msg.text}"))
        return page

    async def sign_in(self, page: Any, role: str = "operator", hash_: str = "") -> None:
        await page.goto(self.url + hash_)
        await page.get_by_label("Tenant").fill(self.tenant)
        await page.get_by_label("Email").fill(self.email(role))
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        await page.locator(".feed-status[data-state=live]").wait_for(timeout=15_000)


@pytest.fixture(scope="module")
async def console(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Console]:
    from playwright.async_api import async_playwright

    tenant = new_tenant_id("console")
    await create_tenant(stack, tenant, [("MTR-1", "meter"), ("MTR-2", "meter")], rules=[RULE])
    hashed = await asyncio.to_thread(password_hashing(stack.settings).hash, PASSWORD)
    for role in ("operator", "admin", "viewer"):
        await asyncio.to_thread(admin.ensure_user, stack.settings.database_url, tenant,
                                f"{role}@{tenant}.console.example", role=role, password_hash=hashed)
    async with httpx.AsyncClient(base_url=stack.base_url, headers=auth(tenant, "admin"), timeout=30) as http:
        well = await http.post("/v1/wells", json={"id": "W-7", "api_number": "42-501-20130", "name": "University 7"})
        assert well.status_code == 201, well.text
        moved = await http.patch("/v1/equipment/MTR-1", json={"well_ids": ["W-7"]})
        assert moved.status_code == 200, moved.text
    artefacts = os.environ.get("WELLPULSE_TEST_ARTEFACTS")  # CI keeps this directory
    shots = Path(artefacts) / "console" if artefacts else tmp_path_factory.mktemp("console-screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield Console(stack, tenant, browser, shots)
        finally:
            await browser.close()
    print(f"\nconsole screenshots: {shots}")


async def flip(console: Console, equipment: str, values: list[float], start_s: int = 0) -> None:
    """One flow reading per second, ending about now: above 1000 opens a critical alert."""
    base = now_utc().replace(microsecond=0) - timedelta(seconds=len(values) + 5 - start_s)
    await publish(console.stack.settings.nats_url, console.tenant, [
        (equipment, snapshot(equipment, base + timedelta(seconds=i), {"flow_mcfd": v}))
        for i, v in enumerate(values)])


async def opened_alert(console: Console, equipment: str) -> int:
    async def find() -> int | None:
        conn = await asyncpg.connect(console.stack.settings.database_url)
        try:
            return await conn.fetchval(  # type: ignore[no-any-return]
                "SELECT alert_id FROM alert_events WHERE tenant_id = $1 AND equipment_id = $2 AND kind = 'opened'"
                " ORDER BY seq DESC LIMIT 1", console.tenant, equipment)
        finally:
            await conn.close()

    return int(await wait_for(find, timeout=30, interval=0.05))


async def test_sign_in_and_a_live_alert_appears_without_reload(console: Console) -> None:
    page = await console.page()
    await console.sign_in(page)
    assert await page.locator("td.empty").inner_text() == "No alerts match."
    # Five minutes of normal flow, then above the limit: a critical alert.
    await flip(console, "MTR-1", [800.0 + ((i * 37) % 11 - 5) * 4 for i in range(300)] + [1500.0] * 2)
    alert_id = await opened_alert(console, "MTR-1")
    row = page.locator(f"tr[data-alert-id='{alert_id}']")
    await row.wait_for(timeout=LIVE_WITHIN_MS)  # no reload: it came over the WebSocket
    assert "unack" in (await row.get_attribute("class") or "")
    assert "critical" in (await row.locator(".sev").inner_text()).lower()  # text, not colour alone
    await wait_for(lambda: _title_has(page, "(1)"), timeout=5)
    await page.screenshot(path=console.shots / "alarm-board.png")
    console.alert_id = alert_id  # type: ignore[attr-defined]
    console.operator_page = page  # type: ignore[attr-defined]


async def _title_has(page: Any, text: str) -> bool:
    return text in await page.title()


async def test_an_acknowledgement_shows_in_a_second_session(console: Console) -> None:
    page, alert_id = console.operator_page, console.alert_id  # type: ignore[attr-defined]
    other = await console.page()
    await console.sign_in(other, "admin")
    other_row = other.locator(f"tr[data-alert-id='{alert_id}']")
    await other_row.wait_for()
    assert await other_row.get_attribute("data-state") == "open"
    await page.locator(f"tr[data-alert-id='{alert_id}'] [data-action=acknowledge]").click()
    dialog = page.locator("dialog.action-dialog")
    await dialog.get_by_label("Comment").fill("crew on the way")
    await dialog.get_by_label("Verdict").select_option("real")
    await dialog.get_by_role("button", name="Acknowledge").click()
    await dialog.wait_for(state="detached")
    acknowledged = other.locator(f"tr[data-alert-id='{alert_id}'][data-state=acknowledged]")
    await expect(acknowledged).to_contain_text("crew on the way", timeout=5000)
    await expect(acknowledged).to_contain_text(console.email("operator"))  # who acknowledged
    await other.context.close()


async def test_the_equipment_page_draws_the_alert_period_on_the_trend(console: Console) -> None:
    page, alert_id = console.operator_page, console.alert_id  # type: ignore[attr-defined]
    await page.locator(f"tr[data-alert-id='{alert_id}'] a", has_text="MTR-1").click()
    chart = page.locator("figure.trend[data-sensor=flow_mcfd] svg.chart")
    await chart.wait_for()
    await chart.locator(f"rect.alert-period[data-alert-id='{alert_id}']").wait_for()
    assert await chart.locator("polyline.line").count() == 1
    assert "acknowledged" in await page.locator("section.card", has_text="Alert history").inner_text()
    await page.get_by_role("link", name="15m", exact=True).click()
    await page.locator("nav.ranges a[aria-current=true]", has_text="15m").wait_for()
    await chart.locator(f"rect.alert-period[data-alert-id='{alert_id}']").wait_for()
    await page.screenshot(path=console.shots / "equipment.png", full_page=True)
    await page.get_by_role("link", name="Fleet").click()
    row = page.locator("table.fleet tr[data-equipment-id='MTR-1']")
    await row.wait_for()
    assert "critical" in (await row.inner_text()).lower()
    await page.screenshot(path=console.shots / "fleet.png")
    await page.get_by_role("link", name="Wells").click()
    well = page.locator("section.well[data-well-id='W-7']")
    await expect(well.locator("tr[data-equipment-id='MTR-1']")).to_contain_text("critical", ignore_case=True)
    assert await well.locator("tr[data-equipment-id='MTR-2']").count() == 0


async def test_a_viewer_sees_no_acknowledge_button_and_the_server_refuses(console: Console) -> None:
    alert_id = console.alert_id  # type: ignore[attr-defined]
    page = await console.page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)  # a phone
    await console.sign_in(page, "viewer", "#/alerts?state=all")  # the hash survives the sign-in
    row = page.locator(f"tr[data-alert-id='{alert_id}']")
    await row.wait_for()
    assert await page.locator("[data-action]").count() == 0
    await page.screenshot(path=console.shots / "alarm-board-phone.png")
    answer = await page.evaluate("""async (id) => {
        const r = await fetch(`/v1/alerts/${id}/resolve`, {method: "POST", credentials: "same-origin",
            headers: {"X-WellPulse-CSRF": "1", "Content-Type": "application/json"}, body: "{}"});
        return [r.status, (await r.json()).error.message];
    }""", alert_id)
    assert answer == [403, "role viewer lacks permission alerts:acknowledge"]
    await page.context.close()


async def test_a_dropped_socket_reconnects_and_shows_the_missed_alerts(console: Console) -> None:
    context = await console.browser.new_context(viewport={"width": 1366, "height": 768})
    sockets: list[Any] = []
    urls: list[str] = []
    blocked = asyncio.Event()

    async def route(ws: Any) -> None:
        urls.append(ws.url)
        if blocked.is_set():
            await ws.close(code=1011, reason="test: network down")
            return
        ws.connect_to_server()
        sockets.append(ws)

    await context.route_web_socket("**/v1/alerts/ws**", route)
    page = console.watch(await context.new_page())
    await console.sign_in(page, "operator", "#/alerts?state=all")
    # An event while connected gives the page its cursor (MTR-1 recovers: its alert resolves).
    await flip(console, "MTR-1", [500.0] * 3)
    await page.locator(f"tr[data-alert-id='{console.alert_id}'][data-state=resolved]").wait_for(  # type: ignore[attr-defined]
        state="attached", timeout=10_000)
    blocked.set()
    await sockets[-1].close(code=1011, reason="test: network down")
    await page.locator(".feed-status[data-state=reconnecting]").wait_for(timeout=5000)
    await flip(console, "MTR-2", [500.0] * 2 + [2000.0] * 2)
    missed = await opened_alert(console, "MTR-2")
    assert await page.locator(f"tr[data-alert-id='{missed}']").count() == 0
    blocked.clear()
    await page.locator(f"tr[data-alert-id='{missed}']").wait_for(timeout=15_000)
    assert "since=" in urls[-1], urls
    await page.locator(".feed-status[data-state=live]").wait_for()
    await context.close()


async def test_a_cookie_socket_opens_from_this_origin_only(console: Console) -> None:
    page = console.operator_page  # type: ignore[attr-defined]
    cookie = next(c for c in await page.context.cookies() if c["name"] == "wp_access")
    url = console.stack.base_url.replace("http", "ws", 1) + "/v1/alerts/ws"
    headers = {"Cookie": f"wp_access={cookie['value']}"}
    async with websockets.connect(url, additional_headers=headers, origin=console.stack.base_url) as ws:
        await ws.ping()
    with pytest.raises(websockets.InvalidStatus):  # another site's page, riding the operator's session
        async with websockets.connect(url, additional_headers=headers, origin="https://evil.example"):
            pass


async def test_an_expired_session_returns_to_sign_in_and_keeps_the_filters(console: Console) -> None:
    page = console.operator_page  # type: ignore[attr-defined]
    await page.get_by_role("link", name="Alarms").click()
    await page.get_by_label("Severity").select_option("critical")
    await page.get_by_label("State").select_option("all")
    await page.context.clear_cookies()
    await page.reload()
    await page.get_by_role("button", name="Sign in").wait_for()
    await page.get_by_label("Email").fill(console.email("operator"))
    await page.get_by_label("Password").fill("wrong-password-123")
    await page.get_by_role("button", name="Sign in").click()
    error = page.locator("#signin-error")
    await error.wait_for()
    assert "invalid" in (await error.inner_text()).lower()  # the envelope's message, not a blank page
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.locator("table.alerts").wait_for()
    assert await page.get_by_label("Severity").input_value() == "critical"
    assert await page.get_by_label("State").input_value() == "all"
    assert "severity=critical" in page.url
    await page.context.close()
