"""What the benchmarks share: a running stack, fresh tenants, memory sampling, a second Ray node."""

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import ray

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

    def sample_rss_pss(self) -> tuple[int, int]:
        """Summed RSS and summed PSS in one walk of the tree (one read of each process's smaps). PSS splits each
        shared page (Python, Ray's libraries, PostgreSQL's shared buffers) among the processes that map it, so it
        is the memory the tree really takes; summed RSS counts a shared page once per process."""
        rss = pss = 0
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                info = proc.memory_full_info()
                rss += info.rss
                pss += info.pss
        self.peak = max(self.peak, rss)
        return rss, pss

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far, by process name (``ray::TenantActor``, ``postgres``, ...)."""
        return self._by_name(_cpu_seconds)

    def rss_by_name(self) -> dict[str, float]:
        """Resident memory now in MiB, by process name, largest first."""
        out = self._by_name(lambda proc: proc.memory_info().rss / 2**20)
        return {k: round(v, 1) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}

    def _by_name(self, measure: Callable[[psutil.Process], float]) -> dict[str, float]:
        """`measure` of every process, summed by process name (a process gone meanwhile counts nothing)."""
        out: dict[str, float] = {}
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                name = _name(proc)
                out[name] = out.get(name, 0.0) + measure(proc)
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


def _cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _name(proc: psutil.Process) -> str:
    """``ray::TenantActor`` for an actor's worker (whatever method it runs now), else the executable's name."""
    cmdline = proc.cmdline()
    return cmdline[0].split(".")[0] if cmdline and cmdline[0].startswith("ray::") else proc.name()


def emit(result: dict[str, Any]) -> None:
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["cpus"] = os.cpu_count()
    print(json.dumps(result, indent=2))


def alive_nodes() -> dict[str, float]:
    """The Ray cluster's alive nodes that can run work: node id -> CPUs."""
    return {n["NodeID"]: float(n["Resources"].get("CPU", 0.0)) for n in ray.nodes()
            if n.get("Alive") and n.get("Resources", {}).get("CPU", 0.0) > 0}


class SecondRayNode:
    """A second Ray node on this machine joining the cluster at `address`, as a second machine would: its own
    temp dir (short: Ray's socket paths must stay under 108 bytes, and outside pytest's temp root) and its own
    process group, so that `kill` takes all of it down at once (kill -9)."""

    def __init__(self, address: str, cpus: int = 2) -> None:
        self.temp_dir = Path(tempfile.mkdtemp(prefix="wp-node-"))
        log_file = open(self.temp_dir / "node.log", "ab")
        # The product's own command (`wellpulse node`), as a second machine would run it.
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "wellpulse"), "node", f"--address={address}",
             f"--temp-dir={self.temp_dir}", "--node-ip=127.0.0.1", f"--num-cpus={cpus}"],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ))
        log_file.close()
        self.node_id: str | None = None

    async def joined(self, timeout: float = 120.0) -> str:
        """The node's id once the cluster counts it alive (a node starts in seconds, on a loaded machine in
        a minute)."""
        head = ray.get_runtime_context().get_node_id()  # this driver's node
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            new = set(alive_nodes()) - {head}
            if new:
                self.node_id = new.pop()
                return self.node_id
            await asyncio.sleep(0.5)
        raise TimeoutError("the second Ray node did not join")

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def wait_dead(self, timeout: float = 120.0) -> None:
        """Until Ray declares the killed node dead (it may place new actors there until then)."""
        deadline = time.monotonic() + timeout
        while self.node_id in alive_nodes() and time.monotonic() < deadline:
            time.sleep(0.5)
