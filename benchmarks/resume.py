"""How soon a run interrupted by a worker restart (SIGKILL, or a deploy's SIGTERM) works again."""
# ruff: noqa: T201

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import platform
import random
import signal
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from arq.constants import in_progress_key_prefix
from arq.worker import Worker
from redis.asyncio import Redis

from benchmarks._world import WorkerProcess, World, world
from bot.github import messages
from bot.github.tracking import marker
from bot.runs.store import RunStatus, RunStore
from tests.fakes import llm as steps
from tests.fakes.llm import Script

SETTLE_SECONDS = 180  # a run's re-run or finish that takes longer is reported as a problem
FINISHED = {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED}


class NoCall(Exception):
    """The run did not reach the LLM in time."""


@dataclass
class Scenario:
    key: str
    title: str
    columns: list[str]
    rows: list[dict[str, float]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class Bench:
    world: World
    redis: Redis
    lease: float
    run_id: str = ""  # the run being measured, settled after each measurement
    tries: int = 1  # the try its final comment must name (2: it was taken up again)

    async def llm_call(self, script: Script, nth: int, worker: WorkerProcess) -> float:
        """time.time() when the run's `nth` LLM call arrived (its script served it)."""
        deadline = time.monotonic() + self.lease + SETTLE_SECONDS
        while time.monotonic() < deadline:
            calls = [r for r in self.world.llm.completions if r.script is script]
            if len(calls) >= nth:
                return calls[nth - 1].timestamp
            if worker.process.poll() is not None:
                raise NoCall(f"the worker exited with {worker.process.returncode}")
            await asyncio.sleep(0.05)
        raise NoCall(f"no LLM call #{nth} within {self.lease + SETTLE_SECONDS:.0f} s")

    async def settle(self, run_id: str) -> str | None:
        """Let the run finish, stop every worker, empty Redis; a problem, or None."""
        store = RunStore(self.redis, self.world.settings.run_retention_seconds)
        status = None
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline:
            record = await store.get(run_id)
            status = record.status if record else None
            if status in FINISHED:
                break
            await asyncio.sleep(0.2)
        for worker in self.world.workers:
            if worker.process.poll() is None:
                worker.process.terminate()
                await asyncio.to_thread(worker.process.wait, 60)
        self.world.workers.clear()
        await self.redis.flushdb()
        if status is not RunStatus.COMPLETED:
            return f"run ended {status or 'unknown'}"
        return None if self.tries < 2 or self.resumed_note() else "no re-run in its comment"

    def resumed_note(self) -> bool:
        """The run's final comment says it was restarted as try 2 (it was a real re-run)."""
        note = messages.RESUMED_NOTE.format(tries=self.tries)
        mark = marker(self.run_id)
        comments = self.world.github.comments.values()
        return any(mark in c["body"] and note in c["body"] for c in comments)

    async def baseline(self, n: int) -> dict[str, float]:
        """A fresh run waiting in the queue; a worker starts; the run reaches the LLM."""
        script, self.run_id = self.world.new_run(steps.finish("Nothing to change here."))
        self.tries = 1
        worker = self.world.start_worker(f"baseline-{n}")
        reached = await self.llm_call(script, 1, worker)
        return {"start→LLM": reached - worker.started}

    def interrupted_run(self) -> Script:
        """The first try hangs in its first LLM call; the re-run's first call ends it."""
        script, self.run_id = self.world.new_run(
            steps.hang(), steps.finish("Nothing to change here.")
        )
        self.tries = 2
        return script

    async def sigkill(self, n: int) -> dict[str, float]:
        script = self.interrupted_run()
        first = self.world.start_worker(f"kill-{n}-first")
        await self.llm_call(script, 1, first)
        # Kill at a random point of the heartbeat's cycle, as a crash would.
        await asyncio.sleep(random.uniform(0, self.lease / 3))
        left = await self.redis.pttl(in_progress_key_prefix + self.run_id) / 1000
        first.process.kill()
        killed = time.time()
        await asyncio.to_thread(first.process.wait, 30)
        second = self.world.start_worker(f"kill-{n}-second")
        resumed = await self.llm_call(script, 2, second)
        return {
            "claim left": left,
            "start→resume": resumed - second.started,
            "kill→resume": resumed - killed,
        }

    async def sigterm(self, n: int) -> dict[str, float]:
        script = self.interrupted_run()
        first = self.world.start_worker(f"term-{n}-first")
        await self.llm_call(script, 1, first)
        first.process.send_signal(signal.SIGTERM)
        termed = time.time()
        await asyncio.to_thread(first.process.wait, 60)
        exited = time.time()
        second = self.world.start_worker(f"term-{n}-second")
        resumed = await self.llm_call(script, 2, second)
        return {
            "term→exit": exited - termed,
            "start→resume": resumed - second.started,
            "term→resume": resumed - termed,
        }

    async def measure(
        self, scenario: Scenario, runs: int, once: Callable[[int], Coroutine[Any, Any, Any]]
    ) -> None:
        for n in range(1, runs + 1):
            self.run_id = ""
            try:
                row: dict[str, float] = await once(n)
            except NoCall as exc:
                logs = "".join(f"\n--- {w.log}\n{w.tail()}" for w in self.world.workers)
                print(f"{scenario.key} run {n}: {exc}{logs}", file=sys.stderr)
                scenario.problems.append(f"run {n}: {exc}")
                row = {}
            if row:
                scenario.rows.append(row)
            problem = await self.settle(self.run_id) if self.run_id else None
            if problem and row:
                scenario.problems.append(f"run {n}: {problem}")
            figures = "  ".join(f"{k} {v:.2f}s" for k, v in row.items())
            print(f"{scenario.key} run {n}: {figures or 'failed'}", file=sys.stderr, flush=True)


def arq_poll_delay() -> float:
    """arq's default poll delay: `openhands-bot worker` sets none of its own."""
    default = inspect.signature(Worker.__init__).parameters["poll_delay"].default
    return float(default)


def print_scenario(scenario: Scenario) -> None:
    print(f"\n{scenario.title}")
    header = f"{'run':>6} " + " ".join(f"{c:>14}" for c in scenario.columns)
    print(header)
    print("-" * len(header))
    for n, row in enumerate(scenario.rows, 1):
        print(f"{n:>6} " + " ".join(f"{row[c]:>13.2f}s" for c in scenario.columns))
    if scenario.rows:
        for label, reduce in (("median", statistics.median), ("max", max)):
            values = [reduce([row[c] for row in scenario.rows]) for c in scenario.columns]
            print(f"{label:>6} " + " ".join(f"{v:>13.2f}s" for v in values))
    for problem in scenario.problems:
        print(f"  PROBLEM: {problem}")


def print_settings(lease: float, runs: int, settings: Any) -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {platform.machine()}, {cores} cores; python {platform.python_version()}")
    print(
        f"WORKER_LEASE_SECONDS={lease:g} (the claim; its heartbeat renews it every "
        f"{lease / 3:g} s); arq poll delay {arq_poll_delay():g} s (arq's default, which "
        f"`openhands-bot worker` keeps); {runs} run(s) per scenario"
    )
    print(
        "workers: `python -m bot.ops.cli worker` processes, settings from the environment, "
        "WORKSPACE_KIND=server on one local agent-server; a scripted LLM answering at once; "
        f"otherwise product defaults (GITHUB_WRITE_LIMITS="
        f"{settings.github_write_limits}, TRACKING_INTERVAL_SECONDS="
        f"{settings.tracking_interval_seconds:g})"
    )
    print(
        "resume = the re-run's first LLM call reaching the LLM (the agent working again); "
        "claim left = the dead worker's claim TTL at the kill (killed at a random point of "
        "the heartbeat's cycle); the SIGTERM case starts the new worker once the old one exited"
    )


async def bench(bench_world: World, lease: float, runs: int) -> list[Scenario]:
    redis = Redis.from_url(bench_world.settings.redis_url)
    bench = Bench(bench_world, redis, lease)
    scenarios = [
        (
            Scenario("baseline", "baseline: a fresh run, worker start → LLM", ["start→LLM"]),
            bench.baseline,
        ),
        (
            Scenario(
                "SIGKILL",
                "SIGKILL mid-conversation, new worker started at once",
                ["claim left", "start→resume", "kill→resume"],
            ),
            bench.sigkill,
        ),
        (
            Scenario(
                "SIGTERM",
                "SIGTERM mid-conversation (a deploy), new worker started after the old exited",
                ["term→exit", "start→resume", "term→resume"],
            ),
            bench.sigterm,
        ),
    ]
    try:
        for scenario, once in scenarios:
            await bench.measure(scenario, runs, once)
    finally:
        await redis.aclose()
    return [scenario for scenario, _ in scenarios]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario")
    parser.add_argument(
        "--lease", type=float, default=30.0, help="WORKER_LEASE_SECONDS (>= 3; product: 30)"
    )
    args = parser.parse_args(argv)
    if args.lease < 3 or args.runs < 1:
        parser.error("--lease must be at least 3 and --runs at least 1")
    with world(args.lease) as bench_world:
        scenarios = asyncio.run(bench(bench_world, args.lease, args.runs))
        unexpected = bench_world.github.unexpected + bench_world.llm.unexpected
    print()
    print_settings(args.lease, args.runs, bench_world.settings)
    for scenario in scenarios:
        print_scenario(scenario)
    for line in unexpected:
        print(f"  PROBLEM: a fake got an unexpected request: {line[:300]}")
    return 1 if unexpected or any(s.problems for s in scenarios) else 0


if __name__ == "__main__":
    sys.exit(main())
