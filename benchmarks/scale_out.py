"""Whether more worker processes on one Redis run more mentions a minute: k = 1, 2, 4
`openhands-bot worker` processes, the same burst of mentions for each k, an instant scripted LLM,
and the CPU each process used meanwhile (from /proc), so the flat part of the curve has a cause.

    python -m benchmarks.scale_out [--runs 20] [--workers 1,2,4]

The world is benchmarks/_world.py's: the real web app, a private redis-server, the fake GitHub,
the scripted LLM and one shared agent-server (WORKSPACE_KIND=server) that every run's
conversation lives in. For each k the previous workers are stopped and k fresh ones started;
`--runs` mentions on distinct issues are queued at once and timed from the first 202 to the last
run final. CPU is user+system time over that window as a share of one core, for redis-server,
the workers (summed), the agent-server (with its children: the runs' git and shell), and this
process (the web app and the fakes, in threads). Raised for the benchmark, so the bot's fair
limits do not set the pace: MAX_RUNS_PER_INSTALLATION and GITHUB_WRITE_LIMITS (one
installation here), and the agent-server's OH_MAX_CONCURRENT_RUNS (10 by default).
The k = 1 row is the baseline, measured in the same run."""
# ruff: noqa: T201

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time
from collections import Counter
from pathlib import Path

from redis.asyncio import Redis

from benchmarks._world import World, world
from benchmarks.concurrency import descendants, finish, ready
from bot.runs.store import RunStore
from tests import redis_server
from tests.fakes import llm as steps

TICKS = os.sysconf("SC_CLK_TCK")
IDLE_SECONDS = 5.0


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15)


async def commands_done(store: RunStore) -> int:
    """Redis's count of the commands it has served."""
    return int((await store.redis.info("stats"))["total_commands_processed"])


async def commands_by_name(store: RunStore) -> Counter[str]:
    """Redis's count of the commands it has served, by command name."""
    stats = await store.redis.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})


def instant_steps() -> list[steps.Step]:
    return [
        steps.tool_call(
            "terminal",
            command="printf 'def parse(text):\\n    parts = text.split()\\n"
            "    return parts[0] if parts else None\\n' > app.py",
        ),
        steps.finish("Handled empty input in parse()."),
    ]


def groups(w: World, redis_pid: int) -> dict[str, list[int]]:
    """The processes whose CPU is counted, by role."""
    workers = [worker.process.pid for worker in w.workers if worker.process.poll() is None]
    known = {redis_pid, *workers}
    for pid in workers:
        known.update(descendants(pid))
    others = [pid for pid in descendants(os.getpid()) if pid not in known]
    return {
        "redis-server": [redis_pid],
        "workers": workers,
        "agent-server": others,
        "web+fakes": [os.getpid()],
    }


def cpu_by_group(w: World, redis_pid: int) -> dict[str, float]:
    return {name: sum(map(cpu_seconds, pids)) for name, pids in groups(w, redis_pid).items()}


async def one_k(w: World, k: int, runs: int, store: RunStore, redis_pid: int) -> dict[str, float]:
    for worker in w.workers:
        redis_server.stop(worker.process, grace=10)
    w.workers.clear()
    fresh = [w.start_worker(f"k{k}-w{n}") for n in range(k)]
    for worker in fresh:  # their imports and start-up are not what is measured
        await ready(worker)
    # The baseline: what the k workers burn with nothing to do (polls, heartbeats).
    idle_from = cpu_by_group(w, redis_pid)["workers"]
    await asyncio.sleep(IDLE_SECONDS)
    idle = (cpu_by_group(w, redis_pid)["workers"] - idle_from) / IDLE_SECONDS
    # Agent-server children come and go: count the live ones at both ends, and this process.
    before = cpu_by_group(w, redis_pid)
    commands = await commands_done(store)
    by_name = await commands_by_name(store)
    started = time.monotonic()
    run_ids = [w.new_run(*instant_steps())[1] for _ in range(runs)]
    statuses = await finish(store, run_ids, time.monotonic() + 600)
    elapsed = time.monotonic() - started
    after = cpu_by_group(w, redis_pid)
    row = {f"cpu {name}": (after[name] - before[name]) / elapsed for name in after}
    counted = Counter(statuses.values())
    row.update(elapsed=elapsed, completed=counted.get("COMPLETED", 0), idle=idle)
    row["commands"] = (await commands_done(store) - commands) / max(row["completed"], 1)
    spent = await commands_by_name(store) - by_name
    top = ", ".join(f"{n} {c / max(row['completed'], 1):.0f}" for n, c in spent.most_common(8))
    print(f"  k={k} commands per run by name: {top}")
    row["worker_s"] = row["cpu workers"] * elapsed / max(row["completed"], 1)
    row["per_minute"] = row["completed"] / elapsed * 60
    return row


async def measure(w: World, args: argparse.Namespace) -> None:
    redis = Redis.from_url(w.settings.redis_url)
    redis_pid = int((await redis.info("server"))["process_id"])
    store = RunStore(redis, 3600)
    rows: dict[int, dict[str, float]] = {}
    try:
        await ready(w.start_worker("warm"))  # the agent-server's first conversation, outside
        await finish(store, [w.new_run(*instant_steps())[1]], time.monotonic() + 300)
        for k in args.workers:
            rows[k] = await one_k(w, k, args.runs, store, redis_pid)
            print(f"  k={k}: {rows[k]['completed']:.0f}/{args.runs} in {rows[k]['elapsed']:.1f} s")
    finally:
        await redis.aclose()
    names = [name for name in rows[args.workers[0]] if name.startswith("cpu ")]
    print(
        f"\nmachine: {os.cpu_count()} cores (nproc; shared with other work, expect noise); "
        f"python {platform.python_version()}; load now {os.getloadavg()[0]:.1f}\n"
        f"{args.runs} mentions per k, instant scripted LLM, one shared agent-server; raised: "
        f"MAX_RUNS_PER_INSTALLATION={w.settings.max_runs_per_installation}, "
        f"GITHUB_WRITE_LIMITS={w.settings.github_write_limits}; "
        f"MAX_JOBS={w.settings.max_jobs} per worker"
    )
    head = "".join(f"{name.removeprefix('cpu '):>14}" for name in names)
    print(
        f"{'k':>3}{'runs/min':>10}{'vs k=1':>8}{head}{'workers idle':>14}{'worker s/run':>14}"
        f"{'Redis cmd/run':>15}"
        "   (CPU: share of one core)"
    )
    base = rows[args.workers[0]]["per_minute"]
    for k, row in rows.items():
        cpus = "".join(f"{row[name]:>13.0%} " for name in names)
        print(
            f"{k:>3}{row['per_minute']:>10.1f}{row['per_minute'] / base:>7.2f}x{cpus}"
            f"{row['idle']:>13.0%} {row['worker_s']:>13.2f}{row['commands']:>15.0f}"
        )


def main(args: argparse.Namespace) -> None:
    with world(
        lease=30.0, agent_runs=1000, max_runs_per_installation=1000, github_write_limits="100000/60"
    ) as w:
        asyncio.run(measure(w, args))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--workers", type=lambda s: [int(k) for k in s.split(",")], default=[1, 2, 4]
    )
    main(parser.parse_args())
