"""An OPC UA server with a node tree of equipment and sensors: for tests and ``wellpulse simulate --opcua-server``.

Each equipment is an object under Objects, each sensor a Double variable with the string node id
``ns=<ns>;s=<equipment>.<sensor>`` (`node_id`). `SimOpcUaServer.set_value` writes a value with a status code
(Good, Uncertain, Bad), as a controller reports a sensor it doubts or has lost. Security: None by default; with a
``certificate`` and ``private_key`` it offers Basic256Sha256 SignAndEncrypt only, and with ``trusted`` (a folder of
client certificates) it accepts only those clients (`BadCertificateUntrusted` for the others), as a locked-down
controller does.

>>> node_id(2, "PJ-0001", "tubing_psi")
'ns=2;s=PJ-0001.tubing_psi'
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sim.fleet import EquipmentSpec

__all__ = ["NAMESPACE_URI", "SimOpcUaServer", "node_id", "opcua_gateway_config", "serve_fleet_opcua"]

NAMESPACE_URI = "urn:wellpulse:sim"
STATUS = {"good": 0, "uncertain": 0x40000000, "bad": 0x80000000}  # Good, Uncertain, Bad (generic codes)


def node_id(namespace: int, equipment_id: str, sensor: str) -> str:
    return f"ns={namespace};s={equipment_id}.{sensor}"


class SimOpcUaServer:
    """``equipment``: ``{equipment id: [sensor, ...]}``, served at ``opc.tcp://host:port/wellpulse/``."""

    def __init__(self, equipment: dict[str, list[str]], *, host: str = "127.0.0.1", port: int = 4840,
                 certificate: Path | None = None, private_key: Path | None = None,
                 trusted: Path | None = None) -> None:
        self.equipment = equipment
        self.host = host
        self.port = port
        self.certificate = certificate
        self.private_key = private_key
        self.trusted = trusted
        self.namespace = 0
        self._server: Any = None

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/wellpulse/"

    async def start(self) -> SimOpcUaServer:
        from asyncua import Server, ua

        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("WellPulse simulated field")
        if self.certificate is None or self.private_key is None:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        else:
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
            await server.load_certificate(str(self.certificate))
            await server.load_private_key(str(self.private_key))
            if self.trusted is not None:
                from asyncua.crypto.truststore import TrustStore
                from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

                store = TrustStore([self.trusted], [])
                await store.load()
                server.set_certificate_validator(CertificateValidator(
                    CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT, store))
        self.namespace = await server.register_namespace(NAMESPACE_URI)
        for equipment_id, sensors in self.equipment.items():
            obj = await server.nodes.objects.add_object(ua.NodeId(equipment_id, self.namespace), equipment_id)
            for sensor in sensors:
                var = await obj.add_variable(ua.NodeId(f"{equipment_id}.{sensor}", self.namespace), sensor, 0.0,
                                             varianttype=ua.VariantType.Double)
                await var.set_writable()
        await server.start()
        self._server = server
        return self

    async def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.stop()
            self._server = None

    def node(self, equipment_id: str, sensor: str) -> str:
        return node_id(self.namespace, equipment_id, sensor)

    async def set_value(self, equipment_id: str, sensor: str, value: float | None, *, quality: str = "good",
                        ts: datetime | None = None) -> None:
        """Write ``value`` with a Good, Uncertain or Bad status (``None``: a Bad status without a value)."""
        from asyncua import ua

        variant = ua.Variant(value, ua.VariantType.Double) if value is not None else ua.Variant()
        stamp = ts or datetime.now(UTC)
        dv = ua.DataValue(variant, StatusCode=ua.StatusCode(STATUS[quality]), SourceTimestamp=stamp,
                          ServerTimestamp=stamp)
        await self._server.write_attribute_value(ua.NodeId(f"{equipment_id}.{sensor}", self.namespace), dv)


def _fleet_equipment(fleet: Sequence[EquipmentSpec]) -> dict[str, list[str]]:
    return {spec.equipment_id: [s.name for s in spec.sensors] for spec in fleet}


def opcua_gateway_config(tenant: str, endpoint: str, fleet: Sequence[EquipmentSpec], namespace: int = 2) -> str:
    """The ``wellpulse gateway opcua`` TOML that subscribes to `serve_fleet_opcua`'s nodes."""
    lines = [f'endpoint = "{endpoint}"', "", "[nats]", f'tenant = "{tenant}"', ""]
    for equipment_id, sensors in _fleet_equipment(fleet).items():
        for sensor in sensors:
            lines += ["[[item]]", f'node_id = "{node_id(namespace, equipment_id, sensor)}"',
                      f'equipment_id = "{equipment_id}"', f'sensor = "{sensor}"', ""]
    return "\n".join(lines)


async def serve_fleet_opcua(fleet: Sequence[EquipmentSpec], stop: asyncio.Event, *, host: str = "127.0.0.1",
                            port: int = 4840, interval_s: float = 1.0, seed: int = 0) -> None:
    """Serve the demo fleet's live values (`sim.feed.FeedSimulator`, faults included) until ``stop``."""
    from sim.faults import FaultSchedule
    from sim.feed import FeedSimulator

    server = await SimOpcUaServer(_fleet_equipment(fleet), host=host, port=port).start()
    sim = FeedSimulator(list(fleet), seed=seed, schedule=FaultSchedule(60.0, seed=seed))
    try:
        while not stop.is_set():
            for body in sim.next_snapshots(datetime.now(UTC)):
                for snap in body.get("readings", [body]):
                    for sensor, value in snap["values"].items():
                        with contextlib.suppress(Exception):  # a sensor the tree lacks
                            await server.set_value(snap["equipment_id"], sensor, float(value))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
    finally:
        await server.stop()
