"""Waiting runs hold no worker slot: one run per thread at a time, first come first served, at
most MAX_RUNS_PER_INSTALLATION per installation, the rest deferred in the queue (PENDING, their
comment saying for what), so another repository's run starts at once. Real Redis, real arq
workers, the real agent-server with a scripted LLM."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from arq.constants import default_queue_name, retry_key_prefix
from pydantic import SecretStr
from redis.asyncio import Redis

from bot import keys
from bot.agent.workspace.local import LocalProvider
from bot.config import Settings
from bot.intake.app import create_app
from bot.jobs import turnstile
from bot.jobs.threads import key as thread_key
from bot.jobs.turnstile import Turnstile
from bot.queue import signing
from bot.queue.enqueue import Enqueuer
from bot.queue.tasks import MentionTask, RepoRef
from bot.runs.store import RunRecord, RunStatus, RunStore
from tests.conftest import Deliverer, run_worker
from tests.fakes import llm as steps
from tests.fakes.git_host import FakeGitHost
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import ScriptedLLM
from tests.jobs.test_mention import (
    INSTALLATION,
    ISSUE,
    REPO,
    WRITER,
    llm_called,
    mention,
    post,
    run_settings,
    tracking_comments,
    world,
)
from tests.servers import ServerThread

__all__ = ["run_settings", "world"]  # fixtures shared with test_mention

OTHER = "acme/lib"
OTHER_INSTALLATION = 32
OTHER_ISSUE = 3
TOKEN = "api-token-for-turn-tests"


def comment_of(github: FakeGitHub, run_id: str) -> dict[str, Any]:
    (found,) = [c for c in tracking_comments(github) if f"openhands-run:{run_id}" in c["body"]]
    return found


async def records(redis: Redis, run_ids: list[str]) -> list[RunRecord]:
    store = RunStore(redis, 3600)
    found = [await store.get(run_id) for run_id in run_ids]
    assert all(record is not None for record in found)
    return [record for record in found if record is not None]


async def until(check: Any, seconds: float = 120) -> None:
    for _ in range(int(seconds * 20)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out waiting")


# ----------------------------------------------------------------------------- the turnstile


def gate(name: str = "t", capacity: int = 1, stale_ms: int = 60_000) -> Turnstile:
    return Turnstile(name, capacity, hold_ms=600_000, stale_ms=stale_ms)


async def test_places_go_first_come_first_served_and_a_leaver_wakes_the_next(
    redis: Redis,
) -> None:
    two = gate(capacity=2)

    async def enter(run: str, arrival: int, now: int = 10_000) -> list[str] | None:
        return await turnstile.enter(redis, two, run, f"job-{run}", arrival_ms=arrival, now_ms=now)

    assert await enter("a", 1) is None
    assert await enter("b", 2) is None
    # Full: later arrivals wait in line, in arrival order whatever order they look in.
    assert await enter("d", 4) == ["a", "b"]
    assert await enter("c", 3) == ["a", "b"]
    await redis.zadd(default_queue_name, {"job-c": 99_000, "job-d": 99_000})
    # "a" leaves: the first in line is woken (its deferred job moved to the queue's front)...
    assert await turnstile.leave(redis, two, "a", now_ms=10_100) == 1
    assert await redis.zscore(default_queue_name, "job-c") == 10_100
    assert await redis.zscore(default_queue_name, "job-d") == 99_000
    # ... and "d", looking first, does not take the place "c" is owed.
    assert await enter("d", 4, now=10_200) == ["b"]
    assert await enter("c", 3, now=10_300) is None
    assert await turnstile.holders(redis, two) == ["b", "c"]
    assert await enter("c", 3, now=10_400) is None  # a holder entering again keeps its place


async def test_a_waiter_gone_quiet_is_passed_over_until_it_comes_back(redis: Redis) -> None:
    one = gate(stale_ms=1_000)
    assert await turnstile.enter(redis, one, "a", "ja", arrival_ms=1, now_ms=10_000) is None
    assert await turnstile.enter(redis, one, "b", "jb", arrival_ms=2, now_ms=10_000) == ["a"]
    assert await turnstile.enter(redis, one, "c", "jc", arrival_ms=3, now_ms=10_500) == ["a"]
    await turnstile.leave(redis, one, "a", now_ms=12_000)
    # "b" has not looked for 2 s (its job lost, say): "c" goes first rather than wait forever.
    assert await turnstile.enter(redis, one, "c", "jc", arrival_ms=3, now_ms=12_100) is None
    # "b" comes back: first in line again by its arrival.
    assert await turnstile.enter(redis, one, "b", "jb", arrival_ms=2, now_ms=12_200) == ["c"]
    assert await turnstile.enter(redis, one, "e", "je", arrival_ms=5, now_ms=12_300) == ["c"]
    await turnstile.leave(redis, one, "c", now_ms=12_400)
    assert await turnstile.enter(redis, one, "e", "je", arrival_ms=5, now_ms=12_500) == []
    assert await turnstile.enter(redis, one, "b", "jb", arrival_ms=2, now_ms=12_600) is None


async def test_a_run_queued_first_goes_first_whichever_worker_looks_first(
    redis: Redis, settings: Settings
) -> None:
    """Runs join their lines when they are queued: the second run's worker looking first (it
    got through its permission check sooner) does not take the thread from the first."""
    enqueuer = Enqueuer(redis, key=signing.keys_for(settings).queue)
    repo = RepoRef(owner="octo", name="app")
    first, second = (
        MentionTask(
            run_id=f"run-{n}",
            delivery_id=f"delivery-{n}",
            event="issue_comment",
            installation_id=INSTALLATION,
            repo=repo,
            sender=WRITER,
            trigger="issue_comment",
            number=ISSUE,
            is_pull_request=False,
            instruction=f"step {n}",
        )
        for n in (1, 2)
    )
    try:
        assert await enqueuer.enqueue(first) == "queued"
        assert await enqueuer.enqueue(second) == "queued"
        assert await enqueuer.enqueue(first) == "duplicate"  # joins nothing twice
    finally:
        await enqueuer.close()
    thread = gate(keys.thread_line(keys.thread(REPO, ISSUE)))
    slots = gate(keys.installation_line(INSTALLATION), capacity=5)
    now = int(time.time() * 1000)
    for line in (thread, slots):
        waiting = await redis.zrange(keys.TURN_LINE_PREFIX + line.name, 0, -1)
        assert waiting == [b"run-1", b"run-2"]

    async def enter(run: str, line: Turnstile) -> list[str] | None:
        return await turnstile.enter(redis, line, run, run, arrival_ms=now, now_ms=now)

    assert await enter("run-2", thread) == []  # free, but run-1 is ahead in line
    assert await enter("run-1", thread) is None
    assert await enter("run-2", slots) is None  # five slots: nobody waits there
    # run-1 is done: the thread is run-2's.
    await turnstile.leave(redis, thread, "run-1", now_ms=now)
    assert await enter("run-2", thread) is None


# ----------------------------------------------------------------------------- end to end


@pytest.fixture
def other_repo(world: FakeGitHub, git_host: FakeGitHost) -> FakeGitHub:
    """A second repository, under an installation of its own."""
    git_host.create_repo(OTHER, {"README.md": "# lib\n"})
    world.add_installation(OTHER_INSTALLATION, "acme", [OTHER])
    world.set_permission(OTHER, WRITER, "write")
    world.add_issue(OTHER, OTHER_ISSUE, "Document the API", "Nothing is documented.", "reporter")
    return world


async def test_ten_mentions_on_one_thread_leave_the_worker_to_another_repository(
    other_repo: FakeGitHub,
    deliver: Deliverer,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    run_settings: Settings,
    redis: Redis,
) -> None:
    github = other_repo
    # The first run's answer takes long enough for the nine to be started, gated and told to
    # wait through three worker slots on a busy machine (its LLM timeout allows for it).
    small = run_settings.model_copy(update={"max_jobs": 3, "llm_timeout_seconds": 120.0})
    llm.script(steps.finish("The API is now documented."), match="[[other]]")
    # Every run on the thread asks the default script, in turn: the first takes its time.
    llm.script(
        steps.sleep(45, steps.finish("answer 1")),
        *(steps.finish(f"answer {n}") for n in range(2, 11)),
    )
    ten = [post(github, deliver, mention(f"@openhands step {n}")) for n in range(1, 11)]
    worker = asyncio.create_task(run_worker(small, workspaces=agent_server))
    await llm_called(llm)

    async def all_waiting() -> bool:  # each has a record, PENDING, and has said it waits
        told = [await redis.exists(keys.WAITING_PREFIX + run_id) for run_id in ten[1:]]
        return all(told) and all(
            r.status is RunStatus.PENDING for r in await records(redis, ten[1:])
        )

    await until(all_waiting)
    # Nine runs wait for the thread, holding none of the three worker slots: another
    # repository's mention starts at once, while the first run still works.
    asking = mention(
        "@openhands document [[other]]",
        repo=OTHER,
        installation=OTHER_INSTALLATION,
        number=OTHER_ISSUE,
    )
    other = post(github, deliver, asking)
    await asyncio.wait_for(worker, 240)

    first, *_ = await records(redis, ten)
    (asked,) = [
        r for r in llm.completions if r.script is not None and r.script.match == "[[other]]"
    ]
    assert first.finished_at is not None
    assert asked.timestamp < first.finished_at
    (done,) = await records(redis, [other])
    assert done.status is RunStatus.COMPLETED
    assert "The API is now documented." in comment_of(github, other)["body"]
    # The ten ran one after another, each once, in the order they were asked.
    runs = await records(redis, ten)
    assert [r.status for r in runs] == [RunStatus.COMPLETED] * 10
    for before, after in itertools.pairwise(runs):
        assert before.finished_at is not None
        assert after.started_at is not None
        assert after.started_at >= before.finished_at
    for n, run_id in enumerate(ten, start=1):
        comment = comment_of(github, run_id)
        assert f"answer {n}" in comment["body"]
        waited = any("waiting for run" in body for body in comment["history"])
        assert waited is (n > 1)
    assert [r["content"] for r in github.reactions] == ["eyes"] * 11
    llm.assert_script_done()
    assert len(llm.completions) == 11


async def test_an_installation_runs_at_most_its_share_at_once(
    world: FakeGitHub,
    deliver: Deliverer,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    run_settings: Settings,
    redis: Redis,
) -> None:
    world.add_issue(REPO, 8, "Slow start", "Startup takes ten seconds.", "reporter")
    capped = run_settings.model_copy(update={"max_runs_per_installation": 1})
    llm.script(steps.sleep(3, steps.finish("Parsing is fixed.")), match="[[seven]]")
    llm.script(steps.finish("Startup is faster."), match="[[eight]]")
    seven = post(world, deliver, mention("@openhands [[seven]]"))
    eight = post(world, deliver, mention("@openhands [[eight]]", number=8))

    await run_worker(capped, workspaces=agent_server)

    first, second = await records(redis, [seven, eight])
    assert (first.status, second.status) == (RunStatus.COMPLETED, RunStatus.COMPLETED)
    assert first.finished_at is not None
    assert second.started_at is not None
    assert second.started_at >= first.finished_at
    history = comment_of(world, eight)["history"]
    assert any("waiting for a free run slot" in body for body in history)
    assert "Startup is faster." in comment_of(world, eight)["body"]


@pytest.fixture
async def api(settings: Settings, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update={"bot_api_token": SecretStr(TOKEN)}))
    with ServerThread(app, health_path="/healthz", lifespan="on") as server:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10) as client:
            yield client


async def test_a_waiting_run_uses_no_tries_and_cancelled_says_so_and_leaves_the_line(
    fake_github: FakeGitHub,
    deliver: Deliverer,
    api: httpx.AsyncClient,
    settings: Settings,
    redis: Redis,
) -> None:
    fake_github.add_repo(REPO)
    fake_github.add_installation(INSTALLATION, "octo", [REPO])
    fake_github.add_issue(REPO, ISSUE, "Crash", "It crashes.", "reporter")
    fake_github.set_permission(REPO, WRITER, "write")
    thread = Turnstile(f"thread:{thread_key(REPO, ISSUE)}", 1, hold_ms=600_000, stale_ms=60_000)
    now = int(time.time() * 1000)
    assert (
        await turnstile.enter(redis, thread, "another-run", "j", arrival_ms=1, now_ms=now) is None
    )
    run_id = post(fake_github, deliver, mention("@openhands hi"))
    quick = settings.model_copy(update={"wait_poll_seconds": 0.05, "max_jobs": 1})
    worker = asyncio.create_task(run_worker(quick))

    async def waited_a_while() -> bool:
        return len(fake_github.requests_to("GET", r"/collaborators/")) == 1 and bool(
            await redis.zscore(keys.TURN_LINE_PREFIX + thread.name, run_id)
        )

    await until(waited_a_while)
    await asyncio.sleep(1)  # some twenty looks at the thread, far more than arq's five tries
    assert int(await redis.get(retry_key_prefix + run_id) or 0) <= 1
    record = await RunStore(redis, 3600).get(run_id)
    assert record is not None
    assert record.status is RunStatus.PENDING
    assert "waiting for run `another-run` to finish" in comment_of(fake_github, run_id)["body"]

    cancelled = await api.post(f"/api/runs/{run_id}/cancel")
    assert cancelled.json()["status"] == "CANCELLED"
    await asyncio.wait_for(worker, 30)

    assert "Stopped by the run API." in comment_of(fake_github, run_id)["body"]
    assert await redis.zscore(keys.TURN_LINE_PREFIX + thread.name, run_id) is None
    assert await turnstile.holders(redis, thread) == ["another-run"]
    assert len(fake_github.reactions) == 1  # 👀 once, not at every look
