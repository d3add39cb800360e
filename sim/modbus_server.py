"""A Modbus TCP server that looks like a field of RTUs: for tests and for ``wellpulse simulate --modbus-server``.

`SimModbusServer` serves holding and input registers for a set of unit ids; `set_value` writes an engineering value
in a register type and word order (the inverse of what the gateway decodes), `fail` makes one unit answer every
read with a Modbus exception (a PLC in fault), `stop` is a device that stopped answering altogether.

`fleet_register_map` lays out the demo fleet (`sim.fleet`) one unit per equipment, each sensor a float32 at
``2 * index`` of the holding registers, and `modbus_gateway_config` writes the matching gateway TOML.

>>> from sim.fleet import demo_fleet
>>> layout = fleet_register_map(demo_fleet(2))
>>> layout[0][:2], layout[0][2][:2]
((1, 'PJ-0001'), [('motor_current_a', 0), ('polished_rod_load_lbf', 2)])
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from sim.fleet import EquipmentSpec

__all__ = ["SimModbusServer", "fleet_register_map", "modbus_gateway_config", "serve_fleet_modbus"]

WORDS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4}


class SimModbusServer:
    """Holding and input registers (``size`` words each, addresses from 0) per unit id, on ``host:port``."""

    def __init__(self, units: Iterable[int] = (1,), *, host: str = "127.0.0.1", port: int = 5020,
                 size: int = 1024) -> None:
        self.host = host
        self.port = port
        self.size = size
        self.registers: dict[int, dict[str, list[int]]] = {u: {"h": [0] * size, "i": [0] * size} for u in units}
        self.failing: dict[int, int] = {}  # unit -> exception code
        self.reads = 0
        self._server: Any = None

    async def _action(self, unit: int, func_code: int, start: int, address: int, count: int,
                      current: list[int], set_values: Any) -> Any:
        from pymodbus.constants import ExcCodes

        if unit in self.failing:
            return ExcCodes(self.failing[unit])
        if set_values is None:
            self.reads += 1
            table = self.registers[unit]["i" if func_code == 4 else "h"]
            current[address - start:address - start + count] = table[address:address + count]
        return None

    def _device(self, unit: int) -> Any:
        import functools

        from pymodbus.simulator import DataType, SimData, SimDevice

        def block(datatype: Any) -> list[Any]:
            return [SimData(0, count=self.size, datatype=datatype)]

        return SimDevice(id=unit, simdata=(block(DataType.BITS), block(DataType.BITS), block(DataType.REGISTERS),
                                           block(DataType.REGISTERS)),
                         action=functools.partial(self._action, unit))

    async def start(self) -> SimModbusServer:
        from pymodbus.server import ModbusTcpServer

        self._server = ModbusTcpServer([self._device(u) for u in self.registers], address=(self.host, self.port))
        await self._server.serve_forever(background=True)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.shutdown()
            self._server = None

    def set_value(self, unit: int, address: int, value: float, *, type: str = "float32",
                  word_order: Literal["big", "little"] = "big", table: str = "holding") -> None:
        from pymodbus.client import ModbusTcpClient

        data_type = ModbusTcpClient.DATATYPE[type.upper()]
        encoded = value if type.startswith("float") else round(value)
        words = ModbusTcpClient.convert_to_registers(encoded, data_type, word_order=word_order)
        self.registers[unit]["h" if table == "holding" else "i"][address:address + len(words)] = words

    def fail(self, unit: int, code: int | None = 6) -> None:
        """Answer every read of ``unit`` with exception ``code`` (6: device busy); ``None`` heals it."""
        if code is None:
            self.failing.pop(unit, None)
        else:
            self.failing[unit] = code


def fleet_register_map(fleet: Sequence[EquipmentSpec]) -> list[tuple[int, str, list[tuple[str, int]]]]:
    """``(unit id, equipment id, [(sensor, holding address), ...])`` per equipment: float32s from address 0."""
    return [(n, spec.equipment_id, [(s.name, 2 * k) for k, s in enumerate(spec.sensors)])
            for n, spec in enumerate(fleet, start=1)]


def modbus_gateway_config(tenant: str, host: str, port: int, fleet: Sequence[EquipmentSpec],
                          poll_interval_s: float = 1.0) -> str:
    """The ``wellpulse gateway modbus`` TOML that polls `serve_fleet_modbus`'s registers."""
    lines = ["[nats]", f'tenant = "{tenant}"', ""]
    for unit, equipment_id, sensors in fleet_register_map(fleet):
        lines += ["[[device]]", f'equipment_id = "{equipment_id}"', f'host = "{host}"', f"port = {port}",
                  f"unit_id = {unit}", f"poll_interval_s = {poll_interval_s}", ""]
        for sensor, address in sensors:
            lines += ["[[device.register]]", f'sensor = "{sensor}"', f"address = {address}", 'type = "float32"', ""]
    return "\n".join(lines)


async def serve_fleet_modbus(fleet: Sequence[EquipmentSpec], stop: asyncio.Event, *, host: str = "127.0.0.1",
                             port: int = 5020, interval_s: float = 1.0, seed: int = 0) -> None:
    """Serve the demo fleet's live values (`sim.feed.FeedSimulator`, faults included) until ``stop``."""
    from sim.faults import FaultSchedule
    from sim.feed import FeedSimulator

    layout = fleet_register_map(fleet)
    server = await SimModbusServer([unit for unit, _, _ in layout], host=host, port=port).start()
    sim = FeedSimulator(list(fleet), seed=seed, schedule=FaultSchedule(60.0, seed=seed))
    addresses = {equipment_id: (unit, dict(sensors)) for unit, equipment_id, sensors in layout}
    try:
        while not stop.is_set():
            for body in sim.next_snapshots(datetime.now(UTC)):
                for snap in body.get("readings", [body]):
                    unit, sensors = addresses[snap["equipment_id"]]
                    for sensor, value in snap["values"].items():
                        if sensor in sensors:
                            server.set_value(unit, sensors[sensor], float(value))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
    finally:
        await server.stop()
