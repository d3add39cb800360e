"""Sending one notice through one channel: SMTP, a signed webhook, Slack's and Teams' incoming webhooks, SMS
through a provider (`SmsProvider`; the default POSTs to the provider's HTTP endpoint).

An adapter like the rest of `store`: it knows the wire formats and nothing of deliveries, retries or tenants.
`send` never raises for the channel's failure: it answers a `SendResult` whose ``error`` is safe to store and
show (a write-only setting that appears in an error text is replaced by ``[redacted]``). ``permanent`` marks
an answer that a retry cannot change (an HTTP 4xx other than 408/429, an SMTP 5xx).

A webhook body is signed so its receiver can verify it and refuse replays::

    X-WellPulse-Timestamp: <unix seconds>
    X-WellPulse-Signature: sha256=<hex HMAC-SHA256 under the channel's secret of "<timestamp>.<body>">
    X-WellPulse-Delivery: <delivery id, the same for every retry of one delivery>
"""

import asyncio
import errno
import hashlib
import hmac
import ipaddress
import json
import smtplib
import socket
import ssl
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

__all__ = ["SMS_PROVIDERS", "GuardedResolver", "HttpSmsProvider", "Notice", "SendResult", "SmsProvider",
           "blocked_address", "destination_refusal", "http_session", "send", "sms_text", "webhook_signature"]

SIGNATURE_HEADER = "X-WellPulse-Signature"
TIMESTAMP_HEADER = "X-WellPulse-Timestamp"
DELIVERY_HEADER = "X-WellPulse-Delivery"
_COLOURS = {"info": "Accent", "warning": "Warning", "critical": "Attention"}


PRIVATE_HINT = "set WELLPULSE_NOTIFY_ALLOW_PRIVATE_NETWORKS=true to allow it"


