"""How many runs one worker process holds at once, and what each costs it in memory: 100 mentions
on distinct issues, each conversation held open by the scripted LLM, one `openhands-bot worker`
(MAX_JOBS=100), its RSS sampled from /proc the whole time.

    python -m benchmarks.concurrency [--runs 100] [--hold 90] [--budget 1024]

The world is benchmarks/_world.py's: the real web app, a private redis-server, the fake GitHub, the
scripted LLM and one shared agent-server (WORKSPACE_KIND=server) that every run's conversation lives
in; the worker's process is measured, and its one child, the LLM gateway process (litellm lives
there, out of the worker), separately; not the agent-server. Each run's first LLM call is answered
after `--hold` seconds, so every run that has started by then is in flight at once. Settings the
benchmark raises, so that the bot's own fair limits do not serialize what it measures:
MAX_RUNS_PER_INSTALLATION (one installation here), GITHUB_WRITE_LIMITS (100 runs' tracking comments
and pull requests in a minute would wait for GitHub's 80 writes a minute), LLM_FIRST_TOKEN_SECONDS
(the held answer is late on purpose), and the agent-server's own OH_MAX_CONCURRENT_RUNS (10 by
default; past it, it answers 429). The baseline is the same worker measured twice in the same run:
idle before its first run, and settled after one run (its lazy imports and clients made)."""
# ruff: noqa: T201

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from redis.asyncio import Redis

from benchmarks._world import WorkerProcess, World, world
from bot.runs.store import FINAL, RunStore
from tests.fakes import llm as steps
from tests.fakes.llm import Script

SETTLE_SECONDS = 3.0  # after "worker ready": its first polls, before the idle baseline


def status_kib(pid: int, key: str = "VmRSS") -> int:
    """A process's /proc/<pid>/status figure in KiB (0 once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc/<pid>/task/*/children)."""
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            for child in map(int, children):
                found.append(child)
                queue.append(child)
    return found


@dataclass
class Sampler:
    """The worker's RSS and its children's, every `every` seconds, in a thread of its own."""

    pid: int
    every: float = 0.25
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (time, own, children)
    _stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> tuple[float, int, int]:
        children = sum(status_kib(child) for child in descendants(self.pid))
        return time.time(), status_kib(self.pid), children

    def __enter__(self) -> Sampler:
        def loop() -> None:
            while not self._stop.wait(self.every):
                self.samples.append(self.sample())

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def held_steps(hold: float) -> list[steps.Step]:
    """A small fix, its first answer held back `hold` seconds: the run stays in flight."""
    return [
        steps.sleep(
            hold,
            then=steps.tool_call(
                "terminal",
                command="printf 'def parse(text):\\n    parts = text.split()\\n"
                "    return parts[0] if parts else None\\n' > app.py",
            ),
        ),
        steps.finish("Handled empty input in parse()."),
    ]


async def finish(store: RunStore, run_ids: list[str], deadline: float) -> dict[str, str]:
    """Each run's last status, waiting until all are final or the deadline passes."""
    statuses: dict[str, str] = {}
    while time.monotonic() < deadline:
        for run_id in run_ids:
            if str(statuses.get(run_id)).split()[0] in FINAL:
                continue
            record = await store.get(run_id)
            status = record.status if record else "missing"
            if record and record.error:  # why a run failed is part of the figures
                status = f"{status} {record.error.code}: {record.error.detail[:120]}"
            statuses[run_id] = status
        if all(str(statuses.get(r)).split()[0] in FINAL for r in run_ids):
            break
        await asyncio.sleep(1.0)
    return statuses


def first_calls(w: World, scripts: list[Script]) -> list[float]:
    """When each run's first LLM call arrived (runs that made none are left out)."""
    firsts: dict[int, float] = {}
    for request in w.llm.completions:
        for n, script in enumerate(scripts):
            if request.script is script and n not in firsts:
                firsts[n] = request.timestamp
    return sorted(firsts.values())


async def ready(worker: WorkerProcess) -> None:
    """Until the worker logs that it and its LLM gateway process are ready (imports done, at
    most 2 minutes), and a little after."""
    for _ in range(240):
        log = worker.tail(100_000)
        if "worker ready" in log and "llm gateway process ready" in log:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(SETTLE_SECONDS)


def mib(kib: float) -> float:
    return kib / 1024


