"""A run whose worker stops (SIGTERM, as every deploy sends) or dies (SIGKILL) is taken up by
another worker by itself: one pull request, one tracking comment finalized, one callback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from bot.agent.prompts import CONTINUE_AFTER_RESTART
from bot.agent.request import conversation_id_for
from bot.agent.server_client import AgentServerClient
from bot.agent.workspace.factory import make_provider
from bot.agent.workspace.local import LocalProvider
from bot.config import Settings
from bot.github import messages
from bot.jobs.worker import make_worker
from bot.runs.store import RunStatus, RunStore
from tests.conftest import Deliverer
from tests.fakes import llm as steps
from tests.fakes.callbacks import CallbackReceiver
from tests.fakes.git_host import FakeGitHost
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import ScriptedLLM
from tests.jobs.test_mention import (
    ISSUE,
    REPO,
    llm_called,
    mention,
    post,
    run_settings,
    tracking_comments,
    world,
)
from tests.paths import ROOT

__all__ = ["run_settings", "world"]  # fixtures this module uses from test_mention

LEASE = 3.0  # seconds: the shortest claim settings allow, so the test is quick
BRANCH = f"openhands/issue-{ISSUE}-crash-on-empty-input"


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    with CallbackReceiver().serving() as fake:
        yield fake


@pytest.fixture
def resume_settings(
    run_settings: Settings, receiver: CallbackReceiver, agent_server: LocalProvider
) -> Settings:
    """A `server` workspace on the session's agent-server, so a worker in another process
    (which cannot be handed a provider) runs on it too; completion callbacks to `receiver`."""
    return run_settings.model_copy(
        update={
            "worker_lease_seconds": LEASE,
            "automation_callback_url": receiver.url(),
            "workspace_kind": "server",
            "agent_server_url": agent_server.url,
            "agent_server_api_key": SecretStr(agent_server.api_key or ""),
            "agent_server_workspace_root": str(agent_server.workspaces_dir / "resume"),
        }
    )


def script_with_a_hang_first(llm: ScriptedLLM) -> None:
    """The first conversation hangs in its first LLM call; the re-run's fixes the bug."""
    llm.script(
        steps.sleep(120, steps.finish("too late")),
        steps.tool_call(
            "terminal",
            command="printf 'def parse(text):\\n    parts = text.split()\\n"
            "    return parts[0] if parts else None\\n' > app.py",
        ),
        steps.finish("Handled empty input in parse()."),
    )


async def second_call(llm: ScriptedLLM, since: float) -> float:
    """Seconds from `since` until the re-run's conversation asked the LLM (its second call)."""
    for _ in range(1800):
        if len(llm.completions) >= 2:
            return time.monotonic() - since
        await asyncio.sleep(0.1)
    raise AssertionError("the run was never taken up again")


async def finish_in_burst(settings: Settings) -> None:
    worker = make_worker(
        settings,
        workspaces=make_provider(settings),
        scheduled=False,
        burst=True,
        poll_delay=0.1,
        handle_signals=False,
    )
    try:
        await asyncio.wait_for(worker.main(), 240)
    finally:
        await worker.close()


async def assert_one_of_everything(
    world: FakeGitHub,
    git_host: FakeGitHost,
    receiver: CallbackReceiver,
    redis: Redis,
    llm: ScriptedLLM,
    *,
    continued: bool = True,
) -> None:
    (pr,) = world.created_pulls
    assert pr["head"] == BRANCH
    new = git_host.read_file(REPO, BRANCH, "app.py")
    assert new is not None
    assert b"parts[0] if parts else None" in new
    (comment,) = tracking_comments(world)
    assert f"Opened #{pr['number']}" in comment["body"]
    assert messages.RESUMED_NOTE.format(tries=2) in comment["body"]
    records = await RunStore(redis, 3600).recent(limit=10)
    (record,) = records
    assert record.status is RunStatus.COMPLETED
    for _ in range(100):  # the callback is its own job, right after the run
        if receiver.received:
            break
        await asyncio.sleep(0.1)
    (callback,) = receiver.received
    assert callback.body["status"] == "COMPLETED"
    assert callback.body["run_id"] == record.run_id

    if continued:
        # The interrupted conversation and its checkout outlived the worker (a `server`
        # workspace): the re-run continued it rather than starting over.
        assert record.conversation_id == conversation_id_for(record.run_id, "")
        assert CONTINUE_AFTER_RESTART in llm.completions[1].text
    else:  # the workspace was gone: a conversation of its own, on a fresh checkout
        assert record.conversation_id == conversation_id_for(record.run_id, "try2")
        assert CONTINUE_AFTER_RESTART not in llm.completions[1].text