def blocked_address(address: str) -> bool:
    """Whether an IP address is one a tenant's channel must not reach: anything not globally routable (loopback,
    private, link-local, where the cloud metadata service is, carrier-grade NAT, reserved) or multicast.

    >>> [blocked_address(a) for a in ("127.0.0.1", "10.1.2.3", "169.254.169.254", "::ffff:192.168.1.1", "::1",
    ...                               "fd00:ec2::254", "100.64.0.1", "93.184.215.14", "2606:4700::1111")]
    [True, True, True, True, True, True, True, False, False]
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def destination_refusal(url: str) -> str | None:
    """Why ``url`` may not be a channel's destination when private networks are not allowed (None: it may be, as
    far as its text says; a name is checked again when it is resolved, `GuardedResolver`).

    >>> destination_refusal("https://hooks.example.com/x") is None
    True
    >>> destination_refusal("http://[::1]:8080/hook")
    'the address ::1 is loopback, private, link-local or otherwise not public'
    >>> destination_refusal("http://metadata.localhost/")
    'the host metadata.localhost is this machine'
    """
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return f"the host {host} is this machine"
    try:
        blocked = blocked_address(host)
    except ValueError:
        return None  # a name
    return f"the address {host} is loopback, private, link-local or otherwise not public" if blocked else None


class GuardedResolver(AbstractResolver):
    """Resolves as aiohttp does, then keeps only public addresses: a name that resolves to a private one (or is
    re-pointed there after the channel was checked) is refused at connect time, and the connection goes to an
    address that was checked."""

    def __init__(self) -> None:
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET,
                      ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        public = [r for r in found if not blocked_address(r["host"])]
        if not public:
            # errno and strerror: aiohttp shows the strerror of what the resolver raised, and nothing else.
            raise OSError(errno.EACCES, f"{host} resolves only to loopback, private or link-local addresses"
                          f" ({PRIVATE_HINT})")
        return public

    async def close(self) -> None:
        await self._inner.close()


def http_session(*, allow_private_networks: bool) -> aiohttp.ClientSession:
    """The session channels post through: with the `GuardedResolver` unless private networks are allowed."""
    if allow_private_networks:
        return aiohttp.ClientSession()
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=GuardedResolver()))


@dataclass(frozen=True)
class Notice:
    """What one message says: an alert event (or a channel test)."""

    delivery_id: str
    tenant_id: str
    alert_id: int
    event_seq: int
    event_kind: str
    equipment_id: str
    rule_id: str
    severity: str
    state: str
    message: str
    occurred_at: datetime
    test: bool = False
    # A grouped message (a policy route's group, `notify.routing`): every event it lists, oldest first, each with
    # the fields above; the fields above are then the newest event's and ``message`` lists them all.
    alerts: tuple[Mapping[str, Any], ...] = ()
    group: str = ""
    # The signed single-use link that acknowledges the alert (`notify.acklinks`); a webhook receiver may POST
    # to it, or to /v1/ack-links/<ack_token> itself. Empty when none is configured.
    ack_token: str = ""
    ack_url: str = ""

    @property
    def title(self) -> str:
        if len(self.alerts) > 1:
            where = f" ({self.group})" if self.group else ""
            return f"[{self.severity.upper()}] {len(self.alerts)} alerts{where}"
        what = "test notification" if self.test else f"alert {self.event_kind}"
        return f"[{self.severity.upper()}] {what}: {self.rule_id} on {self.equipment_id}"

    def text(self) -> str:
        return (f"{self.message}\n\nEquipment: {self.equipment_id}\nRule: {self.rule_id}\nSeverity: {self.severity}"
                f"\nState: {self.state}\nAlert: {self.alert_id} (event {self.event_seq})"
                f"\nAt: {self.occurred_at.isoformat()}\nTenant: {self.tenant_id}"
                + (f"\n\nAcknowledge: {self.ack_url}" if self.ack_url else ""))

    def document(self) -> dict[str, Any]:
        data = asdict(self)
        data["occurred_at"] = self.occurred_at.isoformat()
        data["alerts"] = [dict(a) for a in self.alerts]
        return {"type": "test" if self.test else f"alert.{self.event_kind}", **data}


@dataclass(frozen=True)
class SendResult:
    ok: bool
    latency_ms: float
    response_code: int | None = None
    error: str | None = None
    permanent: bool = False


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` over ``b"<timestamp>." + body``.

    >>> webhook_signature("s" * 16, 1700000000, b'{"a":1}')[:15]
    'sha256=b7262996'
    """
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class SmsProvider(ABC):
    """How a text message reaches a provider; one implementation per ``provider`` of an SMS channel's config."""

    @abstractmethod
    async def send(self, session: aiohttp.ClientSession, config: Mapping[str, Any], secrets: Mapping[str, str],
                   number: str, text: str, notice: Notice, timeout: float, started: float) -> SendResult:
        """Send ``text`` to ``number``; never raises for the provider's failure."""


class HttpSmsProvider(SmsProvider):
    """The default: a JSON POST ``{"to", "from", "text", "delivery_id"}`` to the provider's ``url``, with
    ``Authorization: Bearer <token>`` when the channel has one."""

    async def send(self, session: aiohttp.ClientSession, config: Mapping[str, Any], secrets: Mapping[str, str],
                   number: str, text: str, notice: Notice, timeout: float, started: float) -> SendResult:
        headers = {"Content-Type": "application/json", DELIVERY_HEADER: notice.delivery_id,
                   "User-Agent": "WellPulse-Notifier/1"}
        if secrets.get("token"):
            headers["Authorization"] = f"Bearer {secrets['token']}"
        body = json.dumps({"to": number, "from": config.get("from_number"), "text": text,
                           "delivery_id": notice.delivery_id}).encode()
        return await _post(session, str(config["url"]), body, headers, timeout, started, secrets)


SMS_PROVIDERS: dict[str, SmsProvider] = {"http": HttpSmsProvider()}
SMS_MAX_CHARS = 480  # three concatenated segments


