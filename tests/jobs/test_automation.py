"""Automations and API runs end to end: a real agent-server with a scripted LLM, the declared
output on the fake GitHub (a PR in the real repository, an issue), the run record's transitions,
cancelling a running run, and the completion callback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from arq import cron
from arq.worker import Worker
from pydantic import SecretStr
from redis.asyncio import Redis

from bot import keys
from bot.agent.workspace.local import LocalProvider
from bot.config import Settings
from bot.intake.app import create_app
from bot.jobs.worker import automation_tick, worker_options
from bot.runs.store import RunStore
from tests.conftest import Deliverer, run_worker
from tests.fakes import llm as steps
from tests.fakes.callbacks import CallbackReceiver
from tests.fakes.git_host import FakeGitHost
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import ScriptedLLM
from tests.jobs.test_mention import llm_called
from tests.jobs.test_scheduler import at, automation_runs, tick_workers
from tests.repo_config.test_repo_config import CONFIG_PATH, INSTALLATION, OWNER, REPO, push
from tests.servers import ServerThread

TOKEN = "automation-api-token-71c2"
CONFIG = """\
automations:
  - name: Weekly audit
    schedule: "0 9 * * mon"
    prompt: List the files without tests.
    output: issue
"""


@pytest.fixture
def run_settings(agent_settings: Settings) -> Settings:
    return agent_settings.model_copy(
        update={"bot_api_token": SecretStr(TOKEN), "callback_retry_base_seconds": 0.05}
    )


@pytest.fixture
async def world(fake_github: FakeGitHub, git_host: FakeGitHost, redis: Redis) -> FakeGitHost:
    git_host.create_repo(
        REPO, {"README.md": "# app\n", "app.py": "print('hi')\n", CONFIG_PATH: CONFIG}
    )
    fake_github.add_installation(INSTALLATION, OWNER, [REPO])
    await redis.hset(keys.REPO_INSTALLATION, REPO.lower(), INSTALLATION)
    return git_host


@pytest.fixture
async def api(run_settings: Settings, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    with ServerThread(create_app(run_settings), health_path="/healthz", lifespan="on") as web:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=web.url, headers=headers, timeout=10) as client:
            yield client


async def test_an_api_prompt_becomes_a_pull_request_and_a_completed_callback(
    world: FakeGitHost,
    fake_github: FakeGitHub,
    api: httpx.AsyncClient,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    run_settings: Settings,
) -> None:
    llm.script(
        steps.sleep(
            1.5,
            steps.tool_call(
                "terminal", command="printf '# app\\n\\nUsage: run app.py\\n' > README.md"
            ),
        ),
        steps.finish("Documented how to run the app in the README."),
    )
    with CallbackReceiver().serving() as receiver:
        started = await api.post(
            "/api/runs",
            json={
                "repo": REPO,
                "prompt": "Document how to run the app.",
                "output": "pr",
                "callback_url": receiver.url(),
            },
        )
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        worker = asyncio.create_task(run_worker(run_settings, workspaces=agent_server))
        await llm_called(llm)
        assert (await api.get(f"/api/runs/{run_id}")).json()["status"] == "RUNNING"
        await asyncio.wait_for(worker, 240)

        record = (await api.get(f"/api/runs/{run_id}")).json()
        assert record["status"] == "COMPLETED", record
        assert record["outcome"] == "published"
        assert record["cost"] > 0
        assert record["conversation_id"]
        (pr,) = fake_github.created_pulls
        assert record["links"]["pull_request"].endswith(f"/pull/{pr['number']}")
        assert pr["base"] == "main"
        assert pr["head"].startswith("openhands/api-run-")
        assert "Documented how to run the app" in pr["body"]
        assert world.read_file(REPO, pr["head"], "README.md") == b"# app\n\nUsage: run app.py\n"
        # The prompt is the API's, framed as an automation (no issue to resolve).
        assert "Document how to run the app." in llm.completions[0].text

        (call,) = receiver.received
        assert call.body == {
            "status": "COMPLETED",
            "run_id": run_id,
            "conversation_id": record["conversation_id"],
            "cost": round(record["cost"], 6),
            "error": None,
        }


async def test_a_scheduled_automation_files_its_issue(
    world: FakeGitHost,
    fake_github: FakeGitHub,
    deliver: Deliverer,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    run_settings: Settings,
    redis: Redis,
) -> None:
    llm.script(steps.finish("app.py has no tests. README.md is documentation."))
    # Read on Monday 2026-11-23 at 07:59, first ticked at 08:00: nothing is due yet.
    await push(deliver, run_settings, world.rev_parse(REPO, "refs/heads/main"), at(7, 59))
    await tick_workers(run_settings, at(8, 0))
    assert await automation_runs(redis) == []

    # At 09:00 the slot is due; this worker has a real agent-server.
    worker = Worker(
        **{
            **worker_options(
                run_settings, workspaces=agent_server, clock=at(9, 0, 2), scheduled=False
            ),
            "cron_jobs": [cron(automation_tick, second=0, run_at_startup=True)],
        },
        burst=True,
        poll_delay=0,
        handle_signals=False,
    )
    try:
        await worker.main()
    finally:
        await worker.close()

    (issue,) = fake_github.issues
    assert issue["title"] == "Weekly audit: 2026-11-23 09:00 UTC"
    assert "app.py has no tests" in issue["body"]
    (record,) = await RunStore(redis, 3600).recent(kind="automation")
    assert record.status.value == "COMPLETED"
    assert record.trigger == "schedule"
    assert record.links["issue"].endswith(f"/issues/{issue['number']}")
    assert datetime(2026, 11, 23, 9, tzinfo=UTC).strftime("%Y%m%dT%H%MZ") in (record.job_id or "")


async def test_cancelling_a_running_run_interrupts_it(
    world: FakeGitHost,
    fake_github: FakeGitHub,
    api: httpx.AsyncClient,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    run_settings: Settings,
) -> None:
    llm.script(steps.sleep(60, steps.finish("too late")))
    with CallbackReceiver().serving() as receiver:
        started = await api.post(
            "/api/runs",
            json={"repo": REPO, "prompt": "Take forever.", "callback_url": receiver.url()},
        )
        run_id = started.json()["run_id"]
        worker = asyncio.create_task(run_worker(run_settings, workspaces=agent_server))
        await llm_called(llm)
        cancelling = await api.post(f"/api/runs/{run_id}/cancel")
        assert cancelling.status_code == 202
        assert cancelling.json()["status"] == "CANCELLING"
        await asyncio.wait_for(worker, 60)

        record = (await api.get(f"/api/runs/{run_id}")).json()
        assert record["status"] == "CANCELLED"
        assert record["error"] == {"code": "cancelled", "detail": "stopped by the run API"}
        (call,) = receiver.received
        assert call.body["status"] == "FAILED"
        assert call.body["error"] == {"code": "cancelled", "detail": "stopped by the run API"}
    assert fake_github.created_pulls == []
