"""A mention's run overhead, from outside: the real web app and an `openhands-bot worker` process,
the fake GitHub, an instant scripted LLM and a warm workspace, mention → final comment p50 over
`--runs`, with its phases and the GitHub calls one run makes; and the baseline, the same scripted
conversation driven straight at an agent-server (`AgentServerClient`) in the same process.

    python -m benchmarks.mention [--runs 5] [--workspace local|server]

`--workspace local` (root, bubblewrap, slirp4netns, nftables): WORKSPACE_KIND=local with the
sandbox warm pool (LOCAL_SANDBOX_POOL=2); each run starts once the pool is full again, so every run
takes a warm sandbox. `server`: one shared, warm agent-server (WORKSPACE_KIND=server).

Phases, each from the 202 that acknowledged the mention: the first GitHub call, the tracking
comment, the last GitHub read before the first LLM call, the first and last LLM calls, the first
Git Data write, the pull request, the final edit of the tracking comment."""
# ruff: noqa: T201

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import time
import uuid
from collections import Counter
from urllib.parse import urlsplit

from redis.asyncio import Redis

from benchmarks._world import WorkerProcess, World, world
from bot.agent.gateway import LLMAccess
from bot.agent.request import llm_settings
from bot.agent.server_client import AgentServerClient
from bot.agent.workspace.netns import HOST_LOOPBACK
from bot.runs.store import RunStatus, RunStore
from tests.fakes import llm as steps
from tests.fakes.github.calls import RecordedRequest
from tests.jobs.test_mention import REPO

FINISHED = {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED}
PHASES = (
    "first GitHub call",
    "tracking comment",
    "context read",
    "first LLM call",
    "last LLM call",
    "publish started",
    "pull request",
    "final comment",
)


def fix_steps() -> list[steps.Reply]:
    return [
        steps.tool_call(
            "terminal",
            command="printf 'def parse(text):\\n    parts = text.split()\\n"
            "    return parts[0] if parts else None\\n' > app.py",
        ),
        steps.finish("Handled empty input in parse()."),
    ]


def _first(requests: list[RecordedRequest], method: str, suffix: str) -> float | None:
    """When the first such request arrived."""
    found = [r.at for r in requests if r.method == method and r.path.endswith(suffix)]
    return min(found) if found else None


async def one(w: World, redis: Redis) -> tuple[dict[str, float], Counter[str], str]:
    mark = len(w.github.requests)
    script, run_id = w.new_run(*fix_steps())
    acked = time.time()
    store = RunStore(redis, 3600)
    status = None
    for _ in range(3000):
        record = await store.get(run_id)
        status = record.status if record else None
        if status in FINISHED:
            break
        await asyncio.sleep(0.02)
    requests = w.github.requests[mark:]
    llm = [r.timestamp for r in w.llm.completions if r.script is script]
    edits = [r.at for r in requests if r.method == "PATCH" and "/issues/comments/" in r.path]
    first_llm = min(llm, default=None)
    reads = [r.at for r in requests if r.method == "GET" and first_llm and r.at < first_llm]
    marks = {
        "first GitHub call": min((r.at for r in requests), default=None),
        "tracking comment": min(
            (r.at for r in requests if r.method == "POST" and r.path.endswith("/comments")),
            default=None,
        ),
        "context read": max(reads, default=None),
        "first LLM call": first_llm,
        "last LLM call": max(llm, default=None),
        "publish started": _first(requests, "POST", "/git/blobs"),
        "pull request": _first(requests, "POST", "/pulls"),
        "final comment": max(edits, default=None),
    }
    phases = {name: at - acked for name, at in marks.items() if at is not None}
    calls = Counter(f"{r.method} {_shape(r.path)}" for r in requests)
    return phases, calls, str(status.value if status else "unfinished")


def _shape(path: str) -> str:
    """/repos/o/r/issues/101/comments → /repos/*/*/issues/N/comments"""
    parts = path.split("/")
    if len(parts) > 3 and parts[1] == "repos":
        parts[2:4] = ["*", "*"]
    return "/".join("N" if p.isdigit() or len(p) == 40 else p for p in parts)


