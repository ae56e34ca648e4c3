"""Agent runs on the real agent-server, with a scripted LLM and a git host on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from bot.agent.gateway.credentials import Credentials
from bot.agent.request import worst_case_llm_seconds
from bot.agent.results import Progress
from bot.agent.run import AgentRun, RunSpec, run_agent
from bot.agent.server_client import AgentServerClient
from bot.agent.workspace.base import Workspace
from bot.agent.workspace.local import LocalProvider
from bot.config import Settings
from bot.github.auth import READ_ONLY
from bot.github.client import GitHubApp
from bot.queue.tasks import RepoRef
from tests.conftest import BOT_SECRETS, serving_gateway
from tests.fakes import llm as steps
from tests.fakes.git_host import FakeGitHost
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import ScriptedLLM

REPO = "octo/app"
INSTALLATION = 31


@pytest.fixture
def repo(fake_github: FakeGitHub, git_host: FakeGitHost) -> dict[str, str | bytes]:
    files: dict[str, str | bytes] = {
        "README.md": "# app\n",
        "old.txt": "remove me\n",
        "src/main.py": "print('hello')\n",
    }
    git_host.create_repo(REPO, files)
    fake_github.add_installation(INSTALLATION, "octo", [REPO])
    return files


def _spec(git_host: FakeGitHost, prompt: str, **kw: object) -> RunSpec:
    return RunSpec(
        run_id=f"run-{uuid.uuid4().hex[:12]}",
        installation_id=INSTALLATION,
        repo=RepoRef(owner="octo", name="app"),
        clone_url=git_host.clone_url(REPO),
        prompt=prompt,
        **kw,  # type: ignore[arg-type]
    )


def _workdir(agent_server: LocalProvider, spec: RunSpec) -> str:
    return str(agent_server.workspaces_dir / spec.run_id / "repo")


async def clone_token(settings: Settings, redis: Redis, spec: RunSpec) -> str:
    """What the jobs layer hands the agent: a read-only token for the one repository."""
    token = await GitHubApp(settings, redis).installation_token(
        spec.installation_id, repositories=[spec.repo.name], permissions=READ_ONLY
    )
    return token.token


async def _run(
    settings: Settings,
    agent_server: LocalProvider,
    redis: Redis,
    spec: RunSpec,
    progress: list[Progress] | None = None,
) -> AgentRun:
    async def record(p: Progress) -> None:
        if progress is not None:
            progress.append(Progress(p.steps, p.last_action, p.cost, p.status))

    token = await clone_token(settings, redis, spec)
    async with serving_gateway(settings, redis) as gateway:
        return await run_agent(
            settings, agent_server, spec, gateway=gateway, clone_token=token, on_progress=record
        )


async def test_the_agent_edits_adds_and_deletes_files(
    repo: dict[str, str | bytes],
    git_host: FakeGitHost,
    fake_github: FakeGitHub,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    agent_settings: Settings,
    redis: Redis,
) -> None:
    spec = _spec(git_host, "Tidy the repo [[edit-test]]")
    work = _workdir(agent_server, spec)
    llm.script(
        steps.tool_call("terminal", command="echo 'more' >> README.md && rm old.txt && mkdir docs"),
        steps.tool_call(
            "file_editor", command="create", path=f"{work}/docs/new.md", file_text="new file\n"
        ),
        steps.tool_call("terminal", command="printf '\\x00\\x01\\xff' > blob.bin"),
        steps.finish("Tidied: edited README, added docs/new.md and blob.bin, removed old.txt"),
    )
    progress: list[Progress] = []

    run = await _run(agent_settings, agent_server, redis, spec, progress)

    result = run.result
    assert result.status == "finished", result.error
    assert "Tidied" in result.final_response
    changes = {c.path: c for c in result.changes}
    assert set(changes) == {"README.md", "old.txt", "docs/new.md", "blob.bin"}
    assert changes["README.md"].status == "modified"
    assert changes["README.md"].content == b"# app\nmore\n"
    assert changes["old.txt"].status == "deleted"
    assert changes["old.txt"].content is None
    assert changes["docs/new.md"].status == "added"
    assert changes["docs/new.md"].content == b"new file\n"
    assert changes["blob.bin"].content == b"\x00\x01\xff"
    assert result.steps == 4
    # Cost from the configured per-token prices and the scripted LLM's token counts.
    prompt_tokens = sum(r.usage.prompt_tokens for r in llm.completions if r.usage)
    completion_tokens = sum(r.usage.completion_tokens for r in llm.completions if r.usage)
    assert result.prompt_tokens == prompt_tokens
    assert result.cost == pytest.approx(prompt_tokens * 3e-6 + completion_tokens * 15e-6)
    assert progress
    assert progress[-1].steps == 4
    assert any("terminal" in p.last_action for p in progress)
    # The clone used a read-only token narrowed to this repository.
    (token,) = fake_github.token_log
    assert token["repositories"] == ["app"]
    assert token["permissions"] == {"contents": "read", "metadata": "read"}
    llm.assert_script_done()


async def test_repo_skills_reach_the_llm(
    fake_github: FakeGitHub,
    git_host: FakeGitHost,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    agent_settings: Settings,
    redis: Redis,
) -> None:
    git_host.create_repo(
        REPO,
        {
            "AGENTS.md": "Always run `make lint-7731` before finishing.\n",
            ".agents/skills/deploy/SKILL.md": (
                "---\nname: deploy\ndescription: How to deploy this repo\n"
                "triggers:\n- deploykw\n---\nDeploy with the blue-green-4412 script.\n"
            ),
        },
    )
    fake_github.add_installation(INSTALLATION, "octo", [REPO])
    llm.script(steps.finish("done"))

    run = await _run(agent_settings, agent_server, redis, _spec(git_host, "Please deploykw now"))

    assert run.result.status == "finished", run.result.error
    sent = llm.all_text()
    assert "make lint-7731" in llm.system_prompt(0)
    assert "blue-green-4412" in sent


async def test_the_llm_failing_is_classified_within_seconds(
    repo: dict[str, str | bytes],
    git_host: FakeGitHost,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    agent_settings: Settings,
    redis: Redis,
) -> None:
    llm.script(steps.error(500), steps.error(500), match="[[five-hundred]]")
    llm.script(steps.error(429), steps.error(429), match="[[four-two-nine]]")
    llm.script(steps.hang(), steps.hang(), match="[[hang]]")

    quick = agent_settings.model_copy(update={"llm_first_token_seconds": 2.0})
    for marker, code in (
        ("[[five-hundred]]", "llm_unavailable"),
        ("[[four-two-nine]]", "llm_rate_limit"),
        ("[[hang]]", "llm_timeout"),
    ):
        run = await _run(quick, agent_server, redis, _spec(git_host, f"Fix {marker}"))
        assert run.result.status == "error"
        assert run.result.error is not None
        assert run.result.error.code == code, run.result.error
        assert run.result.duration < 30


def test_by_default_a_dead_llm_is_reported_within_two_minutes() -> None:
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert worst_case_llm_seconds(defaults) <= 120
    # 2 attempts each failed by the gateway after 55 s without a first token, one 2 s wait
    # between them; an answer that keeps streaming is cut only by the agent-server's generous
    # per-attempt limit.
    assert (defaults.llm_num_retries, defaults.llm_first_token_seconds) == (2, 55.0)
    assert worst_case_llm_seconds(defaults) == 112
    assert defaults.llm_timeout_seconds >= 600


async def test_a_slow_streaming_answer_counts_and_a_silent_llm_fails_the_run(
    repo: dict[str, str | bytes],
    git_host: FakeGitHost,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    agent_settings: Settings,
    redis: Redis,
) -> None:
    # The answer streams for 6 s, three times the first-token bound (the old per-attempt bound
    # would have cut it); the hung provider never sends a first token.
    words = "Slow, but here: " + "word " * 30
    llm.script(steps.trickle(steps.text(words), every=1.0, pieces=6), match="[[slow]]")
    llm.script(steps.hang(), steps.hang(), match="[[hang]]")
    bounded = agent_settings.model_copy(
        update={"llm_first_token_seconds": 2.0, "llm_idle_seconds": 2.0, "llm_num_retries": 2}
    )

    slow = await _run(bounded, agent_server, redis, _spec(git_host, "Fix [[slow]]"))
    hung = await _run(bounded, agent_server, redis, _spec(git_host, "Fix [[hang]]"))

    assert slow.result.status == "finished", slow.result.error
    assert slow.result.final_response == words
    assert hung.result.status == "error"
    assert hung.result.error is not None
    assert hung.result.error.code == "llm_timeout"
    asked = [r for r in llm.completions if r.script is not None and r.script.match == "[[hang]]"]
    assert len(asked) == 2  # every attempt failed at the gateway's bound, none more
    assert all(r.disconnected for r in asked)  # the gateway hung up on the silent provider


async def test_the_wall_clock_limit_interrupts_the_run(
    repo: dict[str, str | bytes],
    git_host: FakeGitHost,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    agent_settings: Settings,
    redis: Redis,
) -> None:
    llm.script(
        steps.tool_call("terminal", command="echo working"), steps.sleep(30, steps.finish("late"))
    )
    settings = agent_settings.model_copy(update={"run_timeout_seconds": 4.0})
    spec = _spec(git_host, "Take your time")

    run = await _run(settings, agent_server, redis, spec)

    assert run.result.status == "timeout"
    assert run.result.error is not None
    assert run.result.error.code == "timeout"
    async with agent_server.client() as client:
        info = await client.conversation(run.result.conversation_id)
    assert info["execution_status"] != "running"


async def test_the_cost_limit_interrupts_the_run(
    repo: dict[str, str | bytes],
    git_host: FakeGitHost,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    agent_settings: Settings,
    redis: Redis,
) -> None:
    counter = itertools.count()
    # Each command differs, so the agent-server's stuck detection never ends the run first; each
    # answer takes a moment, as a real model's does, so "soon after the limit" means something
    # even on a busy machine.
    llm.script(
        steps.repeat(
            lambda _body: steps.sleep(
                0.4, steps.tool_call("terminal", command=f"echo {next(counter)}")
            )
        )
    )
    settings = agent_settings.model_copy(update={"max_cost_per_run": 0.05})

    spec = _spec(git_host, "Loop")
    run = await _run(settings, agent_server, redis, spec)

    assert run.result.status == "cost_limit"
    assert run.result.error is not None
    assert run.result.error.code == "cost_limit"
    assert "cost budget reached" in run.result.error.detail
    assert run.result.cost >= 0.05
    assert run.result.cost < 0.15  # stopped within a few steps of passing the limit
    # The cost the run reports is what the gateway recorded, to the token.
    recorded = await Credentials(redis, usage_seconds=60).usage(spec.run_id)
    assert run.result.cost == recorded.cost
    assert run.result.prompt_tokens == recorded.prompt_tokens
    answered = [r for r in llm.completions if r.usage]
    assert recorded.calls == len(answered)
    assert recorded.prompt_tokens == sum(r.usage.prompt_tokens for r in answered if r.usage)


async def test_hooks_from_the_repo_run(
    fake_github: FakeGitHub,
    git_host: FakeGitHost,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    agent_settings: Settings,
    redis: Redis,
) -> None:
    stop_hook = (
        "#!/bin/sh\n"
        "# Deny the first finish, allow the second.\n"
        'if [ -f .stop-denied ]; then echo \'{"decision":"allow"}\'; exit 0; fi\n'
        "touch .stop-denied\n"
        'echo \'{"decision":"deny","reason":"run the tests first (stop-hook-1234)"}\'\n'
    )
    pre_hook = (
        "#!/bin/sh\n"
        "if grep -q 'rm -rf' ; then echo 'BLOCKED-5521: rm -rf is not allowed' >&2; exit 2; fi\n"
    )
    hooks = {
        "stop": [{"hooks": [{"command": "sh .openhands/stop.sh", "timeout": 10}]}],
        "PreToolUse": [{"matcher": "terminal", "hooks": [{"command": "sh .openhands/pre.sh"}]}],
    }
    git_host.create_repo(
        REPO,
        {
            ".openhands/hooks.json": json.dumps(hooks),
            ".openhands/stop.sh": stop_hook,
            ".openhands/pre.sh": pre_hook,
            ".gitignore": ".stop-denied\n",
            "keep/me.txt": "precious\n",
        },
    )
    fake_github.add_installation(INSTALLATION, "octo", [REPO])
    llm.script(
        steps.tool_call("terminal", command="rm -rf keep"),
        steps.finish("first try"),
        steps.finish("second try"),
    )

    run = await _run(agent_settings, agent_server, redis, _spec(git_host, "Clean up"))

    assert run.hooks_error is None
    assert run.result.status == "finished", run.result.error
    assert "second try" in run.result.final_response
    seen = llm.all_text()
    assert "BLOCKED-5521" in seen
    assert "stop-hook-1234" in seen
    assert not any(c.path.startswith("keep/") for c in run.result.changes)
    llm.assert_script_done()


async def test_an_invalid_hooks_file_is_reported_not_fatal(
    fake_github: FakeGitHub,
    git_host: FakeGitHost,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    agent_settings: Settings,
    redis: Redis,
) -> None:
    git_host.create_repo(REPO, {".openhands/hooks.json": '{"stop": [{"hooks": [{"cmd": 1}]}]}'})
    fake_github.add_installation(INSTALLATION, "octo", [REPO])
    llm.script(steps.finish("ok"))

    run = await _run(agent_settings, agent_server, redis, _spec(git_host, "Go"))

    assert run.result.status == "finished"
    assert run.hooks_error is not None
    assert "invalid" in run.hooks_error


async def test_setup_script_runs_and_its_failure_is_reported(
    fake_github: FakeGitHub,
    git_host: FakeGitHost,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    agent_settings: Settings,
    redis: Redis,
) -> None:
    git_host.create_repo(
        REPO, {".openhands/setup.sh": "echo preparing-8812\nexit 3\n", "a.txt": "a\n"}
    )
    fake_github.add_installation(INSTALLATION, "octo", [REPO])
    llm.script(steps.finish("ok"))

    run = await _run(agent_settings, agent_server, redis, _spec(git_host, "Go"))
    assert run.setup is not None
    assert run.setup.ran
    assert run.setup.exit_code == 3
    assert "preparing-8812" in run.setup.output
    assert run.result.status == "finished"

    fatal = agent_settings.model_copy(update={"setup_failure_fatal": True})
    failed = await _run(fatal, agent_server, redis, _spec(git_host, "Go"))
    assert failed.result.status == "error"
    assert failed.result.error is not None
    assert failed.result.error.code == "setup"


async def test_no_secret_reaches_the_agent(
    repo: dict[str, str | bytes],
    git_host: FakeGitHost,
    fake_github: FakeGitHub,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    agent_settings: Settings,
    redis: Redis,
    rsa_keys: tuple[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    # The bot's own secret files, as an operator would keep them.
    env_file = tmp_path / "bot" / ".env"
    env_file.parent.mkdir()
    env_file.write_text("".join(f"{k}={v}\n" for k, v in BOT_SECRETS.items()))
    key_file = tmp_path / "bot" / "app.pem"
    key_file.write_text(rsa_keys[0])
    for path in (env_file, key_file):
        path.chmod(0o600)
    snoop = (
        "env; for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f 2>/dev/null; done; "
        f"cat {env_file} {key_file} 2>&1; git -C . remote -v; git config --list; "
        "cat ../.clone-credentials 2>&1; true"
    )
    llm.script(steps.tool_call("terminal", command=snoop), steps.finish("looked around"))
    spec = _spec(git_host, "Look around")

    run = await _run(agent_settings, agent_server, redis, spec)

    assert run.result.status == "finished", run.result.error
    seen = "\n".join(llm.tool_results())
    assert "PATH=" in seen  # the snoop did run
    (token,) = fake_github.token_log
    secrets = [*BOT_SECRETS.values(), token["token"], rsa_keys[0].splitlines()[1]]
    for secret in secrets:
        assert secret not in seen
    # ... nor in the conversation's events, the result, or any log line.
    async with agent_server.client() as client:
        events = json.dumps(await client.all_events(run.result.conversation_id))
    for secret in [token["token"], BOT_SECRETS["LLM_API_KEY"]]:
        assert secret not in events
        assert secret not in repr(run)
        assert secret not in caplog.text
    # The clone itself went through the git host with that token.
    assert any(r.token == token["token"] and r.status == 200 for r in git_host.requests)


@pytest.fixture
def created(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every create-conversation request the bot sends the agent-server, as sent."""
    sent: list[dict[str, Any]] = []
    original = AgentServerClient.create_conversation

    async def spy(self: AgentServerClient, request: dict[str, Any]) -> dict[str, Any]:
        sent.append(json.loads(json.dumps(request)))
        return await original(self, request)

    monkeypatch.setattr(AgentServerClient, "create_conversation", spy)
    return sent


