"""How long a `local` run waits for its sandbox, cold (no pool) against warm (LOCAL_SANDBOX_POOL),
and how much memory one sandbox holds (the RSS of its processes). Needs root, bubblewrap,
slirp4netns and nftables, like the sandbox itself."""
# ruff: noqa: T201

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bot.agent.workspace import sandbox
from bot.agent.workspace.sandboxed import SandboxProvider

COMMAND = "python -m benchmarks.sandbox"


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _uid(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _wait_ready(provider: SandboxProvider, count: int, limit: float) -> None:
    deadline = time.monotonic() + limit
    while provider.pool.ready < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the pool did not fill: {provider.pool.last_error}")
        await asyncio.sleep(0.2)


async def _open_once(provider: SandboxProvider, run_id: str) -> tuple[float, float]:
    """Seconds from asking for a workspace to holding it; the sandbox's memory meanwhile."""
    started = time.monotonic()
    async with provider.open(run_id) as ws:
        waited = time.monotonic() - started
        result = await ws.client.bash("echo ready", limit_seconds=30)
        assert result.stdout.strip() == "ready", result
        memory = _memory_of_busy_sandbox(provider)
    return waited, memory


def _live_sandboxes(provider: SandboxProvider) -> list[Path]:
    return [d for d in provider.config.base.iterdir() if (d / "work").is_dir()]


def _memory_of_busy_sandbox(provider: SandboxProvider) -> float:
    """The RSS (MiB) of processes owned by the uid whose sandbox holds a run directory."""
    for directory in _live_sandboxes(provider):
        if (directory / "work" / "repo").is_dir():
            uid = int(directory.name.split("-")[0])
            pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
            return sum(_rss_kib(pid) for pid in pids if _uid(pid) == uid) / 1024
    return 0.0


async def measure(pool: int, runs: int, limit: float) -> tuple[list[float], list[float]]:
    state = Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    provider = SandboxProvider(state, pool_size=pool, start_timeout=limit)
    waits: list[float] = []
    memory: list[float] = []
    try:
        await provider.start()
        for n in range(runs):
            if pool:
                await _wait_ready(provider, pool, limit)  # a run arriving at a rested worker
            waited, rss = await _open_once(provider, f"bench-{pool}-{n}")
            waits.append(waited)
            memory.append(rss)
            print(f"pool={pool} run {n}: waited {waited:.2f}s, RSS {rss:.0f} MiB", flush=True)
    finally:
        await provider.close()
        shutil.rmtree(state, ignore_errors=True)
    return waits, memory


def _row(label: str, waits: list[float]) -> str:
    p50, p99 = statistics.median(waits), _percentile(waits, 0.99)
    return f"{label:<22} {len(waits):>4} {p50:>9.2f}s {p99:>9.2f}s {max(waits):>9.2f}s"


async def main_async(cold_runs: int, warm_runs: int, pool: int, limit: float) -> None:
    why = sandbox.probe()
    if why is not None:
        raise SystemExit(f"no sandbox on this machine: {why}")
    cold, cold_memory = await measure(0, cold_runs, limit)
    warm, warm_memory = await measure(pool, warm_runs, limit)
    print(f"\n$ {COMMAND} --cold {cold_runs} --warm {warm_runs} --pool {pool}")
    cores = os.cpu_count()
    load = os.getloadavg()[0]
    print(f"machine: {platform.machine()}, {cores} cores, load {load:.1f}")
    print(f"{'run start (open → ws)':<22} {'runs':>4} {'p50':>10} {'p99':>10} {'max':>10}")
    print(_row("cold (baseline, pool 0)", cold))
    print(_row(f"warm (pool {pool})", warm))
    rss = cold_memory + warm_memory
    median, most = statistics.median(rss), max(rss)
    print(f"memory per sandbox (RSS of its processes): median {median:.0f} MiB, max {most:.0f} MiB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cold", type=int, default=3, help="cold starts to measure")
    parser.add_argument("--warm", type=int, default=5, help="runs taken from a full pool")
    parser.add_argument("--pool", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args(argv)
    asyncio.run(main_async(args.cold, args.warm, args.pool, args.timeout))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
