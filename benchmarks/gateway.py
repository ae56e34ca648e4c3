"""What the LLM gateway adds to each LLM call: the same scripted LLM called directly and through
the gateway (credential check in Redis, litellm relay, usage charged), interleaved, streamed and
not, over real HTTP on loopback; p50/p99 of each and of the difference."""
# ruff: noqa: T201

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from redis.asyncio import Redis

from bot.agent.gateway import GatewayProcess
from bot.config import Settings
from tests import redis_server
from tests.fakes import llm as steps
from tests.fakes.llm import ScriptedLLM

KEY = "sk-bench-provider-key"
MESSAGES = [
    {"role": "system", "content": "You are a coding agent. " * 40},
    {"role": "user", "content": "Fix the failing test in src/app.py, please."},
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def one_call(http: httpx.AsyncClient, url: str, token: str, stream: bool) -> float:
    body: dict[str, Any] = {"model": "fake", "messages": MESSAGES, "stream": stream}
    started = time.perf_counter()
    if stream:
        async with http.stream(
            "POST", url, json=body, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            response.raise_for_status()
            async for _ in response.aiter_bytes():
                pass
    else:
        response = await http.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
        response.raise_for_status()
    return (time.perf_counter() - started) * 1000


async def bench(calls: int, warmup: int, redis_url: str, home: Path) -> dict[str, list[float]]:
    fake = ScriptedLLM(api_key=KEY)
    fake.script(steps.repeat(steps.tool_call("terminal", command="pytest -x tests/test_app.py")))
    results: dict[str, list[float]] = {}
    with fake.serving():
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            llm_model="openai/fake",
            llm_api_key=SecretStr(KEY),
            llm_base_url=fake.base_url,
            llm_input_cost_per_token=3e-6,
            llm_output_cost_per_token=15e-6,
            state_dir=home / "state",
            redis_url=redis_url,
        )
        redis = Redis.from_url(redis_url)
        gateway = GatewayProcess(settings, redis)  # as a worker runs it
        await gateway.start()
        try:
            async with (
                gateway.access("bench-run") as access,
                httpx.AsyncClient(timeout=60) as http,
            ):
                routes = {
                    "direct": (f"{fake.base_url}/chat/completions", KEY),
                    "gateway": (f"{access.base_url}/v1/chat/completions", access.api_key),
                }
                for stream in (False, True):
                    mode = "stream" if stream else "whole"
                    for n in range(warmup + calls):
                        for route, (url, token) in routes.items():  # interleaved: same conditions
                            ms = await one_call(http, url, token, stream)
                            if n >= warmup:
                                results.setdefault(f"{route} {mode}", []).append(ms)
            usage = await gateway.usage("bench-run")
            expected = 2 * (warmup + calls)
            if usage.calls != expected:
                print(f"CORRECTNESS: the gateway charged {usage.calls} calls, not {expected}")
        finally:
            await gateway.stop()
            await redis.aclose()
    return results


def report(results: dict[str, list[float]], calls: int, warmup: int, command: str) -> None:
    print(f"# LLM gateway added latency, {calls} calls per row after {warmup} warm-up")
    print(f"# {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cpus, ")
    print(f"#   load average {os.getloadavg()[0]:.1f} at the end")
    print(f"# reproduce: {command}")
    print(f"{'route':<16} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, values in results.items():
        print(
            f"{name:<16} {percentile(values, 50):>8.2f} {percentile(values, 99):>8.2f} "
            f"{statistics.fmean(values):>8.2f}"
        )
    for mode in ("whole", "stream"):
        direct, via = results[f"direct {mode}"], results[f"gateway {mode}"]
        added = [g - d for g, d in zip(via, direct, strict=True)]
        print(
            f"added ({mode}): p50 {percentile(added, 50):.2f} ms, p99 {percentile(added, 99):.2f}"
            f" ms (gateway minus the direct call made just before it; baseline: the direct row)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args(argv)
    command = "uv run python -m benchmarks.gateway " + " ".join(
        f"--{k} {v}" for k, v in vars(args).items()
    )
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as directory:
        home = Path(directory)
        process, url = redis_server.start(home)
        try:
            results = asyncio.run(bench(args.calls, args.warmup, url, home))
        finally:
            redis_server.stop(process)
    report(results, args.calls, args.warmup, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
