"""The Modbus TCP gateway against a real pymodbus server and a real NATS, publishing with a tenant's feed user."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.config import ConfigError, load_modbus_config_text
from gateway.modbus import run_modbus_gateway
from gateway.publish import GatewayMetrics
from schema.telemetry import parse_telemetry
from sim.modbus_server import SimModbusServer
from store.embedded import EmbeddedNats, free_port
from tests.gateway_support import TcpProxy, feed_fixtures
from tests.helpers import wait_for

pytestmark = pytest.mark.fast

TENANT = "gw-modbus"


server, received = feed_fixtures(TENANT)


@pytest.fixture(scope="module")
async def plc() -> AsyncIterator[SimModbusServer]:
    plc = await SimModbusServer(units=[1, 2, 3], port=free_port()).start()
    plc.set_value(1, 0, 812.5, type="float32")
    plc.set_value(1, 2, -123, type="int16")
    plc.set_value(1, 10, 70000, type="int32", word_order="little")
    plc.set_value(1, 20, 3.25, type="float64")
    plc.set_value(1, 0, 1500, type="uint16", table="input")
    plc.set_value(2, 0, 42.0, type="float32")
    plc.set_value(3, 0, 7.0, type="float32")
    yield plc
    await plc.stop()


def _config(plc_port: int, dead_port: int, link_port: int) -> str:
    return f"""
[nats]
tenant = "{TENANT}"

[[device]]
equipment_id = "PJ-1"
host = "127.0.0.1"
port = {plc_port}
unit_id = 1
poll_interval_s = 0.1
timeout_s = 0.5
[[device.register]]
sensor = "tubing_psi"
address = 0
type = "float32"
[[device.register]]
sensor = "temp_c"
address = 2
type = "int16"
scale = 0.1
[[device.register]]
sensor = "runtime_s"
address = 10
type = "int32"
word_order = "little"
[[device.register]]
sensor = "flow"
address = 20
type = "float64"
[[device.register]]
sensor = "level_m"
address = 0
table = "input"
scale = 0.01
offset = -5

[[device]]
equipment_id = "PJ-2"
host = "127.0.0.1"
port = {plc_port}
unit_id = 2
poll_interval_s = 0.1
timeout_s = 0.5
comms_loss_after = 3
backoff_max_s = 0.2
[[device.register]]
sensor = "tubing_psi"
address = 0
type = "float32"

[[device]]
equipment_id = "PJ-4"
host = "127.0.0.1"
port = {link_port}
unit_id = 3
poll_interval_s = 0.1
timeout_s = 0.3
comms_loss_after = 2
backoff_max_s = 0.2
[[device.register]]
sensor = "tubing_psi"
address = 0
type = "float32"

