"""The OPC UA gateway against a real asyncua server (through a link the test can cut) and a real NATS."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from gateway.config import ConfigError, load_opcua_config_text
from gateway.opcua import OpcUaGateway, run_opcua_gateway
from gateway.publish import GatewayMetrics
from schema.telemetry import parse_telemetry
from sim.opcua_server import SimOpcUaServer
from store.embedded import EmbeddedNats, free_port
from tests.gateway_support import TcpProxy, feed_fixtures
from tests.helpers import wait_for

pytestmark = pytest.mark.fast

TENANT = "gw-opcua"


server, received = feed_fixtures(TENANT)


@pytest.fixture(scope="module")
async def controller() -> AsyncIterator[SimOpcUaServer]:
    ua = await SimOpcUaServer({"CMP-1": ["suction_psi", "discharge_psi", "temp_c"]}, port=free_port()).start()
    await ua.set_value("CMP-1", "suction_psi", 55.0)
    yield ua
    await ua.stop()


@pytest.fixture(scope="module")
async def link(controller: SimOpcUaServer) -> AsyncIterator[TcpProxy]:
    proxy = await TcpProxy(controller.port).start()
    yield proxy
    await proxy.stop()


def _config(endpoint: str, namespace: int) -> str:
    return f"""
endpoint = "{endpoint}"
publishing_interval_ms = 50
sampling_interval_ms = 20
timeout_s = 2
backoff_max_s = 0.5

[nats]
tenant = "{TENANT}"

[[item]]
node_id = "ns={namespace};s=CMP-1.suction_psi"
equipment_id = "CMP-1"
sensor = "suction_psi"

[[item]]
node_id = "ns={namespace};s=CMP-1.discharge_psi"
equipment_id = "CMP-1"
sensor = "discharge_psi"
deadband = 5
scale = 2

[[item]]
node_id = "ns={namespace};s=CMP-1.temp_c"
equipment_id = "CMP-1"
sensor = "temp_c"

