"""OPC UA gateway: subscribe to configured nodes and publish their value changes as readings.

One subscription (``publishing_interval_ms``) holds one monitored item per configured node, each with its sampling
interval and, when ``deadband > 0``, an absolute deadband filter (the server reports a change only once the value
moved that far). Changes are grouped into one reading per equipment and source timestamp.

Status codes are honoured: a Good value is published as is, an Uncertain one with quality ``uncertain`` (counted in
``values_not_good_total``). A Bad status carries no value from a compliant server (OPC UA Part 4 has the server null
it), so nothing is published and it is counted (``errors_total{kind="status_bad"}``); a controller that does send its
last number with a Bad status has it published with quality ``bad`` (stored, not learned). A value that is not a
number, or whose timestamp is outside what WellPulse accepts (clock skew), is counted (``kind="decode"`` /
``"clock_skew"``) and skipped. A node the server refuses is counted (``kind="subscribe"``).

When the session is lost the gateway reconnects with exponential backoff and subscribes again (counted as
``comms_loss_total`` with ``comms_lost`` 1 while it is away). Security: ``[security] policy``/``mode`` ``None``, or
e.g. ``Basic256Sha256`` + ``Sign`` or ``SignAndEncrypt`` with the client's certificate and key, and the server's
certificate pinned (`gateway.config.SecurityConfig`). A server that refuses the gateway (its certificate not
trusted, a policy or mode it does not offer) is retried with the same backoff, counted as
``errors_total{device="opcua", kind="security"}`` and logged with the status code's name; a certificate file that
cannot be read is a `ConfigError` at start.

>>> quality_of_status(0), quality_of_status(0x40000000), quality_of_status(0x80000000)
('good', 'uncertain', 'bad')
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.config import ConfigError, OpcUaConfig, OpcUaItem
from gateway.publish import GatewayMetrics, ReadingPublisher, open_publisher
from schema.telemetry import MAX_ABS_VALUE, Quality, Reading

__all__ = ["Change", "group_changes", "make_certificate", "quality_of_status", "run_opcua_gateway",
           "security_refusal"]

log = logging.getLogger(__name__)

ENDPOINT_LABEL = "opcua"  # the metric label for the connection itself (comms loss is the server's, not a node's)


def quality_of_status(status: int) -> Quality:
    """OPC UA's severity bits (the top two of a StatusCode): 00 Good, 01 Uncertain, 10/11 Bad."""
    severity = (status >> 30) & 0b11
    return "good" if severity == 0 else "uncertain" if severity == 1 else "bad"


@dataclass(frozen=True, slots=True)
class Change:
    """One data change as the gateway keeps it: which sensor, its value, quality and source time."""

    item: OpcUaItem
    value: float
    quality: Quality
    ts: datetime


def group_changes(changes: Iterable[Change]) -> list[Reading]:
    """One reading per equipment and timestamp, in arrival order; a later change of a sensor wins."""
    grouped: dict[tuple[str, datetime], tuple[dict[str, float], dict[str, Quality]]] = {}
    for c in changes:
        values, quality = grouped.setdefault((c.item.equipment_id, c.ts), ({}, {}))
        values[c.item.sensor] = c.value
        if c.quality != "good":
            quality[c.item.sensor] = c.quality
        else:
            quality.pop(c.item.sensor, None)
    return [Reading(equipment_id=eid, ts=ts, values=values, quality=quality)
            for (eid, ts), (values, quality) in grouped.items()]


