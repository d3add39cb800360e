"""HTTP served in the replica (serve/ingress.py): uvicorn on a shared port, the request id, and the bound on
requests in flight. Real servers on free ports, real HTTP clients; the app is a few Starlette routes so that what
is measured is the ingress, not the API."""

import asyncio
import os
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from serve.ingress import InFlightLimit, ReplicaHttpServer, RequestContext
from store.embedded import free_port


def _app(limit: int, gate: asyncio.Event) -> RequestContext:
    async def who(request: Request) -> JSONResponse:
        request.state.rate_limit_headers = {"X-RateLimit-Remaining": "41"}
        return JSONResponse({"pid": os.getpid(), "server": request.app.state.name,
                             "request_id": request.state.request_id})

    async def slow(request: Request) -> JSONResponse:
        await gate.wait()
        return JSONResponse({"done": True})

    app = Starlette(routes=[Route("/who", who), Route("/slow", slow)])
    return RequestContext(InFlightLimit(app, limit=limit))  # in the order serve/app.py adds them


@pytest.fixture
async def servers() -> AsyncIterator[tuple[str, list[ReplicaHttpServer], asyncio.Event]]:
    """Two servers on one port, as two replicas of a node are."""
    port, gate = free_port(), asyncio.Event()
    started = []
    for name in ("a", "b"):
        app = _app(2, gate)
        app.app.app.state.name = name  # RequestContext -> InFlightLimit -> Starlette
        server = ReplicaHttpServer(app, "127.0.0.1", port, graceful_s=1)
        await server.start()
        started.append(server)
    yield f"http://127.0.0.1:{port}", started, gate
    gate.set()
    for server in started:
        await server.stop()


async def test_replicas_share_one_port_and_the_kernel_spreads_connections(servers: tuple) -> None:
    url, started, _ = servers
    seen = set()
    for _ in range(60):  # a new connection each time: the kernel picks a listener per connection
        async with httpx.AsyncClient(base_url=url) as client:
            seen.add((await client.get("/who")).json()["server"])
        if seen == {"a", "b"}:
            break
    assert seen == {"a", "b"}
    for server in started:
        server.check()  # both healthy


async def test_every_answer_carries_a_request_id_and_the_rate_limit_headers(servers: tuple) -> None:
    url, _, _ = servers
    async with httpx.AsyncClient(base_url=url) as client:
        mine = await client.get("/who", headers={"X-Request-ID": "abc-123"})
        assert mine.headers["x-request-id"] == "abc-123" == mine.json()["request_id"]
        assert mine.headers["x-ratelimit-remaining"] == "41"
        made = await client.get("/who", headers={"X-Request-ID": "no spaces or\tcontrol characters"})
        assert made.headers["x-request-id"] != "no spaces or\tcontrol characters"
        assert len(made.headers["x-request-id"]) == 32 == len(made.json()["request_id"])
        nul = await client.get("/who?x=%00")
        assert nul.status_code == 422
        assert nul.json()["error"]["details"][0]["field"] == "query"


async def test_past_its_limit_a_replica_answers_503_with_retry_after_at_once(servers: tuple) -> None:
    url, started, gate = servers
    port = url.rsplit(":", 1)[1]
    # Each server takes two at once; hold the slow ones on one server by talking to it alone.
    one = started[0]
    await one.stop()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        held = [asyncio.create_task(client.get("/slow")) for _ in range(2)]
        await asyncio.sleep(0.3)
        loop = asyncio.get_running_loop()
        began = loop.time()
        refused = await client.get("/who")
        assert refused.status_code == 503
        assert loop.time() - began < 1.0
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "OVERLOADED"
        assert refused.headers["x-request-id"]
        gate.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
        assert (await client.get("/who")).status_code == 200  # the slots are free again


async def test_a_stopped_server_fails_its_health_check() -> None:
    server = ReplicaHttpServer(_app(1, asyncio.Event()), "127.0.0.1", free_port(), graceful_s=1)
    with pytest.raises(RuntimeError, match="not started"):
        server.check()
    await server.start()
    server.check()
    await server.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        server.check()