def _files_holding(root: Path, needle: bytes) -> list[str]:
    found = []
    for path in root.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
                found.append(str(path))
    return found


def _environments(pid: int) -> str:
    """The environment of a process and all its descendants, as /proc shows them."""
    seen = []
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            seen.append(Path(f"/proc/{current}/environ").read_bytes().decode(errors="replace"))
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pending.extend(int(child) for child in children)
    return "\n".join(seen)


async def test_the_provider_key_is_nowhere_the_agent_server_can_see(
    repo: dict[str, str | bytes],
    git_host: FakeGitHost,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    agent_settings: Settings,
    redis: Redis,
    created: list[dict[str, Any]],
) -> None:
    key = BOT_SECRETS["LLM_API_KEY"]
    llm.script(
        steps.tool_call("terminal", command="env; cat ~/.openhands/* 2>/dev/null; true"),
        steps.finish("looked"),
    )
    spec = _spec(git_host, "Look around")

    run = await _run(agent_settings, agent_server, redis, spec)

    assert run.result.status == "finished", run.result.error
    (request,) = created
    llm_block = request["agent_settings"]["llm"]
    assert key not in json.dumps(request)
    assert llm_block["api_key"].startswith("ohgw-")
    assert llm_block["model"] == "litellm_proxy/openai/fake"
    assert llm_block["base_url"].startswith("http://127.0.0.1:")
    assert "input_cost_per_token" not in llm_block  # prices stay with the gateway too
    # Every LLM call went through the gateway, which alone used the key.
    assert llm.completions
    assert all(r.headers["authorization"] == f"Bearer {key}" for r in llm.completions)
    assert key not in "\n".join(llm.tool_results())
    # Nothing the agent-server keeps (its home, conversations, workspaces) holds the key, nor
    # the environment of the server or anything it started.
    assert agent_server.pid is not None
    base = agent_server.workspaces_dir.parent
    assert _files_holding(base, key.encode()) == []
    assert key not in _environments(agent_server.pid)