async def direct(w: World, n: int) -> float:
    """The baseline: the same conversation driven straight at the agent-server (a directory
    with the file, create, poll until finished), seconds from the create to `finished`."""
    settings = w.settings
    assert settings.agent_server_url is not None
    key = settings.agent_server_api_key
    root = f"{settings.agent_server_workspace_root}/direct-{n}"
    marker = f"direct-{uuid.uuid4().hex[:12]}"
    assert settings.llm_base_url is not None
    assert settings.llm_api_key is not None
    # Straight at the scripted LLM, as the bot's gateway would relay it.
    direct_llm = LLMAccess(
        settings.llm_base_url, settings.llm_api_key.get_secret_value(), settings.llm_model
    )
    w.llm.script(*fix_steps(), match=marker)
    async with AgentServerClient(
        settings.agent_server_url, key.get_secret_value() if key else None
    ) as client:
        await client.bash(
            f"mkdir -p {root} && printf 'def parse(text):\\n    return text.split()[0]\\n'"
            f" > {root}/app.py"
        )
        body = {
            "conversation_id": str(uuid.uuid4()),
            "agent_settings": {"llm": llm_settings(settings, direct_llm)},
            "workspace": {"kind": "LocalWorkspace", "working_dir": root},
            "initial_message": {
                "role": "user",
                "content": [{"type": "text", "text": f"parse('') raises IndexError ({marker})"}],
                "run": True,
            },
            "max_iterations": 20,
            "autotitle": False,
            "confirmation_policy": {"kind": "NeverConfirm"},
        }
        started = time.time()
        created = await client.create_conversation(body)
        for _ in range(3000):
            info = await client.conversation(created["id"])
            if info.get("execution_status") in {"finished", "error", "stuck"}:
                break
            await asyncio.sleep(0.02)
        return time.time() - started


POOL = 2
READY = "sandbox ready in"  # the worker's log line for a sandbox that joined the pool
FAILED = "a sandbox failed to start"


def use_sandboxes(w: World) -> None:
    """WORKSPACE_KIND=local with the warm pool: clones reach the fake git host through slirp's
    alias for the host's loopback, the only local address the sandboxes may reach."""
    repo = w.github._repos[REPO.lower()]  # the fake's own record (it has no reader for it)
    assert repo.clone_url is not None
    host = urlsplit(repo.clone_url)
    w.github.set_clone_url(REPO, repo.clone_url.replace("127.0.0.1", HOST_LOOPBACK, 1))
    w.settings = w.settings.model_copy(
        update={
            "workspace_kind": "local",
            "local_sandbox": True,
            "local_sandbox_pool": POOL,
            "sandbox_allowed_networks": [f"{HOST_LOOPBACK}:{host.port}"],
            "run_timeout_seconds": 900.0,
        }
    )


async def pool_full(worker: WorkerProcess, taken: int, limit: float = 600.0) -> None:
    """Wait until the worker's pool holds POOL ready sandboxes again (`taken` runs took one). A
    start that failed is tried again only when a run takes a sandbox: one fewer is waited for."""
    deadline = time.monotonic() + limit
    while True:
        text = worker.log.read_text(errors="replace")
        failed = text.count(FAILED)
        if text.count(READY) >= taken + max(1, POOL - failed):
            return
        if worker.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the sandbox pool did not fill:\n{worker.tail()}")
        await asyncio.sleep(0.2)


async def measure(w: World, args: argparse.Namespace) -> None:
    local = args.workspace == "local"
    if local:
        use_sandboxes(w)
    worker = w.start_worker("w1")
    redis = Redis.from_url(w.settings.redis_url)
    try:
        if local:
            print("filling the sandbox pool...", flush=True)
            await pool_full(worker, 0)
        await one(w, redis)  # warm-up: the worker's start, the agent-server's first run
        rows, calls = [], []
        for n in range(args.runs):
            if local:
                await pool_full(worker, n + 1)
            phases, counted, status = await one(w, redis)
            rows.append(phases)
            calls.append(counted)
            print(f"  run: {status}, final comment at {phases.get('final comment', -1):.2f} s")
        baseline = [await direct(w, n) for n in range(args.runs)]
    finally:
        await redis.aclose()
        if args.log:  # the worker's log outlives the benchmark's directory (for profiling)
            shutil.copyfile(worker.log, args.log)
    print(
        f"\nmention → phase, seconds after the 202 (p50 of {args.runs}); settings: "
        f"GITHUB_WRITE_LIMITS={w.settings.github_write_limits}, "
        f"QUEUE_POLL_SECONDS={w.settings.queue_poll_seconds:g}, "
        + (f"workspace local (warm pool of {POOL})" if local else "workspace server (warm)")
    )
    for name in PHASES:
        values = [r[name] for r in rows if name in r]
        if values:
            print(f"  {name:20} {statistics.median(values):6.2f}")
    final = statistics.median(r["final comment"] for r in rows if "final comment" in r)
    own = statistics.median(baseline)
    print(
        f"  baseline: the agent-server's own create → finished for the same conversation, "
        f"p50 {own:.2f} s; the mention takes {final / own:.1f}x that"
    )
    total = statistics.median(sum(c.values()) for c in calls)
    print(f"\nGitHub calls per run (p50): {total:.0f}")
    for call, n in sorted(calls[-1].items(), key=lambda kv: -kv[1]):
        print(f"  {n:3} {call}")


def main(args: argparse.Namespace) -> None:
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores; python {platform.python_version()}; load {load:.1f}")
    with world(lease=30.0) as w:
        asyncio.run(measure(w, args))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workspace", choices=("local", "server"), default="server")
    parser.add_argument("--log", help="copy the worker's log to this file at the end")
    main(parser.parse_args())