class _Handler:
    """asyncua's subscription callback: turns notifications into `Change` s on a queue, never raises."""

    def __init__(self, items: dict[int, OpcUaItem], queue: asyncio.Queue[Change], metrics: GatewayMetrics) -> None:
        self.items = items
        self.queue = queue
        self.metrics = metrics

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        item = self.items.get(data.monitored_item.ClientHandle)
        if item is None:
            return
        dv = data.monitored_item.Value
        status = int(getattr(dv.StatusCode, "value", 0) if dv.StatusCode is not None else 0)
        quality = quality_of_status(status)
        device = item.equipment_id
        if isinstance(val, bool):
            val = float(val)
        if not isinstance(val, int | float):
            kind = "status_bad" if quality == "bad" else "decode"
            self.metrics.errors.labels(device, kind).inc()
            return
        value = float(val) * item.scale + item.offset
        if not math.isfinite(value) or abs(value) > MAX_ABS_VALUE:
            self.metrics.errors.labels(device, "decode").inc()
            return
        ts = dv.SourceTimestamp or dv.ServerTimestamp or datetime.now(UTC)
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        ts = ts.replace(microsecond=ts.microsecond // 1000 * 1000)
        self.queue.put_nowait(Change(item, value, quality, ts))

    def status_change_notification(self, status: Any) -> None:
        log.warning("OPC UA subscription status changed: %s", status)


def _monitored_item_requests(config: OpcUaConfig) -> tuple[list[Any], dict[int, OpcUaItem]]:
    from asyncua import ua
    from asyncua.ua.attribute_ids import AttributeIds

    requests: list[Any] = []
    by_handle: dict[int, OpcUaItem] = {}
    for handle, item in enumerate(config.item, start=1):
        try:
            node_id = ua.NodeId.from_string(item.node_id)
        except Exception as exc:  # asyncua raises ValueError or UaStringParsingError
            raise ConfigError(f"item {item.equipment_id}/{item.sensor}: node_id {item.node_id!r}: {exc}") from None
        params = ua.MonitoringParameters()
        params.ClientHandle = handle
        interval = item.sampling_interval_ms
        params.SamplingInterval = config.sampling_interval_ms if interval is None else interval
        params.QueueSize = 10
        params.DiscardOldest = True
        if item.deadband > 0:
            params.Filter = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValue,
                                                DeadbandType=ua.DeadbandType.Absolute, DeadbandValue=item.deadband)
        request = ua.MonitoredItemCreateRequest()
        request.ItemToMonitor = ua.ReadValueId(NodeId=node_id, AttributeId=AttributeIds.Value)
        request.MonitoringMode = ua.MonitoringMode.Reporting
        request.RequestedParameters = params
        requests.append(request)
        by_handle[handle] = item
    return requests, by_handle


# Status codes of a server that refused the gateway's security (certificate, policy, mode, identity): a
# configuration to fix, counted apart (``errors_total{kind="security"}``) and logged by name.
SECURITY_REFUSALS = ("BadSecurity", "BadCertificate", "BadIdentityToken", "BadUserAccessDenied",
                     "BadNoValidCertificates")


def security_refusal(exc: BaseException) -> str | None:
    """The status code's name when ``exc`` (or what caused it) is a server's security refusal, else None.

    >>> from asyncua import ua
    >>> security_refusal(ua.UaStatusCodeError(ua.StatusCodes.BadCertificateUntrusted))
    'BadCertificateUntrusted'
    >>> security_refusal(ConnectionRefusedError()) is None
    True
    """
    seen: BaseException | None = exc
    while seen is not None:
        code = getattr(seen, "code", None)
        if isinstance(code, int):
            from asyncua import ua

            name = ua.StatusCode(ua.UInt32(code)).name
            if name.startswith(SECURITY_REFUSALS):
                return str(name)
        if str(seen).startswith("no matching endpoint"):  # `_check_endpoint_offered`'s, which says what is offered
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def check_security_files(config: OpcUaConfig) -> None:
    """`ConfigError` naming the setting when a certificate or key file cannot be read: a mistake to fix, not a
    connection to retry."""
    sec = config.security
    for name in ("certificate", "private_key", "server_certificate"):
        path = getattr(sec, name)
        if path is not None and not path.is_file():
            raise ConfigError(f"security.{name}: {path} is not a readable file")