[[item]]
node_id = "ns={namespace};s=CMP-1.no_such_node"
equipment_id = "CMP-1"
sensor = "ghost"
"""


@pytest.fixture(scope="module")
async def gateway(server: EmbeddedNats, controller: SimOpcUaServer, link: TcpProxy,
                  received: Any) -> AsyncIterator[GatewayMetrics]:
    endpoint = controller.endpoint.replace(f":{controller.port}/", f":{link.port}/")
    config = load_opcua_config_text(_config(endpoint, controller.namespace))
    stop = asyncio.Event()
    metrics = GatewayMetrics()
    task = asyncio.create_task(run_opcua_gateway(config, server.feed_url(TENANT), stop, metrics))
    yield metrics
    stop.set()
    await asyncio.wait_for(task, timeout=15)


def _values(received: Any, sensor: str) -> list[tuple[float, str]]:
    out = []
    for message in received.get("CMP-1", []):
        reading = parse_telemetry(orjson.dumps(message["body"])).readings[0]
        if sensor in reading.values:
            out.append((reading.values[sensor], reading.quality_of(sensor)))
    return out


async def _until(received: Any, sensor: str, wanted: tuple[float, str], timeout: float = 10) -> None:
    async def seen() -> bool:
        return wanted in _values(received, sensor)

    await wait_for(seen, timeout=timeout, interval=0.05)


async def test_values_and_status_codes_arrive_with_their_quality(
        gateway: GatewayMetrics, controller: SimOpcUaServer, received: Any) -> None:
    await _until(received, "suction_psi", (55.0, "good"))  # the value the node held when subscribed
    await controller.set_value("CMP-1", "suction_psi", 56.5, quality="uncertain")
    await _until(received, "suction_psi", (56.5, "uncertain"))
    assert gateway.value("wellpulse_gateway_values_not_good_total", device="CMP-1", quality="uncertain") >= 1
    # A Bad status: a compliant server sends no value with it (Part 4), so there is nothing to publish.
    await controller.set_value("CMP-1", "temp_c", 88.0, quality="bad")

    async def counted() -> bool:
        return gateway.value("wellpulse_gateway_errors_total", device="CMP-1", kind="status_bad") >= 1

    await wait_for(counted, timeout=10, interval=0.05)
    assert 88.0 not in [v for v, _ in _values(received, "temp_c")]
    assert gateway.value("wellpulse_gateway_errors_total", device="CMP-1", kind="subscribe") == 1  # the ghost


def test_a_bad_status_that_still_carries_a_number_is_flagged_bad() -> None:
    """Some controllers send their last value with a Bad status; it is published, flagged, and not learned."""
    from asyncua import ua
    from asyncua.common.subscription import DataChangeNotif, SubscriptionItemData

    from gateway.config import OpcUaItem
    from gateway.opcua import _Handler

    queue: asyncio.Queue[Any] = asyncio.Queue()
    metrics = GatewayMetrics()
    handler = _Handler({7: OpcUaItem(node_id="ns=2;s=X", equipment_id="E-1", sensor="p", scale=10)}, queue, metrics)
    for status, value in ((0x80000000, 1.5), (0x80000000, "offline"), (0, float("nan"))):
        dv = ua.DataValue(ua.Variant(value), StatusCode=ua.StatusCode(status))
        handler.datachange_notification(None, value, DataChangeNotif(
            SubscriptionItemData(), ua.MonitoredItemNotification(ClientHandle=7, Value=dv)))
    change = queue.get_nowait()
    assert (change.value, change.quality) == (15.0, "bad") and queue.empty()
    assert metrics.value("wellpulse_gateway_errors_total", device="E-1", kind="status_bad") == 1
    assert metrics.value("wellpulse_gateway_errors_total", device="E-1", kind="decode") == 1


async def test_deadband_and_scale(gateway: GatewayMetrics, controller: SimOpcUaServer, received: Any) -> None:
    await _until(received, "discharge_psi", (0.0, "good"))
    for value in (2.0, 4.0, 10.0):  # 2 and 4 are within the deadband of 5 from 0
        await controller.set_value("CMP-1", "discharge_psi", value)
    await _until(received, "discharge_psi", (20.0, "good"))
    assert [v for v, _ in _values(received, "discharge_psi")] == [0.0, 20.0]


async def test_a_cut_link_is_counted_and_the_gateway_subscribes_again(
        gateway: GatewayMetrics, controller: SimOpcUaServer, link: TcpProxy, received: Any) -> None:
    await _until(received, "suction_psi", (55.0, "good"))
    link.cut()

    async def lost() -> bool:
        return gateway.value("wellpulse_gateway_comms_lost", device="opcua") == 1

    await wait_for(lost, timeout=15, interval=0.05)
    await controller.set_value("CMP-1", "suction_psi", 61.0)  # while away: read again on resubscribe
    link.restore()
    await _until(received, "suction_psi", (61.0, "good"), timeout=15)
    assert gateway.value("wellpulse_gateway_comms_lost", device="opcua") == 0
    assert gateway.value("wellpulse_gateway_comms_loss_total", device="opcua") == 1
    await controller.set_value("CMP-1", "suction_psi", 62.0)
    await _until(received, "suction_psi", (62.0, "good"))


def test_config_errors_name_the_field() -> None:
    base = 'endpoint = "opc.tcp://h:4840"\n[nats]\ntenant = "t"\n'
    item = '[[item]]\nnode_id = "ns=2;s=A.b"\nequipment_id = "A"\nsensor = "b"\n'
    with pytest.raises(ConfigError, match="endpoint"):
        load_opcua_config_text(base.replace("opc.tcp", "http") + item)
    with pytest.raises(ConfigError, match="security"):
        load_opcua_config_text(base + '[security]\npolicy = "Basic256Sha256"\nmode = "SignAndEncrypt"\n' + item)
    with pytest.raises(ConfigError, match="mapped from two nodes"):
        load_opcua_config_text(base + item + item)
    bad_node = load_opcua_config_text(base + item.replace("ns=2;s=A.b", "ns=x;q=1"))
    with pytest.raises(ConfigError, match="node_id"):
        OpcUaGateway(bad_node, None, GatewayMetrics(), asyncio.Event())  # type: ignore[arg-type]
    secured = load_opcua_config_text(
        base + '[security]\npolicy = "Basic256Sha256"\nmode = "SignAndEncrypt"\n'
        'certificate = "client.pem"\nprivate_key = "client.key"\n' + item)
    assert secured.security.policy == "Basic256Sha256"
