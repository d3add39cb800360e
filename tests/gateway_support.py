"""What the gateway tests share: a collector of what reaches NATS, and a TCP link that can be cut."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats
import orjson

from sim.publish import ensure_telemetry_stream
from store.embedded import free_port


def feed_fixtures(tenant: str) -> tuple[Any, Any]:
    """Module-scoped ``server`` (a NATS with a feed user for ``tenant``) and ``received`` (`collected` on it)
    fixtures: ``server, received = feed_fixtures(TENANT)`` at a test module's top level."""
    import pytest

    from store.embedded import EmbeddedNats

    @pytest.fixture(scope="module")
    def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
        with EmbeddedNats(tmp_path_factory.mktemp(f"nats-{tenant}"), tenants=[tenant]) as nats_server:
            yield nats_server

    @pytest.fixture(scope="module")
    async def received(server: EmbeddedNats) -> AsyncIterator[dict[str, list[dict[str, Any]]]]:
        async with collected(server.url, tenant) as got:
            yield got

    return server, received


@contextlib.asynccontextmanager
async def collected(app_url: str, tenant: str) -> AsyncIterator[dict[str, list[dict[str, Any]]]]:
    """Every message published to ``tele.<tenant>.>`` (body and ``Nats-Msg-Id``), by equipment, as the app's
    connection sees it; the TELEMETRY stream is made first, so feed users' publishes are acknowledged."""
    nc = await nats.connect(app_url)
    await ensure_telemetry_stream(nc.jetstream())
    got: dict[str, list[dict[str, Any]]] = {}

    async def on_msg(msg: Any) -> None:
        got.setdefault(msg.subject.split(".")[-1], []).append(
            {"body": orjson.loads(msg.data), "id": (msg.headers or {}).get("Nats-Msg-Id")})

    await nc.subscribe(f"tele.{tenant}.>", cb=on_msg)
    try:
        yield got
    finally:
        await nc.close()


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``target_port``. `cut` closes every open connection and refuses new ones
    (as a dead link would) until `restore`; `stalled` keeps connections open but forwards nothing (a device that
    accepts and never answers)."""

    def __init__(self, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.port = free_port()
        self.up = True
        self.stalled = False
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> "TcpProxy":
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        return self

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                if self.stalled:
                    continue
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.close()
            return
        self.connections += 1
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}

    def cut(self) -> None:
        self.up = False
        for writer in list(self._writers):
            transport = writer.transport
            transport.abort()  # a reset, not a polite close: what a broken link looks like to both ends
        self._writers.clear()

    def restore(self) -> None:
        self.up = True

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