def certificate_uri(path: Path) -> str | None:
    """The URI in a certificate's subjectAltName (PEM or DER), which OPC UA servers compare with the client's
    ApplicationUri; None if it has none."""
    from cryptography import x509

    data = path.read_bytes()
    cert = x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def make_certificate(certificate: Path, private_key: Path, application_uri: str, host: str, *,
                     server: bool = False, days: int = 365) -> None:
    """Write a self-signed OPC UA application certificate (DER, with ``application_uri`` and ``host`` in its
    subjectAltName, the key usages Part 6 asks for) and its RSA 2048 private key (PEM, unencrypted: protect the
    file). ``server``: a server's certificate (serverAuth) instead of a client's (clientAuth). The server's
    administrator then trusts the client's certificate, and the gateway pins the server's."""
    from asyncua.crypto.cert_gen import (
        dump_private_key_as_pem,
        generate_private_key,
        generate_self_signed_app_certificate,
    )
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = generate_private_key()
    use = [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
    names = dict.fromkeys([host, socket.gethostname()])  # asyncua warns when its own host name is missing
    cert = generate_self_signed_app_certificate(
        key, application_uri, {"organizationName": "WellPulse"},
        [x509.UniformResourceIdentifier(application_uri), *(x509.DNSName(n) for n in names)], extended=use,
        days=days)
    fd = os.open(private_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never readable by others
    with os.fdopen(fd, "wb") as out:
        out.write(dump_private_key_as_pem(key))
    certificate.write_bytes(cert.public_bytes(Encoding.DER))


async def _check_endpoint_offered(client: Any, policy: str, mode: str) -> None:
    """Raise a clear ``no matching endpoint`` error (a security refusal) when the server offers no endpoint with
    this policy and mode: asyncua's server only drops such a channel, which would read as a network fault."""
    from asyncua.ua.uaerrors import UaError

    endpoints = await client.connect_and_get_server_endpoints()
    offered = sorted({f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]}/{e.SecurityMode.name.rstrip('_')}"
                      for e in endpoints})
    if f"{policy}/{mode}" not in offered:
        raise UaError(f"no matching endpoint for {policy}/{mode}; the server offers {', '.join(offered)}")


async def _client(config: OpcUaConfig) -> Any:
    from asyncua import ua
    from asyncua.client.client import Client
    from asyncua.crypto import security_policies

    client = Client(config.endpoint, timeout=config.timeout_s, watchdog_intervall=min(config.timeout_s, 1.0))
    if config.username:
        client.set_user(config.username)
    if config.password:
        client.set_password(config.password.get_secret_value())
    sec = config.security
    await _check_endpoint_offered(client, sec.policy, sec.mode)
    if sec.policy != "None" and sec.certificate is not None and sec.private_key is not None:
        uri = sec.application_uri or certificate_uri(sec.certificate)
        if uri:
            client.application_uri = uri
        password = sec.private_key_password.get_secret_value() if sec.private_key_password else None
        # Without a pinned server certificate this first reads the server's endpoints over an unsecured channel.
        await client.set_security(
            getattr(security_policies, f"SecurityPolicy{sec.policy}"), str(sec.certificate), str(sec.private_key),
            password, str(sec.server_certificate) if sec.server_certificate else None,
            getattr(ua.MessageSecurityMode, sec.mode))
    return client