async def test_a_run_credential_works_during_its_run_and_not_after(
    repo: dict[str, str | bytes],
    git_host: FakeGitHost,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    agent_settings: Settings,
    redis: Redis,
    created: list[dict[str, Any]],
) -> None:
    during: list[list[int]] = []

    def models_now(credential: dict[str, Any]) -> int:
        url = credential["base_url"] + "/v1/models"
        headers = {"Authorization": f"Bearer {credential['api_key']}"}
        return httpx.get(url, headers=headers, timeout=10).status_code

    def check_then_finish(_body: dict[str, Any]) -> steps.Step:
        # Called while the run is live, from the scripted LLM's thread: this run's credential
        # and every earlier run's, at this run's gateway.
        here = created[-1]["agent_settings"]["llm"]["base_url"]
        credentials = [{**c["agent_settings"]["llm"], "base_url": here} for c in created]
        during.append([models_now(credential) for credential in credentials])
        return steps.finish("checked")

    llm.script(check_then_finish, check_then_finish)
    first = await _run(agent_settings, agent_server, redis, _spec(git_host, "One"))
    first_credential = created[-1]["agent_settings"]["llm"]
    second = await _run(agent_settings, agent_server, redis, _spec(git_host, "Two"))
    second_credential = created[-1]["agent_settings"]["llm"]

    assert first.result.status == second.result.status == "finished"
    assert during == [[200], [401, 200]]  # the first run's credential died with its run
    assert first_credential["api_key"] != second_credential["api_key"]
    # Both runs are over: their credentials are revoked.
    async with serving_gateway(agent_settings, redis) as gateway:
        for credential in (first_credential, second_credential):
            answer = await asyncio.to_thread(models_now, {**credential, "base_url": gateway.url})
            assert answer == 401


