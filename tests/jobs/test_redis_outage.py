"""Redis going away mid-run is a fault the bot rides out: the worker process stays up, the run in
flight finishes its agent work and writes its record and comment once Redis is back, once."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.agent.workspace.local import LocalProvider
from bot.config import Settings
from bot.intake.app import create_app
from bot.jobs.worker import make_worker
from bot.runs.store import RunStatus, RunStore
from tests import redis_server
from tests.conftest import Deliverer
from tests.fakes import llm as steps
from tests.fakes.git_host import FakeGitHost
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import ScriptedLLM
from tests.helpers import free_port
from tests.jobs.test_mention import (
    llm_called,
    mention,
    post,
    run_settings,
    tracking_comments,
    world,
)
from tests.servers import ServerThread

__all__ = ["run_settings", "world"]  # fixtures this module uses from test_mention

OUTAGE_SECONDS = 12.0  # longer than the lease below: claims lapse while Redis is away


class StoppableRedis:
    """A redis-server of this test's own that keeps its data across a stop and comes back on
    the same port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process, _ = redis_server.start(self.directory, port=self.port, persistent=True)

    def stop(self) -> None:
        assert self.process is not None
        redis_server.stop(self.process, grace=30)


@pytest.fixture
def outage_redis(tmp_path: Path) -> Iterator[StoppableRedis]:
    server = StoppableRedis(tmp_path / "redis")
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()


async def test_a_run_in_flight_rides_out_a_redis_outage(
    world: FakeGitHub,
    git_host: FakeGitHost,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    run_settings: Settings,
    outage_redis: StoppableRedis,
) -> None:
    settings = run_settings.model_copy(
        update={
            "redis_url": outage_redis.url,
            "worker_lease_seconds": 3.0,
            "redis_outage_seconds": 60.0,
            # The first answer takes half the outage, and its charge waits for Redis: the
            # agent-server must not give up on it on a busy machine (this is no LLM test).
            "llm_timeout_seconds": 40.0,
        }
    )
    llm.script(
        # The agent is busy in its first LLM call while Redis goes away and comes back.
        steps.sleep(
            OUTAGE_SECONDS / 2,
            steps.tool_call(
                "terminal",
                command="printf 'def parse(text):\\n    parts = text.split()\\n"
                "    return parts[0] if parts else None\\n' > app.py",
            ),
        ),
        steps.finish("Handled empty input in parse()."),
    )
    web = ServerThread(create_app(settings), health_path="/healthz", lifespan="on")
    with web, Deliverer(web.url) as deliver:
        post(world, deliver, mention("@openhands fix this please"))
    worker = make_worker(
        settings, workspaces=agent_server, scheduled=False, poll_delay=0.1, handle_signals=False
    )
    running = asyncio.create_task(worker.async_run())
    try:
        await llm_called(llm)
        await asyncio.to_thread(outage_redis.stop)
        await asyncio.sleep(OUTAGE_SECONDS)
        assert not running.done(), "the worker gave up while Redis was away"
        await asyncio.to_thread(outage_redis.start)
        for _ in range(1200):
            if world.created_pulls and any(
                "Opened #" in c["body"] for c in tracking_comments(world)
            ):
                break
            await asyncio.sleep(0.1)
    finally:
        worker.handle_sig(signal.SIGTERM)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(running, 60)
        with contextlib.suppress(asyncio.CancelledError):  # a run SIGTERM cut short
            await worker.close()

    assert world.created_pulls, (  # what the run got to, when it did not finish
        f"no pull request; LLM calls {len(llm.completions)}, unexpected {llm.unexpected}, "
        f"tracking {[c['body'][:200] for c in tracking_comments(world)]}"
    )
    (pr,) = world.created_pulls  # once: no second run of the same job
    (comment,) = tracking_comments(world)
    assert f"#{pr['number']}" in comment["body"]
    assert len(llm.completions) == 2  # one conversation: the run was not started over
    client = Redis.from_url(outage_redis.url)
    try:
        (record,) = await RunStore(client, 3600).recent(limit=10)
        assert record.status is RunStatus.COMPLETED
    finally:
        await client.aclose()


async def test_the_web_answers_503_while_redis_is_away_and_queues_again_after(
    world: FakeGitHub, run_settings: Settings, outage_redis: StoppableRedis
) -> None:
    settings = run_settings.model_copy(update={"redis_url": outage_redis.url})
    web = ServerThread(create_app(settings), health_path="/healthz", lifespan="on")
    with web, Deliverer(web.url) as deliver:
        await asyncio.to_thread(outage_redis.stop)
        payload = mention("@openhands fix this please")
        refused = deliver.post("issue_comment", payload, delivery_id="during-the-outage")
        assert refused.status_code == 503  # not acknowledged: GitHub delivers it again
        assert deliver.client.get(web.url + "/readyz").status_code == 503
        assert deliver.client.get(web.url + "/healthz").status_code == 200  # the process is up
        await asyncio.to_thread(outage_redis.start)
        again = deliver.post("issue_comment", payload, delivery_id="during-the-outage")
        assert again.status_code == 202, again.text
        assert deliver.client.get(web.url + "/readyz").status_code == 200