class OpcUaGateway:
    """Connect, subscribe, forward changes until the session is lost; then back off and start again."""

    def __init__(self, config: OpcUaConfig, publisher: ReadingPublisher, metrics: GatewayMetrics,
                 stop: asyncio.Event) -> None:
        self.config = config
        self.publisher = publisher
        self.metrics = metrics
        self.stop = stop
        check_security_files(config)
        self.requests, self.items = _monitored_item_requests(config)
        self.queue: asyncio.Queue[Change] = asyncio.Queue(maxsize=100_000)
        self.failures = 0
        self.sessions = 0  # sessions that subscribed (the first, then one per reconnect)
        self.last_refusal: str | None = None  # the status of the server's last security refusal

    async def _session(self) -> None:
        """One connection: subscribe every item, then wait for the loss of the session or for stop."""
        client = await _client(self.config)
        lost = asyncio.Event()

        async def on_lost(exc: Exception) -> None:
            log.warning("OPC UA connection to %s lost: %r", self.config.endpoint, exc)
            lost.set()

        client.connection_lost_callback = on_lost
        await asyncio.wait_for(client.connect(), timeout=self.config.timeout_s * 2)
        try:
            handler = _Handler(self.items, self.queue, self.metrics)
            sub = await client.create_subscription(self.config.publishing_interval_ms, handler)
            results = await sub.create_monitored_items(self.requests)
            for request, result in zip(self.requests, results, strict=True):
                if not isinstance(result, int):
                    item = self.items[request.RequestedParameters.ClientHandle]
                    self.metrics.errors.labels(item.equipment_id, "subscribe").inc()
                    log.warning("node %s refused: %s", item.node_id, result)
            self._connected()
            stop_wait = asyncio.create_task(self.stop.wait())
            lost_wait = asyncio.create_task(lost.wait())
            await asyncio.wait({stop_wait, lost_wait}, return_when=asyncio.FIRST_COMPLETED)
            for task in (stop_wait, lost_wait):
                task.cancel()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), timeout=self.config.timeout_s)

    def _connected(self) -> None:
        if self.failures:
            log.warning("OPC UA %s: subscribed again after %d failed attempts", self.config.endpoint, self.failures)
        self.failures = 0
        self.sessions += 1
        self.metrics.comms_lost.labels(ENDPOINT_LABEL).set(0)
        self.metrics.polls.labels(ENDPOINT_LABEL).inc()

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        refusal = security_refusal(exc)
        self.metrics.errors.labels(ENDPOINT_LABEL, "security" if refusal else "connect").inc()
        if self.failures == 1:
            self.metrics.comms_lost.labels(ENDPOINT_LABEL).set(1)
            self.metrics.comms_loss.labels(ENDPOINT_LABEL).inc()
        if refusal:
            self.last_refusal = refusal
            sec = self.config.security
            log.warning("OPC UA %s refused the gateway's security (%s, policy %s, mode %s): check the certificate "
                        "is trusted by the server and the policy and mode are ones it offers; %d attempts in a row",
                        self.config.endpoint, refusal, sec.policy, sec.mode, self.failures)
            return
        log.info("OPC UA %s: %d failed attempts in a row: %r", self.config.endpoint, self.failures, exc)

    async def connect_loop(self) -> None:
        while not self.stop.is_set():
            try:
                await self._session()
            except ConfigError:
                raise
            except Exception as exc:  # refused, timed out, session closed: retried, never fatal
                self._failed(exc)
            else:
                if self.stop.is_set():
                    return
                self._failed(ConnectionError("session lost"))
            delay = min(0.5 * 2.0 ** min(self.failures - 1, 30), self.config.backoff_max_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), timeout=delay)

    async def forward(self) -> None:
        """Publish what the handler queued: everything waiting at once, grouped by equipment and instant."""
        while True:
            changes = [await self.queue.get()]
            while not self.queue.empty():
                changes.append(self.queue.get_nowait())
            for reading in self._readings(changes):
                await self.publisher.publish(reading)
            for _ in changes:
                self.queue.task_done()

    def _readings(self, changes: list[Change]) -> list[Reading]:
        try:
            return group_changes(changes)
        except ValueError:  # a timestamp WellPulse would refuse: find it, count it, keep the rest
            kept = []
            for change in changes:
                try:
                    group_changes([change])
                except ValueError:
                    self.metrics.errors.labels(change.item.equipment_id, "clock_skew").inc()
                else:
                    kept.append(change)
            return group_changes(kept)


async def run_opcua_gateway(config: OpcUaConfig, nats_url: str, stop: asyncio.Event,
                            metrics: GatewayMetrics | None = None) -> GatewayMetrics:
    """Subscribe and forward until ``stop`` is set; returns the metrics."""
    metrics = metrics or GatewayMetrics()
    async with open_publisher(config.nats, nats_url, metrics, "wellpulse-gateway-opcua") as publisher:
        gateway = OpcUaGateway(config, publisher, metrics, stop)
        forwarder = asyncio.create_task(gateway.forward())
        try:
            await gateway.connect_loop()
            with contextlib.suppress(TimeoutError):  # what arrived before stop still goes out
                await asyncio.wait_for(gateway.queue.join(), timeout=config.nats.ack_timeout_s * 2)
        finally:
            forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forwarder
    return metrics
