"""Dispatch, measured: enqueue → job start latency (p50, p99) and idle Redis load, for arq's default
worker (a poll every 0.5 s) and the bot's (a wake-up on pub/sub, a 5 s poll as the fallback),
in the same run on one private redis-server.

    python -m benchmarks.dispatch [--jobs 100] [--idle 10]

Jobs are queued by the bot's own enqueuer (the intake's), one at a time at random gaps (so they
fall anywhere in a poll period); the worker runs in this process, its job notes when it started.
Idle load is Redis's `total_commands_processed` over `--idle` seconds with nothing queued."""
# ruff: noqa: T201

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arq import Worker, func
from redis.asyncio import Redis

from benchmarks._world import redis_server_in
from bot.config import Settings
from bot.jobs.worker import LeasedWorker, redis_settings
from bot.queue import codec
from bot.queue.enqueue import Enqueuer

KEY = b"bench-dispatch-queue-key"


async def mark(ctx: dict[str, Any], n: int) -> None:
    ctx["started"][n] = time.time()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def commands(redis: Redis) -> int:
    return int((await redis.info("stats"))["total_commands_processed"])


async def measure(
    name: str, make: Callable[[dict[str, Any]], Worker], redis: Redis, args: argparse.Namespace
) -> dict[str, float]:
    await redis.flushdb()
    started: dict[int, float] = {}
    worker = make({"started": started})
    running = asyncio.create_task(worker.main())
    enqueuer = Enqueuer(redis, key=KEY)
    try:
        await asyncio.sleep(1.0)  # started, its first polls done
        before = await commands(redis)
        await asyncio.sleep(args.idle)
        idle = (await commands(redis) - before - 1) / args.idle  # -1: our own INFO
        queued: dict[int, float] = {}
        for n in range(args.jobs):
            await asyncio.sleep(random.uniform(0.02, 0.15))
            queued[n] = time.time()
            await enqueuer.enqueue_raw(f"job-{n}", codec.job("mark", n))
        for _ in range(600):
            if len(started) == args.jobs:
                break
            await asyncio.sleep(0.05)
    finally:
        await enqueuer.close()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await worker.close()
    latencies = [(started[n] - queued[n]) * 1000 for n in started]
    return {
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 99),
        "max": max(latencies),
        "over100": sum(1 for v in latencies if v > 100),
        "idle": idle,
        "lost": args.jobs - len(started),
    }


async def main(args: argparse.Namespace) -> None:
    print(f"machine: {os.cpu_count()} cores; python {platform.python_version()}; {args.jobs} jobs")
    with tempfile.TemporaryDirectory(prefix="bench-dispatch-") as home:
        with redis_server_in(Path(home)) as url:
            settings = Settings(_env_file=None, redis_url=url)  # type: ignore[call-arg]
            redis = Redis.from_url(url)
            common: dict[str, Any] = {
                "functions": [func(mark, name="mark")],
                "redis_settings": redis_settings(settings),
                "job_serializer": codec.Signed(KEY).dumps,
                "job_deserializer": codec.Signed(KEY).loads,
                "handle_signals": False,
            }
            rows = {
                "arq default (poll 0.5 s)": await measure(
                    "arq",
                    lambda ctx: Worker(**common, ctx=ctx, poll_delay=0.5),
                    redis,
                    args,
                ),
                f"bot (wake-up, poll {settings.queue_poll_seconds:g} s)": await measure(
                    "bot",
                    lambda ctx: LeasedWorker(
                        **common,
                        ctx=ctx,
                        poll_delay=settings.queue_poll_seconds,
                        lease_seconds=settings.worker_lease_seconds,
                    ),
                    redis,
                    args,
                ),
            }
            await redis.aclose()
    header = f"{'worker':32} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'>100 ms':>8}"
    print(header + f" {'idle cmd/s':>11}")
    for name, row in rows.items():
        print(
            f"{name:32} {row['p50']:8.1f} {row['p99']:8.1f} {row['max']:8.1f} "
            f"{row['over100']:8.0f} {row['idle']:11.1f}"
            + (f"  ({row['lost']:.0f} never started)" if row["lost"] else "")
        )
    print(f"load average now: {os.getloadavg()[0]:.1f} (the machine is shared)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle measurement")
    asyncio.run(main(parser.parse_args()))