async def test_a_run_hands_back_its_result_while_its_workspace_is_released(
    repo: dict[str, str | bytes],
    git_host: FakeGitHost,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    agent_settings: Settings,
    redis: Redis,
    created: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`release_later`: the result comes back with the workspace still held (its release waits
    here until the test lets it go); `settled` returns once the workspace is gone and the run's
    credential revoked."""
    release = asyncio.Event()
    open_workspace = agent_server.open

    @contextlib.asynccontextmanager
    async def held(run_id: str, *, keep_seconds: float = 0) -> AsyncIterator[Workspace]:
        async with open_workspace(run_id, keep_seconds=keep_seconds) as ws:
            yield ws
            await release.wait()

    monkeypatch.setattr(agent_server, "open", held)
    llm.script(steps.tool_call("terminal", command="echo more >> README.md"), steps.finish("Done"))
    spec = _spec(git_host, "Add a line")
    token = await clone_token(agent_settings, redis, spec)
    async with serving_gateway(agent_settings, redis) as gateway:
        async with asyncio.timeout(120):  # a release awaited before the result would hang here
            run = await run_agent(
                agent_settings,
                agent_server,
                spec,
                gateway=gateway,
                clone_token=token,
                release_later=True,
            )
        assert run.result.status == "finished", run.result.error
        assert [c.path for c in run.result.changes] == ["README.md"]
        assert run.released is not None
        assert not run.released.done()
        run_dir = agent_server.workspaces_dir / spec.run_id
        assert run_dir.is_dir()

        release.set()
        await run.settled()

        assert not run_dir.is_dir()
        credential = {**created[-1]["agent_settings"]["llm"], "base_url": gateway.url}
        url, key = credential["base_url"] + "/v1/models", credential["api_key"]
        answer = await asyncio.to_thread(
            httpx.get, url, headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        assert answer.status_code == 401
