"""The OPC UA gateway against a locked-down server: Basic256Sha256 SignAndEncrypt only, trusting one client
certificate. The trusted gateway's values flow; an untrusted certificate and an unsecured client are refused,
counted, logged by name and retried with backoff, never a crash. One server for the module (asyncua is slow to
start, and slower to make keys)."""

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError, load_opcua_config_text
from gateway.opcua import OpcUaGateway, make_certificate, run_opcua_gateway
from gateway.publish import GatewayMetrics
from sim.opcua_server import SimOpcUaServer
from store.embedded import EmbeddedNats, free_port
from tests.gateway_support import feed_fixtures
from tests.helpers import wait_for

pytestmark = pytest.mark.fast

TENANT = "gw-opcua-sec"
CLIENT_URI = "urn:wellpulse:gateway:test"

server, received = feed_fixtures(TENANT)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The server's certificate, the trusted client's, and a stranger's (same URI, not trusted)."""
    root = tmp_path_factory.mktemp("pki")
    (root / "trusted").mkdir()
    paths = {"server_cert": root / "server.der", "server_key": root / "server.pem",
             "client_cert": root / "trusted" / "client.der", "client_key": root / "client.pem",
             "stranger_cert": root / "stranger.der", "stranger_key": root / "stranger.pem", "trusted": root / "trusted"}
    make_certificate(paths["server_cert"], paths["server_key"], "urn:wellpulse:sim", "127.0.0.1", server=True)
    from cli import main  # the client's as a user makes it: `wellpulse gateway opcua-cert`

    assert main(["gateway", "opcua-cert", "--certificate", str(paths["client_cert"]), "--private-key",
                 str(paths["client_key"]), "--uri", CLIENT_URI]) == 0
    assert paths["client_key"].stat().st_mode & 0o077 == 0  # the key is the owner's alone
    assert main(["gateway", "opcua-cert", "--certificate", str(paths["client_cert"]), "--private-key",
                 str(root / "other.pem")]) == 2  # never overwrites
    make_certificate(paths["stranger_cert"], paths["stranger_key"], CLIENT_URI, "127.0.0.1")
    return paths


@pytest.fixture(scope="module")
async def controller(pki: dict[str, Path]) -> AsyncIterator[SimOpcUaServer]:
    ua = await SimOpcUaServer({"CMP-7": ["suction_psi"]}, port=free_port(), certificate=pki["server_cert"],
                              private_key=pki["server_key"], trusted=pki["trusted"]).start()
    await ua.set_value("CMP-7", "suction_psi", 42.0)
    yield ua
    await ua.stop()


def _config(controller: SimOpcUaServer, security: str) -> str:
    return f"""
endpoint = "{controller.endpoint}"
publishing_interval_ms = 50
sampling_interval_ms = 20
timeout_s = 2
backoff_max_s = 0.5

[nats]
tenant = "{TENANT}"

{security}

[[item]]
node_id = "{controller.node("CMP-7", "suction_psi")}"
equipment_id = "CMP-7"
sensor = "suction_psi"
"""


def _security(pki: dict[str, Path], who: str = "client", mode: str = "SignAndEncrypt") -> str:
    return f"""[security]
policy = "Basic256Sha256"
mode = "{mode}"
certificate = "{pki[who + '_cert']}"
private_key = "{pki[who + '_key']}"
server_certificate = "{pki['server_cert']}"
"""


async def _run(config_text: str, server: EmbeddedNats) -> tuple[asyncio.Task[GatewayMetrics], GatewayMetrics,
                                                                asyncio.Event]:
    stop, metrics = asyncio.Event(), GatewayMetrics()
    task = asyncio.create_task(run_opcua_gateway(load_opcua_config_text(config_text), server.feed_url(TENANT),
                                                 stop, metrics))
    return task, metrics, stop


async def test_a_trusted_gateway_signs_encrypts_and_its_values_flow(
        server: EmbeddedNats, controller: SimOpcUaServer, pki: dict[str, Path], received: Any) -> None:
    task, metrics, stop = await _run(_config(controller, _security(pki)), server)
    try:
        async def value(wanted: float) -> bool:
            return any(m["body"]["values"].get("suction_psi") == wanted for m in received.get("CMP-7", []))

        await wait_for(lambda: value(42.0), timeout=30, interval=0.05)
        await controller.set_value("CMP-7", "suction_psi", 43.5)
        await wait_for(lambda: value(43.5), timeout=10, interval=0.05)
        assert metrics.value("wellpulse_gateway_polls_total", device="opcua") == 1  # one session, subscribed
        assert metrics.value("wellpulse_gateway_errors_total", device="opcua", kind="security") == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)


@pytest.mark.parametrize("who, mode, refusal", [("stranger", "SignAndEncrypt", "BadCertificateUntrusted"),
                                                ("client", "Sign", "no matching endpoint for Basic256Sha256/Sign")])
async def test_an_untrusted_certificate_or_a_mode_not_offered_is_refused_and_retried(
        server: EmbeddedNats, controller: SimOpcUaServer, pki: dict[str, Path], who: str, mode: str, refusal: str,
        caplog: pytest.LogCaptureFixture) -> None:
    task, metrics, stop = await _run(_config(controller, _security(pki, who, mode)), server)
    try:
        async def refused_twice() -> bool:
            return metrics.value("wellpulse_gateway_errors_total", device="opcua", kind="security") >= 2

        with caplog.at_level(logging.WARNING, logger="gateway.opcua"):
            await wait_for(refused_twice, timeout=30, interval=0.05)
        assert not task.done()  # still trying, with backoff
        assert refusal in caplog.text and "refused the gateway's security" in caplog.text
        assert metrics.value("wellpulse_gateway_comms_lost", device="opcua") == 1
        assert metrics.value("wellpulse_gateway_polls_total", device="opcua") == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)


async def test_an_unsecured_client_is_refused(server: EmbeddedNats, controller: SimOpcUaServer,
                                              caplog: pytest.LogCaptureFixture) -> None:
    task, metrics, stop = await _run(_config(controller, ""), server)
    try:
        async def refused_twice() -> bool:
            return metrics.value("wellpulse_gateway_errors_total", device="opcua", kind="security") >= 2

        with caplog.at_level(logging.WARNING, logger="gateway.opcua"):
            await wait_for(refused_twice, timeout=30, interval=0.05)
        assert not task.done() and metrics.value("wellpulse_gateway_polls_total", device="opcua") == 0
        assert "no matching endpoint for None/None; the server offers Basic256Sha256/SignAndEncrypt" in caplog.text
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)


def test_a_missing_certificate_file_is_a_config_error(pki: dict[str, Path], tmp_path: Path) -> None:
    text = _config(SimOpcUaServer({}, port=4840), _security(pki).replace(str(pki["client_key"]),
                                                                         str(tmp_path / "gone.pem")))
    with pytest.raises(ConfigError, match=r"security\.private_key"):
        OpcUaGateway(load_opcua_config_text(text), None, GatewayMetrics(), asyncio.Event())  # type: ignore[arg-type]
