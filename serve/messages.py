"""Messages to people (invitations, password resets) through a pluggable sender.

The default writes the message to the log, which is what a laptop or a first deployment
has; ``file:PATH`` appends one JSON line per message (an outbox a mail relay or a test
can read); ``module:callable`` names a factory of your own that returns a `MessageSender`.
"""

import asyncio
import importlib
import json
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

log = logging.getLogger("wellpulse.messages")


class MessageSender(Protocol):
    async def send(self, *, to: str, subject: str, body: str) -> None: ...


# Reset and invitation tokens (serve/security.py TOKEN_KINDS): whoever reads the log must not get them.
_TOKEN = re.compile(r"wp[a-z]_[a-z0-9-]+_[A-Za-z0-9_-]+")


class LogSender:
    """Writes that a message went out, with its one-time links redacted: a log is read by more people than
    the mailbox is. Use ``file:PATH`` (or a real sender) to deliver them."""

    async def send(self, *, to: str, subject: str, body: str) -> None:
        log.info("message to %s: %s\n%s", to, subject,
                 _TOKEN.sub("[one-time token redacted; set WELLPULSE_MESSAGE_SENDER=file:PATH to deliver it]", body))


class FileSender:
    def __init__(self, path: Path) -> None:
        self.path = path

    async def send(self, *, to: str, subject: str, body: str) -> None:
        line = json.dumps({"to": to, "subject": subject, "body": body, "at": datetime.now(UTC).isoformat()})
        await asyncio.to_thread(self._append, line)

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(line + "\n")


def build_sender(spec: str) -> MessageSender:
    if spec == "log":
        return LogSender()
    if spec.startswith("file:"):
        return FileSender(Path(spec.removeprefix("file:")))
    module, _, name = spec.partition(":")
    if not name:
        raise ValueError(f"message_sender must be 'log', 'file:PATH' or 'module:factory', got {spec!r}")
    sender: MessageSender = getattr(importlib.import_module(module), name)()  # the factory the setting names
    return sender