@pytest.mark.parametrize("survived", [True, False], ids=["workspace-kept", "workspace-gone"])
async def test_a_run_stopped_by_sigterm_is_resumed_by_the_next_worker(
    survived: bool,
    world: FakeGitHub,
    git_host: FakeGitHost,
    deliver: Deliverer,
    llm: ScriptedLLM,
    resume_settings: Settings,
    receiver: CallbackReceiver,
    redis: Redis,
) -> None:
    script_with_a_hang_first(llm)
    post(world, deliver, mention("@openhands fix this please"))
    first = make_worker(
        resume_settings,
        workspaces=make_provider(resume_settings),
        scheduled=False,
        poll_delay=0.1,
        handle_signals=False,
    )
    running = asyncio.create_task(first.async_run())
    await llm_called(llm)
    first.handle_sig(signal.SIGTERM)  # a deploy: arq cancels the running job
    stopped = time.monotonic()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(running, 60)
    await first.close()
    (comment,) = tracking_comments(world)
    assert messages.RESUMING in comment["body"]
    if not survived:  # as when a runtime sandbox went with the worker
        shutil.rmtree(resume_settings.agent_server_workspace_root)

    waited = asyncio.create_task(second_call(llm, stopped))
    await finish_in_burst(resume_settings)
    # No lease to wait out after a clean shutdown: the next worker takes it up at once.
    assert await waited < 60
    await assert_one_of_everything(world, git_host, receiver, redis, llm, continued=survived)


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as the environment a worker process reads them from."""
    env: dict[str, str] = {}
    for name, value in settings:
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, list):
            value = ",".join(str(v) for v in value)
        env[name.upper()] = str(value)
    return env


def start_worker_process(settings: Settings, home: Path) -> subprocess.Popen[bytes]:
    """`openhands-bot worker` in a process of its own, logging to `home/worker.log`."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "PYTHONPATH": str(ROOT),
        **settings_env(settings),
    }
    with (home / "worker.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "bot.ops.cli", "worker"],
            cwd=home,  # no .env there
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def test_a_run_whose_worker_is_killed_is_taken_up_within_the_lease(
    world: FakeGitHub,
    git_host: FakeGitHost,
    deliver: Deliverer,
    llm: ScriptedLLM,
    resume_settings: Settings,
    receiver: CallbackReceiver,
    redis: Redis,
    tmp_path: Path,
) -> None:
    script_with_a_hang_first(llm)
    post(world, deliver, mention("@openhands fix this please"))
    process = start_worker_process(resume_settings, tmp_path)
    try:
        await llm_called(llm)
    finally:
        process.kill()  # SIGKILL: no handler runs, the claim is left behind
        await asyncio.to_thread(process.wait, 30)
    killed = time.monotonic()
    (comment,) = tracking_comments(world)
    assert "- [ ] **" in comment["body"]  # still a checklist: frozen mid-run until taken up

    waited = asyncio.create_task(second_call(llm, killed))
    await finish_in_burst(resume_settings)
    # The dead worker's claim runs out within its lease; the poll and the start come on top.
    assert await waited < LEASE + 30, (tmp_path / "worker.log").read_text()[-3000:]
    await assert_one_of_everything(world, git_host, receiver, redis, llm)
    # The dead worker's conversation went on on the server that outlived it: the re-run
    # stopped it, so two agents never worked in one checkout.
    (record,) = await RunStore(redis, 3600).recent(limit=1)
    key = resume_settings.agent_server_api_key
    assert resume_settings.agent_server_url is not None
    client = AgentServerClient(
        resume_settings.agent_server_url, key.get_secret_value() if key else None
    )
    try:
        first = await client.conversation(conversation_id_for(record.run_id, ""))
    finally:
        await client.aclose()
    assert first.get("execution_status") != "running", first