async def measure(w: World, args: argparse.Namespace) -> None:
    worker = w.start_worker("w1")
    pid = worker.process.pid
    redis = Redis.from_url(w.settings.redis_url)
    store = RunStore(redis, 3600)
    try:
        await ready(worker)
        idle = status_kib(pid)
        _, warm_id = w.new_run(*held_steps(0.0))
        warm = await finish(store, [warm_id], time.monotonic() + 300)
        await asyncio.sleep(2.0)
        settled = status_kib(pid)
        print(f"warm-up run: {warm[warm_id]}; idle {mib(idle):.0f} MiB, settled {mib(settled):.0f}")
        with Sampler(pid) as sampler:
            queued_at = time.time()
            made = [w.new_run(*held_steps(args.hold)) for _ in range(args.runs)]
            print(f"{args.runs} mentions acknowledged in {time.time() - queued_at:.1f} s")
            scripts, run_ids = [m[0] for m in made], [m[1] for m in made]
            statuses = await finish(store, run_ids, time.monotonic() + args.hold + 600)
            done_at = time.time()
        hwm = status_kib(pid, "VmHWM")
    finally:
        await redis.aclose()
    arrivals = first_calls(w, scripts)
    # Every first call waits `hold` s: those arrived before the earliest was answered were all
    # waiting at once, each in a running job of this one worker.
    at_once = sum(1 for t in arrivals if arrivals and t < arrivals[0] + args.hold)
    peak = max(sampler.samples, key=lambda s: s[1])
    peak_at, peak_own, peak_children = peak
    completed = sum(1 for s in statuses.values() if s == "COMPLETED")
    counted = Counter(str(s) for s in statuses.values())
    per_run = (peak_own - settled) / max(at_once, 1)
    print(
        f"\nmachine: {os.cpu_count()} cores (shared); python {platform.python_version()}; "
        f"load now {os.getloadavg()[0]:.1f}\nsettings raised for the benchmark: "
        f"MAX_JOBS={w.settings.max_jobs}, MAX_RUNS_PER_INSTALLATION="
        f"{w.settings.max_runs_per_installation}, GITHUB_WRITE_LIMITS="
        f"{w.settings.github_write_limits}, LLM_FIRST_TOKEN_SECONDS="
        f"{w.settings.llm_first_token_seconds:g}; workspace server (one shared agent-server)"
    )
    print(
        f"runs: {args.runs} queued, {completed} completed, in "
        f"{done_at - queued_at:.0f} s; {len(arrivals)} reached the LLM; "
        f"{at_once} in flight at once (waiting on their held LLM answer)"
    )
    for status, n in counted.most_common():
        print(f"  {n:3} {status}")
    unexpected = w.llm.unexpected
    if unexpected:  # what the scripted LLM could not answer explains a run's llm failure
        print(f"  the scripted LLM answered {len(unexpected)} 500: {unexpected[0][:300]}")
    print(f"worker RSS (VmRSS of pid {pid}; its child, the LLM gateway process, separately):")
    print(f"  baseline, idle before any run     {mib(idle):7.1f} MiB")
    print(f"  baseline, settled after one run   {mib(settled):7.1f} MiB")
    print(
        f"  peak, {at_once:3} runs in flight        {mib(peak_own):7.1f} MiB "
        f"(at +{peak_at - queued_at:.0f} s; VmHWM {mib(hwm):.1f}); gateway process "
        f"{mib(peak_children):.1f} MiB (its peak {mib(max(s[2] for s in sampler.samples)):.1f})"
    )
    print(f"  after all finished                {mib(sampler.samples[-1][1]):7.1f} MiB")
    print(
        f"  per concurrent run                {mib(per_run):7.2f} MiB "
        f"((peak - settled) / {at_once})"
    )
    if per_run > 0:
        jobs = math.floor((args.budget * 1024 - settled) / per_run)
        print(
            f"  a {args.budget} MiB budget for the worker process holds "
            f"(budget - settled) / per run = {jobs} runs at once"
        )


def main(args: argparse.Namespace) -> None:
    with world(
        lease=30.0,
        agent_runs=args.runs + 1,
        max_jobs=args.runs,
        max_runs_per_installation=args.runs,
        github_write_limits="100000/60",
        llm_first_token_seconds=args.hold + 120,
        llm_idle_seconds=args.hold + 120,
    ) as w:
        asyncio.run(measure(w, args))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--hold", type=float, default=90.0, help="seconds each run is held")
    parser.add_argument("--budget", type=int, default=1024, help="MiB for one worker process")
    main(parser.parse_args())