def sms_text(notice: Notice) -> str:
    """A notice in a few lines: title, message, the acknowledge link."""
    text = f"{notice.title}\n{notice.message}"[: SMS_MAX_CHARS - len(notice.ack_url) - 1]
    return f"{text}\n{notice.ack_url}" if notice.ack_url else text


async def send(kind: str, config: Mapping[str, Any], secrets: Mapping[str, str], notice: Notice, *,
               timeout: float, allow_private_networks: bool, session: aiohttp.ClientSession | None = None,
               recipient: str | None = None) -> SendResult:
    """Send ``notice`` through a channel of ``kind`` with its public ``config`` and opened ``secrets``;
    ``recipient``: to that one address (email) or number (sms) instead of the channel's ``to``. Unless
    ``allow_private_networks``, an HTTP destination must be public: its URL here, its resolved addresses in the
    session (`http_session`; one made here when ``session`` is None)."""
    started = time.perf_counter()
    if recipient is not None:
        config = {**config, "to": [recipient]}
    if kind != "email" and not allow_private_networks:
        url = str(config.get("url") if kind in ("webhook", "sms") else secrets.get("url", ""))
        refusal = destination_refusal(url)
        if refusal is not None:
            return SendResult(False, _ms(started), None, _redact(f"refused: {refusal} ({PRIVATE_HINT})", secrets),
                              permanent=True)
    if session is None and kind != "email":
        async with http_session(allow_private_networks=allow_private_networks) as own:
            return await send(kind, config, secrets, notice, timeout=timeout, session=own,
                              allow_private_networks=allow_private_networks)
    try:
        if kind == "email":
            code = await asyncio.to_thread(_send_mail, config, secrets.get("password"), notice, timeout)
            return SendResult(True, _ms(started), code)
        if kind == "sms":
            return await _send_sms(session, config, secrets, notice, timeout, started)
        url, body, headers = _http_request(kind, config, secrets, notice)
        return await _post(session, url, body, headers, timeout, started, secrets)
    except smtplib.SMTPResponseException as exc:
        return SendResult(False, _ms(started), exc.smtp_code, _redact(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}",
                                                                      secrets), permanent=exc.smtp_code >= 500)
    except KeyError as exc:  # a setting the kind needs is not stored: no retry can change that
        return SendResult(False, _ms(started), None, f"the channel lacks the setting {exc}", permanent=True)
    except (OSError, smtplib.SMTPException, aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return SendResult(False, _ms(started), None, _redact(f"{type(exc).__name__}: {exc}", secrets))


async def _send_sms(session: aiohttp.ClientSession | None, config: Mapping[str, Any], secrets: Mapping[str, str],
                    notice: Notice, timeout: float, started: float) -> SendResult:
    if session is None:
        async with aiohttp.ClientSession() as own:
            return await _send_sms(own, config, secrets, notice, timeout, started)
    numbers = list(config.get("to") or [])
    if not numbers:
        return SendResult(False, _ms(started), None, "the SMS channel has no number to send to", permanent=True)
    provider = SMS_PROVIDERS[str(config.get("provider", "http"))]
    result = SendResult(True, 0.0)
    for number in numbers:  # one message per number; the first failure is the delivery's
        result = await provider.send(session, config, secrets, number, sms_text(notice), notice, timeout, started)
        if not result.ok:
            return result
    return result


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _redact(text: str, secrets: Mapping[str, str]) -> str:
    for value in secrets.values():
        if value:
            text = text.replace(value, "[redacted]")
    return text[:2000]


def _http_request(kind: str, config: Mapping[str, Any], secrets: Mapping[str, str],
                  notice: Notice) -> tuple[str, bytes, dict[str, str]]:
    headers = {"Content-Type": "application/json", DELIVERY_HEADER: notice.delivery_id,
               "User-Agent": "WellPulse-Notifier/1"}
    if kind == "webhook":
        body = json.dumps(notice.document(), separators=(",", ":")).encode()
        timestamp = int(time.time())
        headers[TIMESTAMP_HEADER] = str(timestamp)
        headers[SIGNATURE_HEADER] = webhook_signature(secrets["secret"], timestamp, body)
        return str(config["url"]), body, headers
    document = _slack_message(notice) if kind == "slack" else _teams_message(notice)
    return secrets["url"], json.dumps(document).encode(), headers


async def _post(session: aiohttp.ClientSession | None, url: str, body: bytes, headers: dict[str, str],
                timeout: float, started: float, secrets: Mapping[str, str]) -> SendResult:
    if session is None:
        async with aiohttp.ClientSession() as own:
            return await _post(own, url, body, headers, timeout, started, secrets)
    async with session.post(url, data=body, headers=headers, allow_redirects=False,
                            timeout=aiohttp.ClientTimeout(total=timeout)) as response:
        text = (await response.text(errors="replace"))[:300]
        status = response.status
    if 200 <= status < 300:
        return SendResult(True, _ms(started), status)
    permanent = 400 <= status < 500 and status not in (408, 429)
    return SendResult(False, _ms(started), status, _redact(f"HTTP {status}: {text}", secrets), permanent=permanent)


def _slack_message(notice: Notice) -> dict[str, Any]:
    """Slack's incoming-webhook format: ``text`` (the notification's fallback) and Block Kit ``blocks``."""
    fields = [{"type": "mrkdwn", "text": f"*{name}*\n{value}"} for name, value in (
        ("Equipment", notice.equipment_id), ("Rule", notice.rule_id), ("Severity", notice.severity),
        ("State", notice.state))]
    return {"text": notice.title, "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": notice.title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": notice.message[:2900]}, "fields": fields},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": (
            f"alert {notice.alert_id} · event {notice.event_seq} · {notice.occurred_at.isoformat()}"
            + (f" · <{notice.ack_url}|acknowledge>" if notice.ack_url else ""))}]},
    ]}


