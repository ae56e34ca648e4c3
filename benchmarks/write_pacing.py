"""Write pacing, measured: a burst of content writes from several worker processes stays inside
both of GitHub's windows and never has two writes of one installation in flight; one run's
writes on an idle installation are not slowed (against no pacing and the old fixed 1 s spacing).

    python -m benchmarks.write_pacing [--limits 8/1,50/60] [--processes 3] [--burst 60]

The default limits are GitHub's scaled down so the burst runs in about a minute and both bind
on a loaded 2-core machine (where the fake GitHub serves only tens of writes a second): counts
/10 and windows /60, 8 a second and 50 a minute instead of 80 a minute and 500 an hour.
Admissions are read back from the pacer's own log in Redis (its clock), overlap from the fake
GitHub's order of arrivals and answers."""
# ruff: noqa: T201

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncGenerator, Generator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
from githubkit import GitHub
from githubkit.throttling import BaseThrottler
from redis.asyncio import Redis

from benchmarks._world import redis_server_in
from bot import keys
from bot.config import Settings
from bot.github.client import GitHubApp, InstallationTokenStrategy
from bot.github.pacing import WRITE_METHODS, WritePaced
from tests import redis_server
from tests.conftest import APP_ID
from tests.fakes.github import FakeGitHub
from tests.helpers import rsa_key_pair
from tests.paths import ROOT

INSTALLATION = 77
OWNER, NAME = "octo", "burst"
ONE_RUN_WRITES = 12  # a mention's writes: 👀, tracking comment and its edits, blobs, tree,
# commit, ref, pull request, the final edit


def settings_for(api_url: str, private_key: str, redis_url: str, limits: str) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        github_app_id=APP_ID,
        github_private_key=private_key,
        github_api_url=api_url,
        redis_url=redis_url,
        github_write_limits=limits,
    )


# ----------------------------------------------------------------------------- a worker process


async def writer(settings: Settings, count: int, tasks: int, label: str) -> dict[str, int]:
    """`count` comment creations from `tasks` concurrent runs in this process."""
    redis = Redis.from_url(settings.redis_url)
    app = GitHubApp(settings, redis, pooled=True)  # as the worker makes it
    done = {"written": 0, "refused": 0}
    share = [count // tasks + (1 if n < count % tasks else 0) for n in range(tasks)]

    async def run(n: int, writes: int) -> None:
        gh = await app.installation_client(INSTALLATION)
        for i in range(writes):
            try:
                await gh.rest.issues.async_create_comment(OWNER, NAME, 1, body=f"{label}{n}-{i}")
                done["written"] += 1
            except WritePaced:
                done["refused"] += 1

    try:
        await asyncio.gather(*(run(n, w) for n, w in enumerate(share)))
    finally:
        await app.close()
        await redis.aclose()
    return done


def child_main(args: argparse.Namespace) -> None:
    env = os.environ
    settings = settings_for(env["BENCH_API"], env["BENCH_KEY"], env["BENCH_REDIS"], args.limits)
    print(json.dumps(asyncio.run(writer(settings, args.child, args.tasks, env["BENCH_LABEL"]))))


# ----------------------------------------------------------------------------- analysis


def most_in_window(times: Sequence[float], window: float) -> int:
    """The most admissions in any half-open window of this length."""
    ordered, best, start = sorted(times), 0, 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def overlaps(github: FakeGitHub, path: str) -> int:
    """How many writes arrived while an earlier one was still unanswered."""
    latest, count = 0, 0
    for request in sorted(github.requests_to("POST", path), key=lambda r: r.arrived):
        if request.arrived < latest:
            count += 1
        latest = max(latest, request.answered)
    return count


async def watch_admissions(redis: Redis, seen: dict[bytes, float], stop: asyncio.Event) -> None:
    """Copy the pacer's log (every admission, kept for the longest window) until stopped."""
    key = f"{keys.WRITE_LOG_PREFIX}{INSTALLATION}"
    while True:
        for member, score in await redis.zrange(key, 0, -1, withscores=True):
            seen[member] = score / 1000
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


def spawn(args: argparse.Namespace, env: dict[str, str], count: int, label: str) -> Any:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "benchmarks.write_pacing", "--child", str(count)),
            *("--tasks", str(args.tasks), "--limits", args.limits),
        ],
        env={**os.environ, **env, "BENCH_LABEL": label, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        preexec_fn=redis_server.die_with_parent,
    )


