"""Real receivers for the notification tests: an HTTP endpoint (aiohttp) that webhook, Slack and Teams channels
post to, and an SMTP server (aiosmtpd) with password authentication. Each listens on a free port of its own."""

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from store.embedded import free_port

SMTP_USER = "notifier"
SMTP_PASSWORD = "smtp-password-for-tests"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """Answers every POST with ``status`` and keeps it; `stop` closes the port (connections are refused) and
    `start` opens the same port again."""

    port: int = field(default_factory=free_port)
    status: int = 200
    requests: list[Received] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append(Received(request.path, dict(request.headers), await request.read()))
        return web.Response(status=self.status, text="ok" if self.status < 300 else "refused")


def signature_valid(secret: str, received: Received, *, max_age: float = 300.0) -> bool:
    """What a receiver checks, written from the documented scheme (not with WellPulse's code): HMAC-SHA256 of
    "<timestamp>.<body>" under the shared secret, and a timestamp recent enough that a replay is refused."""
    timestamp = received.headers["X-WellPulse-Timestamp"]
    expected = "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + received.body,
                                    hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(timestamp)) <= max_age
    return fresh and hmac.compare_digest(expected, received.headers["X-WellPulse-Signature"])


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Envelope] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 OK"


def _authenticate(server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode()
          and auth_data.password == SMTP_PASSWORD.encode())
    return AuthResult(success=ok)


class SmtpReceiver:
    """An SMTP server that asks for a login (over plain SMTP: the test network is the loopback) and keeps what
    it accepts."""

    def __init__(self) -> None:
        self.mailbox = _Mailbox()
        self.port = free_port()
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port,
                                     authenticator=_authenticate, auth_require_tls=False, auth_required=True)

    @property
    def messages(self) -> list[Envelope]:
        return self.mailbox.messages

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()
