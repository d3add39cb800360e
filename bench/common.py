"""What the benchmarks share: a running stack, fresh tenants, memory sampling."""

import asyncio
import contextlib
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from config import load_settings
from serve.runtime import Stack
from store.embedded import free_port


def start_stack(*, serve_http: bool, **overrides: Any) -> Stack:
    """Embedded servers unless WELLPULSE_DATABASE_URL / WELLPULSE_NATS_URL are set."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    data_dir = Path(tempfile.mkdtemp(prefix="wellpulse-bench-"))
    settings = load_settings(data_dir=data_dir, port=free_port(), **overrides)
    # Actor logs stay in Ray's log files: stdout carries the JSON result only.
    return Stack(settings, serve_http=serve_http, log_to_driver=False).start()


def new_tenant(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


class MemorySampler:
    """Peak summed RSS of this process tree, the Ray head's and the embedded servers'."""

    def __init__(self, stack: Stack) -> None:
        pids = [os.getpid()]
        for proc in (stack.ray_head, getattr(stack.nats, "proc", None)):
            if proc is not None:
                pids.append(proc.pid)
        if stack.pg is not None:
            with contextlib.suppress(Exception):
                pids.append(int((stack.pg.data_dir / "postmaster.pid").read_text().split()[0]))
        self.roots = [psutil.Process(p) for p in pids]
        self.peak = 0
        self._task: asyncio.Task | None = None

    def processes(self) -> list[psutil.Process]:
        seen: dict[int, psutil.Process] = {}
        for root in self.roots:
            with contextlib.suppress(psutil.Error):
                for proc in [root, *root.children(recursive=True)]:
                    seen.setdefault(proc.pid, proc)
        return list(seen.values())

    def sample(self) -> int:
        total = 0
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        self.peak = max(self.peak, total)
        return total

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far, by process name (``ray::TenantActor``, ``postgres``, ...)."""
        out: dict[str, float] = {}
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                name = proc.name() if not proc.cmdline() or not proc.cmdline()[0].startswith("ray::") \
                    else proc.cmdline()[0].split(".")[0]
                times = proc.cpu_times()
                out[name] = out.get(name, 0.0) + times.user + times.system
        return out

    async def _run(self) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(0.5)

    def __enter__(self) -> "MemorySampler":
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()


def emit(result: dict[str, Any]) -> None:
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["cpus"] = os.cpu_count()
    print(json.dumps(result, indent=2))
