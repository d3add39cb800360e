"""HTTP served inside each Serve replica: uvicorn on the replica's own event loop, on a port the node's replicas
share, with Ray Serve placing, health-checking, restarting and scaling the replicas.

Why not Serve's own proxy: every request through it is one more process hop, pickled both ways, and on two cores
that proxy cost 11-15 ms of latency and about as much CPU per request as the handler itself (README,
``bench.load``). Serve's HAProxy ingress is faster but forwards no client address and keeps fixed paths and ports
that two stacks on one machine fight over. Here the kernel spreads connections over the replicas of a node
(``SO_REUSEPORT``), and a request costs what it costs under plain uvicorn.

What the proxy did that is ours now (`RequestContext`, `InFlightLimit`): an ``X-Request-ID`` on every answer, and a
bound on the requests a replica works on at once: past it a ``503`` with ``Retry-After`` at once, never a queue
that grows for minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import uuid
from typing import Any

import uvicorn
from prometheus_client import Counter

from serve.edge import EDGE_REGISTRY
from serve.errors import envelope

log = logging.getLogger(__name__)

__all__ = ["InFlightLimit", "ReplicaHttpServer", "RequestContext", "listening_socket"]

REQUEST_ID_HEADER = b"x-request-id"
# A client's own request id is echoed and logged: short and plain, or we make one.
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_NUL_IN_QUERY = (b"%00", b"\x00")
OVERLOAD_REFUSED = Counter(
    "wellpulse_http_overload_refused", "Requests answered 503 because the replica had as many in flight as it takes",
    registry=EDGE_REGISTRY)


def _envelope(code: str, message: str, details: list[dict[str, str]]) -> bytes:
    return json.dumps(envelope(code, message, details)).encode()


async def _answer(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class RequestContext:
    """ASGI middleware: the request's id (the client's ``X-Request-ID`` if plain, else a new one) in
    ``request.state.request_id`` and on the answer, the admitted request's ``X-RateLimit-*`` (set on
    ``request.state`` by the rate limit check) on the answer, and a query string with NUL refused once for every
    endpoint (PostgreSQL refuses NUL in text).

    Plain ASGI rather than ``@app.middleware("http")``: that wrapper runs the handler in a task of its own and
    streams the answer through a queue, a cost every request paid.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = next((value for name, value in scope.get("headers", ()) if name == REQUEST_ID_HEADER), None)
        rid = given.decode() if given is not None and _REQUEST_ID.match(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"")
        if any(bad in query for bad in _NUL_IN_QUERY):
            await _answer(send, 422, _envelope("VALIDATION_ERROR", "query parameters may not contain NUL characters",
                                               [{"field": "query", "message": "contains %00"}]),
                          [(REQUEST_ID_HEADER, rid.encode())])
            return

        async def send_with_context(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                extra = [(REQUEST_ID_HEADER, rid.encode())]
                # A 429 carries its own X-RateLimit-*; an admitted request those of its tightest limit.
                extra += [(name.lower().encode(), value.encode())
                          for name, value in (state.get("rate_limit_headers") or {}).items()]
                headers.extend((name, value) for name, value in extra if name not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_context)


class InFlightLimit:
    """ASGI middleware: at most ``limit`` HTTP requests at once in this replica; one more is answered ``503`` with
    ``Retry-After`` at once (the client, or a load balancer, tries again or elsewhere) instead of waiting in a
    queue behind work the replica cannot finish in time. WebSockets are long-lived and not counted.

    >>> limit = InFlightLimit(None, limit=2)
    >>> limit.in_flight, limit.refused
    (0, 0)
    """

    def __init__(self, app: Any, *, limit: int, retry_after_s: int = 1) -> None:
        self.app = app
        self.limit = limit
        self.retry_after = str(retry_after_s).encode()
        self.in_flight = 0
        self.refused = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            self.refused += 1
            OVERLOAD_REFUSED.inc()
            await _answer(send, 503, _envelope("OVERLOADED", "the server is at capacity; retry shortly", []),
                          [(b"retry-after", self.retry_after)])
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` that other replicas on this machine may bind too (``SO_REUSEPORT``:
    the kernel spreads new connections over them)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class ReplicaHttpServer:
    """uvicorn serving ``app`` on ``host:port`` from the running event loop, until `stop`.

    No proxy headers are believed here: the app decides whom to believe (``WELLPULSE_TRUSTED_PROXIES``,
    serve/edge.py). No access log: query strings may carry a WebSocket token.
    """

    def __init__(self, app: Any, host: str, port: int, *, graceful_s: int = 5) -> None:
        self.config = uvicorn.Config(
            app, host=host, port=port, lifespan="off", access_log=False, log_config=None, proxy_headers=False,
            forwarded_allow_ips="", server_header=False, timeout_keep_alive=30, ws="websockets",
            ws_max_size=1 << 20, timeout_graceful_shutdown=graceful_s,
            # Compression is per socket and stateful: alert events are a few hundred bytes, and deflating each
            # one for each of a tenant's hundred sockets cost more CPU than any other step of the fan-out, and
            # its window ~100 KiB of memory per idle socket (bench.ws_fanout).
            ws_per_message_deflate=False)
        self.server = uvicorn.Server(self.config)
        self.host, self.port = host, port
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        sock = listening_socket(self.host, self.port)
        self._task = asyncio.get_running_loop().create_task(self.server.serve(sockets=[sock]))
        for _ in range(200):  # uvicorn sets `started` once it listens; a failure ends the task
            if self.server.started or self._task.done():
                break
            await asyncio.sleep(0.05)
        self.check()
        log.info("serving HTTP on %s:%d in this replica", self.host, self.port)

    def check(self) -> None:
        """Raise unless the server is up: Serve's health check restarts a replica whose server died."""
        if self._task is None:
            raise RuntimeError("HTTP server not started")
        if self._task.done():
            exc = self._task.exception() if not self._task.cancelled() else None
            raise RuntimeError(f"HTTP server stopped: {exc!r}")
        if not self.server.started:
            raise RuntimeError("HTTP server not listening yet")

    async def stop(self) -> None:
        """Stop accepting, let open requests finish (up to the graceful time), close the connections."""
        if self._task is None:
            return
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self._task), self.config.timeout_graceful_shutdown or 5.0)
        if not self._task.done():
            self.server.force_exit = True
            self._task.cancel()
