"""A local SMTP sink for the demo (`wellpulse up --demo`): accepts every message on the loopback and writes it
to ``<folder>/<n>.eml``, so a newcomer can see a notification arrive without a mail server."""

import logging
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from store.embedded import free_port

__all__ = ["MailSink"]


class _Writer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.count += 1
        path = self.folder / f"{self.count:06d}.eml"
        content = envelope.original_content or b""
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return "250 OK"


class MailSink:
    """The sink on ``127.0.0.1:<port>`` (a free one unless given); `start` creates ``folder``."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.writer = _Writer(folder)
        self._controller = Controller(self.writer, hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every connection at INFO
        self.folder.mkdir(parents=True, exist_ok=True)
        self.writer.count = len(list(self.folder.glob("*.eml")))
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()
