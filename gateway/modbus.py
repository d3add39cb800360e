"""Modbus TCP gateway: poll each device's holding and input registers and publish one reading per poll.

Per device (`gateway.config.DeviceConfig`): registers are read in as few requests as the Modbus limit allows
(`plan_reads`), decoded (int16 ... float64, big or little word order) and scaled (``raw * scale + offset``).

Failures never stop the gateway. An exception response, a timeout or a refused connection is counted per device
(``wellpulse_gateway_errors_total{kind}``) and the device is retried with exponential backoff (poll interval
doubling up to ``backoff_max_s``). After ``comms_loss_after`` failed polls in a row the device is in comms loss:
``comms_lost`` is 1, ``comms_loss_total`` counts the start, a warning is logged, and nothing is published for it,
so WellPulse's stale-data rule raises the alert: the message contract has no reading-less "offline" event, and
last values re-flagged "bad" would be invented data. (Sparkplug B's NDEATH/DDEATH open ``comms_loss`` at once.)

>>> regs = [RegisterConfig(sensor="a", address=0), RegisterConfig(sensor="b", address=10, type="float32"),
...         RegisterConfig(sensor="c", address=200), RegisterConfig(sensor="d", address=0, table="input")]
>>> [(r.table, r.start, r.count, [s.sensor for s in r.registers]) for r in plan_reads(regs)]
[('holding', 0, 12, ['a', 'b']), ('holding', 200, 1, ['c']), ('input', 0, 1, ['d'])]
>>> decode([0x4148, 0x0000], RegisterConfig(sensor="x", address=0, type="float32", scale=2, offset=1))
26.0
>>> decode([0x0000, 0x4148], RegisterConfig(sensor="x", address=0, type="float32", word_order="little"))
12.5
>>> decode([0xFFFF], RegisterConfig(sensor="x", address=0, type="int16"))
-1.0
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.config import MAX_REGISTERS_PER_READ, DeviceConfig, ModbusConfig, RegisterConfig
from gateway.publish import GatewayMetrics, ReadingPublisher, open_publisher
from schema.telemetry import MAX_ABS_VALUE, Reading

__all__ = ["DevicePoller", "PollFailed", "ReadPlan", "decode", "plan_reads", "run_modbus_gateway"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """One request: ``count`` registers of ``table`` from ``start``, holding these sensors' words."""

    table: str
    start: int
    count: int
    registers: tuple[RegisterConfig, ...] = field(default_factory=tuple)


def plan_reads(registers: list[RegisterConfig]) -> list[ReadPlan]:
    """Group registers into as few reads as possible, each within `MAX_REGISTERS_PER_READ` (gaps are read too:
    one request of a few spare words is cheaper than a second round trip)."""
    plans: list[ReadPlan] = []
    for table in ("holding", "input"):
        group: list[RegisterConfig] = []
        start = end = 0
        for reg in sorted((r for r in registers if r.table == table), key=lambda r: r.address):
            reg_end = reg.address + reg.words
            if group and max(end, reg_end) - start <= MAX_REGISTERS_PER_READ:
                group.append(reg)
                end = max(end, reg_end)
                continue
            if group:
                plans.append(ReadPlan(table, start, end - start, tuple(group)))
            group, start, end = [reg], reg.address, reg_end
        if group:
            plans.append(ReadPlan(table, start, end - start, tuple(group)))
    return plans


def decode(words: list[int], reg: RegisterConfig) -> float:
    """The register's engineering value; ``ValueError`` if it is not a finite number in WellPulse's range."""
    from pymodbus.client import ModbusTcpClient

    data_type = ModbusTcpClient.DATATYPE[reg.type.upper()]
    raw = ModbusTcpClient.convert_from_registers(words, data_type, word_order=reg.word_order)
    if not isinstance(raw, int | float):
        raise ValueError(f"{reg.sensor}: decoded to {type(raw).__name__}")
    value = float(raw) * reg.scale + reg.offset
    if not math.isfinite(value) or abs(value) > MAX_ABS_VALUE:
        raise ValueError(f"{reg.sensor}: {value!r} is not a finite value within ±{MAX_ABS_VALUE:g}")
    return value