async def burst(args: argparse.Namespace, github: FakeGitHub, settings: Settings) -> None:
    limits = settings.write_limits()
    env = {
        "BENCH_API": github.url,
        "BENCH_KEY": settings.private_key_pem(),
        "BENCH_REDIS": settings.redis_url,
    }
    redis = Redis.from_url(settings.redis_url)
    await redis.flushdb()
    seen: dict[bytes, float] = {}
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_admissions(redis, seen, stop))
    share = [args.burst // args.processes] * args.processes
    share[0] += args.burst - sum(share)
    started = time.monotonic()
    children = [spawn(args, env, n, f"p{i}-") for i, n in enumerate(share)]
    results = []
    for child in children:
        out, _ = await asyncio.to_thread(child.communicate)
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    elapsed = time.monotonic() - started
    stop.set()
    await watcher
    await redis.aclose()
    written = sum(r["written"] for r in results)
    refused = sum(r["refused"] for r in results)
    print(
        f"\nburst: {args.burst} comment creations, {args.processes} worker processes x "
        f"{args.tasks} concurrent runs each, one installation, limits {limits}"
    )
    longest = settings.github_max_retry_wait_seconds
    print(
        f"  written {written}, refused (a wait over {longest:g} s: the job would run again "
        f"later) {refused}, in {elapsed:.1f} s"
    )
    admitted = sorted(seen.values())
    print(
        f"  admissions read back from the pacer's log: {len(seen)}, first to last "
        f"{admitted[-1] - admitted[0]:.1f} s (the rest is starting the processes)"
    )
    for count, window in limits:
        worst = most_in_window(list(seen.values()), window)
        verdict = "inside" if worst <= count else "OVER"
        print(f"  most writes in any {window:g} s window: {worst} (limit {count}: {verdict})")
    print(
        f"  writes in flight together (arrived before the previous was answered): "
        f"{overlaps(github, f'/repos/{OWNER}/{NAME}/issues/1/comments')}"
    )


# ----------------------------------------------------------------------------- one run


class FixedSpacer(BaseThrottler):
    """The replaced behaviour, for the baseline: every write 1 s after the previous one."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next = 0.0

    @contextmanager
    def acquire(self, request: httpx.Request) -> Generator[None, Any, Any]:
        yield

    @asynccontextmanager
    async def async_acquire(self, request: httpx.Request) -> AsyncGenerator[None, Any]:
        if request.method in WRITE_METHODS:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self._interval
            await asyncio.sleep(slot - now)
        yield


async def one_run(settings: Settings, github: FakeGitHub, runs: int) -> None:
    redis = Redis.from_url(settings.redis_url)
    app = GitHubApp(settings, redis, pooled=True)
    token = await app.installation_token(INSTALLATION)

    def plain(throttler: BaseThrottler | None) -> GitHub[Any]:
        """The worker's client (same connection pool) with another throttler."""
        return app._client(InstallationTokenStrategy(token), throttler)

    async def timed(gh: GitHub[Any]) -> float:
        started = time.perf_counter()
        for i in range(ONE_RUN_WRITES):
            await gh.rest.issues.async_create_comment(OWNER, NAME, 2, body=f"w{i}")
        return time.perf_counter() - started

    kinds = {
        "no pacing (baseline)": lambda: plain(None),
        "paced (this branch)": None,
        "fixed 1 s spacing (before)": lambda: plain(FixedSpacer(1.0)),
    }
    figures: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(runs):
        for kind, make in kinds.items():
            await redis.flushdb()  # an idle installation
            gh = await app.installation_client(INSTALLATION) if make is None else make()
            figures[kind].append(await timed(gh))
    await app.close()
    await redis.aclose()
    print(
        f"\none run: {ONE_RUN_WRITES} writes in a row on an idle installation, p50 of {runs} "
        f"(limits {settings.write_limits()})"
    )
    base = statistics.median(figures["no pacing (baseline)"])
    for kind, values in figures.items():
        p50 = statistics.median(values)
        print(f"  {kind:28} {p50 * 1000:8.1f} ms  ({(p50 - base) * 1000:+.1f} ms)")


async def main(args: argparse.Namespace) -> None:
    print(f"machine: {os.cpu_count()} cores; python {platform.python_version()}")
    with contextlib.ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pacing-")))
        redis_url = stack.enter_context(redis_server_in(home))
        private_key, public_key = rsa_key_pair()
        github = stack.enter_context(FakeGitHub(APP_ID, public_key).serving())
        github.add_installation(INSTALLATION, OWNER, [f"{OWNER}/{NAME}"])
        for number in (1, 2):
            github.add_issue(f"{OWNER}/{NAME}", number, "Burst", "body", "someone")
        product = settings_for(github.url, private_key, redis_url, "80/60,500/3600")
        await one_run(product, github, args.runs)  # GitHub's own limits, not the scaled ones
        if args.burst:
            await burst(args, github, settings_for(github.url, private_key, redis_url, args.limits))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limits", default="8/1,50/60", help="GITHUB_WRITE_LIMITS for the burst")
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=4, help="concurrent runs per process")
    parser.add_argument("--burst", type=int, default=60)
    parser.add_argument("--runs", type=int, default=5, help="repeats of the one-run figure")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    parsed = parse_args()
    if parsed.child:
        child_main(parsed)
    else:
        asyncio.run(main(parsed))
