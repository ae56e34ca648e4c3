"""The three workspace providers: the same run on each, and bounded failures when one is down."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from bot.agent.run import RunSpec, run_agent
from bot.agent.workspace.factory import make_provider
from bot.agent.workspace.local import LocalProvider
from bot.agent.workspace.runtime import RuntimeProvider
from bot.agent.workspace.sandboxed import SandboxProvider
from bot.agent.workspace.server import ServerProvider
from bot.config import Settings
from bot.errors import WorkspaceError
from bot.queue.tasks import RepoRef
from tests.agent.test_agent_run import clone_token
from tests.conftest import serving_gateway
from tests.fakes import llm as steps
from tests.fakes.git_host import FakeGitHost
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import ScriptedLLM
from tests.fakes.runtime_api import FakeRuntimeAPI

REPO = "octo/tools"


@pytest.fixture
def repo(fake_github: FakeGitHub, git_host: FakeGitHost) -> str:
    git_host.create_repo(REPO, {"README.md": "tools\n"})
    fake_github.add_installation(7, "octo", [REPO])
    return git_host.clone_url(REPO)


def _spec(clone_url: str) -> RunSpec:
    return RunSpec(
        run_id=f"ws-{uuid.uuid4().hex[:10]}",
        installation_id=7,
        repo=RepoRef(owner="octo", name="tools"),
        clone_url=clone_url,
        prompt="Add a CHANGELOG",
    )


def _script(llm: ScriptedLLM) -> None:
    llm.script(
        steps.tool_call("terminal", command="echo '# Changelog' > CHANGELOG.md"),
        steps.finish("added CHANGELOG.md"),
    )


async def test_server_provider_runs_on_an_existing_agent_server(
    repo: str,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    agent_settings: Settings,
    redis: Redis,
) -> None:
    _script(llm)
    provider = ServerProvider(
        agent_server.url, agent_server.api_key, str(agent_server.workspaces_dir / "server-kind")
    )
    spec = _spec(repo)
    async with serving_gateway(agent_settings, redis) as gateway:
        run = await run_agent(
            agent_settings,
            provider,
            spec,
            gateway=gateway,
            clone_token=await clone_token(agent_settings, redis, spec),
        )
        usage = await gateway.usage(spec.run_id)
    assert run.result.status == "finished", run.result.error
    # Item 8: a `server` workspace reaches the LLM only through the gateway, as its run.
    assert usage.calls == len(llm.completions) > 0
    assert [c.path for c in run.result.changes] == ["CHANGELOG.md"]
    assert run.result.changes[0].content == b"# Changelog\n"


async def test_runtime_provider_gets_a_sandbox_per_run_and_stops_it(
    repo: str, llm: ScriptedLLM, agent_settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    _script(llm)
    runtime = FakeRuntimeAPI(tmp_path / "runtimes")
    with runtime.serving():
        settings = agent_settings.model_copy(
            update={
                "workspace_kind": "runtime",
                "runtime_api_url": runtime.url,
                "runtime_api_key": SecretStr("rt-key"),
                "runtime_working_dir": str(tmp_path / "sandbox"),
                "workspace_start_timeout_seconds": 240,
            }
        )
        provider = make_provider(settings)
        assert isinstance(provider, RuntimeProvider)
        spec = _spec(repo)
        async with serving_gateway(settings, redis) as gateway:
            run = await run_agent(
                settings,
                provider,
                spec,
                gateway=gateway,
                clone_token=await clone_token(settings, redis, spec),
            )
            usage = await gateway.usage(spec.run_id)

        assert run.result.status == "finished", run.result.error
        assert usage.calls == len(llm.completions) > 0  # through the gateway, as this run
        assert [c.path for c in run.result.changes] == ["CHANGELOG.md"]
        (started,) = runtime.started
        assert started["session_id"] == spec.run_id
        assert started["working_dir"] == str(tmp_path / "sandbox")
        assert runtime.stopped == [started["runtime_id"]]
        assert runtime.running == []
        assert runtime.rejected == []


@pytest.mark.parametrize("kind", ["server", "runtime"])
async def test_an_unreachable_workspace_fails_clearly_and_quickly(
    kind: str, repo: str, agent_settings: Settings, redis: Redis, llm: ScriptedLLM
) -> None:
    settings = agent_settings.model_copy(
        update={
            "workspace_kind": kind,
            "agent_server_url": "http://127.0.0.1:9",
            "runtime_api_url": "http://127.0.0.1:9",
            "workspace_start_timeout_seconds": 5,
        }
    )
    provider = make_provider(settings)
    started = time.monotonic()
    async with serving_gateway(settings, redis) as gateway:
        run = await run_agent(
            settings,
            provider,
            _spec(repo),
            gateway=gateway,
            clone_token=await clone_token(settings, redis, _spec(repo)),
        )
    assert run.result.status == "error"
    assert run.result.error is not None
    assert run.result.error.code == "workspace"
    assert "127.0.0.1:9" in run.result.error.detail
    assert time.monotonic() - started < 15


async def test_the_local_server_is_restarted_when_it_dies(
    agent_server: LocalProvider,
) -> None:
    pid = agent_server.pid
    assert pid is not None
    import os
    import signal

    os.killpg(pid, signal.SIGKILL)
    async with agent_server.open(f"restart-{uuid.uuid4().hex[:6]}") as ws:
        result = await ws.client.bash("echo alive", limit_seconds=10)
    assert result.stdout.strip() == "alive"
    assert agent_server.pid != pid


def test_local_is_the_default_and_sandboxed(settings: Settings) -> None:
    assert isinstance(make_provider(settings), SandboxProvider)
    unsandboxed = settings.model_copy(update={"local_sandbox": False})
    assert isinstance(make_provider(unsandboxed), LocalProvider)


async def test_local_open_fails_clearly_when_the_server_cannot_start(tmp_path: Path) -> None:
    provider = LocalProvider(tmp_path / "state", start_timeout=0.5)
    with pytest.raises(WorkspaceError, match=r"did not start|exited"):
        async with provider.open("never"):
            pass
    await provider.close()