[[device]]
equipment_id = "PJ-3"
host = "127.0.0.1"
port = {dead_port}
poll_interval_s = 0.1
timeout_s = 0.3
comms_loss_after = 2
backoff_max_s = 0.2
[[device.register]]
sensor = "tubing_psi"
address = 0
"""


@pytest.fixture(scope="module")
async def link(plc: SimModbusServer) -> AsyncIterator[TcpProxy]:
    proxy = await TcpProxy(plc.port).start()
    yield proxy
    await proxy.stop()


@pytest.fixture(scope="module")
async def gateway(server: EmbeddedNats, plc: SimModbusServer, link: TcpProxy,
                  received: Any) -> AsyncIterator[GatewayMetrics]:
    config = load_modbus_config_text(_config(plc.port, free_port(), link.port))
    stop = asyncio.Event()
    metrics = GatewayMetrics()
    task = asyncio.create_task(run_modbus_gateway(config, server.feed_url(TENANT), stop, metrics))
    yield metrics
    stop.set()
    await asyncio.wait_for(task, timeout=10)


async def test_registers_are_decoded_scaled_and_published(gateway: GatewayMetrics, received: Any) -> None:
    async def first() -> Any:
        return received.get("PJ-1")

    message = (await wait_for(first, timeout=10))[0]
    reading = parse_telemetry(orjson.dumps(message["body"])).readings[0]
    assert reading.values == {"tubing_psi": 812.5, "temp_c": pytest.approx(-12.3), "runtime_s": 70000.0,
                              "flow": 3.25, "level_m": 10.0}
    assert reading.quality == {} and not reading.historical
    assert message["id"].startswith(f"{TENANT}/PJ-1@{message['body']['ts']}/")
    assert gateway.value("wellpulse_gateway_published_total", device="PJ-1") >= 1


async def test_exceptions_open_comms_loss_and_stop_publishing_until_healed(
        gateway: GatewayMetrics, plc: SimModbusServer, received: Any) -> None:
    async def publishing() -> bool:
        return len(received.get("PJ-2", [])) >= 2

    await wait_for(publishing, timeout=10)
    plc.fail(2, 6)

    async def lost() -> bool:
        return gateway.value("wellpulse_gateway_comms_lost", device="PJ-2") == 1

    await wait_for(lost, timeout=10, interval=0.05)
    assert gateway.value("wellpulse_gateway_errors_total", device="PJ-2", kind="exception") >= 3
    assert gateway.value("wellpulse_gateway_comms_loss_total", device="PJ-2") == 1
    published = len(received["PJ-2"])
    failures = gateway.value("wellpulse_gateway_errors_total", device="PJ-2", kind="exception")

    async def more_failures() -> bool:
        return gateway.value("wellpulse_gateway_errors_total", device="PJ-2", kind="exception") >= failures + 2

    await wait_for(more_failures, timeout=10, interval=0.05)
    assert len(received["PJ-2"]) == published  # nothing invented while the device is down
    plc.fail(2, None)
    plc.set_value(2, 0, 43.0, type="float32")

    async def healed() -> bool:
        return any(m["body"]["values"]["tubing_psi"] == 43.0 for m in received["PJ-2"][published:])

    await wait_for(healed, timeout=10, interval=0.05)
    assert gateway.value("wellpulse_gateway_comms_lost", device="PJ-2") == 0
    assert gateway.value("wellpulse_gateway_comms_loss_total", device="PJ-2") == 1


async def test_a_device_that_never_answers_is_counted_and_backs_off(gateway: GatewayMetrics, received: Any) -> None:
    async def lost() -> bool:
        return gateway.value("wellpulse_gateway_comms_lost", device="PJ-3") == 1

    await wait_for(lost, timeout=10, interval=0.05)
    assert gateway.value("wellpulse_gateway_errors_total", device="PJ-3", kind="connect") >= 2
    assert "PJ-3" not in received
    assert received.get("PJ-1")  # the others go on


async def test_a_silent_device_times_out_and_a_cut_link_reconnects(
        gateway: GatewayMetrics, link: TcpProxy, received: Any) -> None:
    async def publishing(at_least: int) -> bool:
        return len(received.get("PJ-4", [])) >= at_least

    async def lost() -> bool:
        return gateway.value("wellpulse_gateway_comms_lost", device="PJ-4") == 1

    async def back() -> bool:
        return gateway.value("wellpulse_gateway_comms_lost", device="PJ-4") == 0

    await wait_for(lambda: publishing(1), timeout=10, interval=0.05)
    link.stalled = True  # connected, never answering
    await wait_for(lost, timeout=10, interval=0.05)
    assert gateway.value("wellpulse_gateway_errors_total", device="PJ-4", kind="timeout") >= 2
    link.stalled = False
    await wait_for(back, timeout=10, interval=0.05)
    link.cut()  # the link drops: connections reset, new ones refused
    await wait_for(lost, timeout=10, interval=0.05)
    assert gateway.value("wellpulse_gateway_errors_total", device="PJ-4", kind="connect") >= 1
    count = len(received["PJ-4"])
    link.restore()
    await wait_for(lambda: publishing(count + 1), timeout=10, interval=0.05)
    assert gateway.value("wellpulse_gateway_comms_loss_total", device="PJ-4") == 2


@pytest.mark.parametrize(("text", "field"), [
    ('[nats]\ntenant = "t"\n[[device]]\nequipment_id = "A"\nhost = "h"\nregister = []', "device.0.register"),
    ('[nats]\ntenant = "t"\n[[device]]\nequipment_id = "A"\nhost = "h"\n'
     '[[device.register]]\nsensor = "s"\naddress = 0\ntype = "int8"', "device.0.register.0.type"),
    ('[nats]\ntenant = "t"\npoll = 1\n[[device]]\nequipment_id = "A"\nhost = "h"\n'
     '[[device.register]]\nsensor = "s"\naddress = 0', "nats.poll"),
    ('[nats]\ntenant = "T!"', "nats.tenant"),
    ("[nats", "not valid TOML"),
])
def test_bad_configs_name_the_field(text: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_modbus_config_text(text)


def test_cli_refuses_a_bad_config_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli import main

    bad = tmp_path / "poll.toml"
    bad.write_text('[nats]\ntenant = "t"\n', encoding="utf-8")
    assert main(["gateway", "modbus", "--config", str(bad)]) == 2
    assert "device" in capsys.readouterr().err
    assert main(["gateway", "modbus", "--config", str(tmp_path / "missing.toml")]) == 2


async def test_the_simulated_field_and_its_generated_config_work_together(
        server: EmbeddedNats, received: Any) -> None:
    """What ``wellpulse simulate --modbus-server P --gateway-config F`` serves, ``wellpulse gateway modbus`` reads."""
    from sim.fleet import demo_fleet
    from sim.modbus_server import modbus_gateway_config, serve_fleet_modbus

    fleet, port, stop = demo_fleet(2), free_port(), asyncio.Event()
    field = asyncio.create_task(serve_fleet_modbus(fleet, stop, port=port, interval_s=0.1))
    config = load_modbus_config_text(modbus_gateway_config(TENANT, "127.0.0.1", port, fleet, poll_interval_s=0.1))
    gateway = asyncio.create_task(run_modbus_gateway(config, server.feed_url(TENANT), stop))
    try:
        async def both() -> bool:
            return all(any(m["body"]["values"].get(s.name) for m in received.get(spec.equipment_id, []))
                       for spec in fleet for s in spec.sensors[:1])

        await wait_for(both, timeout=15, interval=0.05)
        message = received["PJ-0001"][-1]["body"]
        assert set(message["values"]) == {s.name for s in fleet[0].sensors}
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(field, gateway), timeout=10)


def test_simulate_modbus_server_writes_the_gateway_config(tmp_path: Path) -> None:
    from cli import main

    port, path = free_port(), tmp_path / "poll.toml"
    assert main(["simulate", "--tenant", TENANT, "--equipment", "2", "--modbus-server", str(port),
                 "--gateway-config", str(path), "--duration", "0.3"]) == 0
    config = load_modbus_config_text(path.read_text(encoding="utf-8"))
    assert [(d.equipment_id, d.port, d.unit_id) for d in config.device] == [("PJ-0001", port, 1), ("CMP-0002", port, 2)]