def _teams_message(notice: Notice) -> dict[str, Any]:
    """Teams' incoming-webhook format (Workflows and connectors alike): a message with one Adaptive Card."""
    facts = [{"title": name, "value": value} for name, value in (
        ("Equipment", notice.equipment_id), ("Rule", notice.rule_id), ("Severity", notice.severity),
        ("State", notice.state), ("Alert", f"{notice.alert_id} (event {notice.event_seq})"),
        ("At", notice.occurred_at.isoformat()))]
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
            "version": "1.4", "body": [
                {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": True, "text": notice.title,
                 "color": _COLOURS.get(notice.severity, "Default")},
                {"type": "TextBlock", "wrap": True, "text": notice.message},
                {"type": "FactSet", "facts": facts}]}
    if notice.ack_url:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Acknowledge", "url": notice.ack_url}]
    return {"type": "message", "summary": notice.title, "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}


def _send_mail(config: Mapping[str, Any], password: str | None, notice: Notice, timeout: float) -> int:
    """Blocking (run in a thread): one message to every address of ``to``; the SMTP reply code."""
    message = EmailMessage()
    message["Subject"] = notice.title
    message["From"] = config["from_address"]
    message["To"] = ", ".join(config["to"])
    message["Message-ID"] = f"<{notice.delivery_id}@wellpulse>"  # the same on a retry: mail clients dedupe
    message.set_content(notice.text())
    host, port, security = config["smtp_host"], int(config["smtp_port"]), config["security"]
    context = ssl.create_default_context()
    smtp = (smtplib.SMTP_SSL(host, port, timeout=timeout, context=context) if security == "tls"
            else smtplib.SMTP(host, port, timeout=timeout))
    with smtp:
        if security == "starttls":
            smtp.starttls(context=context)
        if config.get("username"):
            smtp.login(config["username"], password or "")
        refused = smtp.send_message(message)
    if refused:
        raise smtplib.SMTPRecipientsRefused(refused)
    return 250
