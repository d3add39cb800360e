"""One streaming limit on request bodies, counted as the bytes arrive.

A ``Content-Length`` check alone is skipped by a chunked body, and a handler that reads the whole body before
checking its size has already spent the memory. This middleware refuses a declared length over the limit at
once, and stops a body that grows past it while it streams: 413 with the error envelope either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import Any

from starlette.exceptions import HTTPException

__all__ = ["BodyLimit", "BodyTooLarge"]

DRAIN_BYTES = 32 * 1024 * 1024


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when the body passes its limit.

    An HTTP exception, so a framework that wraps body parsing errors into a 400 passes it on as it is.
    """

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="body too large")


class BodyLimit:
    """ASGI middleware: at most `default` bytes per body, or the limit of the longest matching path prefix.

    Parameters
    ----------
    app
        The ASGI app.
    default
        Bytes any request body may have.
    by_prefix
        ``(path prefix, bytes)`` pairs for endpoints with their own, usually smaller, limit.
    """

    def __init__(self, app: Any, *, default: int, by_prefix: Sequence[tuple[str, int]] = ()) -> None:
        self.app = app
        self.default = default
        self.by_prefix = sorted(by_prefix, key=lambda item: len(item[0]), reverse=True)

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.by_prefix:
            if path.startswith(prefix):
                return limit
        return self.default

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _drain(receive, DRAIN_BYTES)  # unread, nothing is kept: only so the client reads our answer
            await _refuse(send, limit)
            return
        seen = 0
        started = False

        async def counting_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    if message.get("more_body", False):
                        await _drain(receive, DRAIN_BYTES)
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _refuse(send, limit)


async def _drain(receive: Any, budget: int, seconds: float = 5.0) -> None:
    """Read and drop what the client is still sending (up to `budget` bytes, briefly), so it reads our 413 instead
    of a connection reset (a lingering close, as web servers do); a client that keeps sending past that is cut
    off. Nothing drained is kept in memory."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while budget > 0:
                message = await receive()
                budget -= len(message.get("body", b""))
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return


async def _refuse(send: Any, limit: int) -> None:
    body = json.dumps({"error": {"code": "PAYLOAD_TOO_LARGE", "message": f"body larger than {limit} bytes",
                                 "details": [{"field": "body", "message": f"at most {limit} bytes"}]}}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