class PollFailed(Exception):
    """A poll that produced nothing: ``kind`` is the metric label (exception, timeout, connect)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class DevicePoller:
    """Polls one device until ``stop`` is set; `poll_once` is one poll (connect if needed, read, decode)."""

    def __init__(self, device: DeviceConfig, publisher: ReadingPublisher, metrics: GatewayMetrics,
                 stop: asyncio.Event) -> None:
        self.device = device
        self.publisher = publisher
        self.metrics = metrics
        self.stop = stop
        self.plans = plan_reads(device.registers)
        self.failures = 0  # failed polls in a row
        self._client: Any = None

    def _new_client(self) -> Any:
        from pymodbus.client import AsyncModbusTcpClient

        # retries=0 and no reconnect of its own: the backoff and the counting are ours.
        return AsyncModbusTcpClient(self.device.host, port=self.device.port, timeout=self.device.timeout_s,
                                    retries=0, reconnect_delay=0, reconnect_delay_max=0)

    async def _read(self, plan: ReadPlan) -> list[int]:
        from pymodbus.exceptions import ConnectionException, ModbusException

        read = (self._client.read_holding_registers if plan.table == "holding"
                else self._client.read_input_registers)
        try:
            response = await asyncio.wait_for(read(plan.start, count=plan.count, device_id=self.device.unit_id),
                                              timeout=self.device.timeout_s * 2)
        except (TimeoutError, ModbusException) as exc:
            self._drop_client()  # a late answer must not be taken for the next request's
            kind = "connect" if isinstance(exc, ConnectionException) else "timeout"
            raise PollFailed(kind, repr(exc)) from exc
        if response.isError():
            raise PollFailed("exception", f"{plan.table} {plan.start}+{plan.count}: exception code "
                                          f"{getattr(response, 'exception_code', '?')}")
        registers: list[int] = list(response.registers)
        if len(registers) < plan.count:
            raise PollFailed("exception", f"{plan.table} {plan.start}: {len(registers)} of {plan.count} registers")
        return registers

    def _drop_client(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    async def poll_once(self) -> Reading | None:
        """Read every register once; the reading (``None`` if no value decoded), or `PollFailed`."""
        if self._client is None or not self._client.connected:
            self._drop_client()
            self._client = self._new_client()
            try:
                connected = await asyncio.wait_for(self._client.connect(), timeout=self.device.timeout_s * 2)
            except (TimeoutError, OSError) as exc:
                connected = False
                detail = repr(exc)
            else:
                detail = "refused or unreachable"
            if not connected:
                self._drop_client()
                raise PollFailed("connect", f"{self.device.host}:{self.device.port}: {detail}")
        ts = datetime.now(UTC)
        ts = ts.replace(microsecond=ts.microsecond // 1000 * 1000)
        values: dict[str, float] = {}
        for plan in self.plans:
            words = await self._read(plan)
            for reg in plan.registers:
                offset = reg.address - plan.start
                try:
                    values[reg.sensor] = decode(words[offset:offset + reg.words], reg)
                except ValueError as exc:
                    self.metrics.errors.labels(self.device.equipment_id, "decode").inc()
                    log.debug("device %s: %s", self.device.equipment_id, exc)
        if not values:
            return None
        return Reading(equipment_id=self.device.equipment_id, ts=ts, values=values)

    def _failed(self, exc: PollFailed) -> None:
        device = self.device.equipment_id
        self.failures += 1
        self.metrics.errors.labels(device, exc.kind).inc()
        if self.failures == self.device.comms_loss_after:
            self.metrics.comms_lost.labels(device).set(1)
            self.metrics.comms_loss.labels(device).inc()
            log.warning("device %s (%s:%s unit %s): comms loss after %d failed polls, last: %s", device,
                        self.device.host, self.device.port, self.device.unit_id, self.failures, exc)
        elif self.failures < self.device.comms_loss_after:
            log.info("device %s: poll failed (%d in a row): %s", device, self.failures, exc)

    def _answered(self) -> None:
        if self.failures >= self.device.comms_loss_after:
            log.warning("device %s: answering again after %d failed polls", self.device.equipment_id, self.failures)
        self.failures = 0
        self.metrics.comms_lost.labels(self.device.equipment_id).set(0)
        self.metrics.polls.labels(self.device.equipment_id).inc()

    def next_delay(self) -> float:
        """The poll interval while answering; doubling per failure, up to ``backoff_max_s``, while not."""
        base = self.device.poll_interval_s
        if not self.failures:
            return base
        return float(min(base * 2.0 ** min(self.failures - 1, 30), max(base, self.device.backoff_max_s)))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.metrics.comms_lost.labels(self.device.equipment_id).set(0)
        try:
            while not self.stop.is_set():
                started = loop.time()
                try:
                    reading = await self.poll_once()
                except PollFailed as exc:
                    self._failed(exc)
                else:
                    self._answered()
                    if reading is not None:
                        await self.publisher.publish(reading)
                delay = self.next_delay() - (loop.time() - started)
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stop.wait(), timeout=delay)
        finally:
            self._drop_client()


async def run_modbus_gateway(config: ModbusConfig, nats_url: str, stop: asyncio.Event,
                             metrics: GatewayMetrics | None = None) -> GatewayMetrics:
    """Poll every configured device until ``stop`` is set; returns the metrics (the CLI prints a summary)."""
    metrics = metrics or GatewayMetrics()
    async with open_publisher(config.nats, nats_url, metrics, "wellpulse-gateway-modbus") as publisher:
        pollers = [DevicePoller(device, publisher, metrics, stop) for device in config.device]
        await asyncio.gather(*(p.run() for p in pollers))
    return metrics
