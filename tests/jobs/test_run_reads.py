"""A run reads the repository's files from its own fresh checkout, never from what the agent could
have edited, and mints one installation token per purpose."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from redis.asyncio import Redis

from bot.agent.workspace.local import LocalProvider
from bot.config import Settings
from bot.github.publish import TEMPLATE_PATHS
from tests.conftest import Deliverer, run_worker
from tests.fakes import llm as steps
from tests.fakes.git_host import FakeGitHost
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import ScriptedLLM
from tests.jobs.test_mention import INSTALLATION, ISSUE, OWNER, REPO, WRITER, mention, post

TEMPLATE = ".github/pull_request_template.md"
REPO_TEMPLATE = "## Checklist\n- [ ] TEMPLATE-FROM-REPO-4411\n"
AGENTS_TEMPLATE = "Merge at once. TEMPLATE-BY-AGENT-9902\n"


@pytest.fixture
def world(fake_github: FakeGitHub, git_host: FakeGitHost) -> FakeGitHub:
    files = {"app.py": "def parse(text):\n    return text.split()[0]\n", TEMPLATE: REPO_TEMPLATE}
    git_host.create_repo(REPO, files)
    fake_github.add_installation(INSTALLATION, OWNER, [REPO])
    fake_github.set_permission(REPO, WRITER, "write")
    fake_github.add_issue(REPO, ISSUE, "Crash on empty input", "parse('') raises", "reporter")
    return fake_github


@pytest.fixture
def run_settings(agent_settings: Settings) -> Settings:
    return agent_settings.model_copy(
        update={"tracking_interval_seconds": 0.1, "wait_poll_seconds": 0.2}
    )


async def test_the_pr_template_comes_from_the_checkout_as_cloned_and_tokens_are_minted_once(
    world: FakeGitHub,
    git_host: FakeGitHost,
    deliver: Deliverer,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    run_settings: Settings,
    redis: Redis,
) -> None:
    assert TEMPLATE in TEMPLATE_PATHS
    # The agent rewrites the template, in the working tree and in a commit of its own.
    llm.script(
        steps.tool_call(
            "terminal",
            command=f"printf {json.dumps(AGENTS_TEMPLATE)} > {TEMPLATE} && "
            "printf 'def parse(text):\\n    return None\\n' > app.py && "
            "git add -A && git commit -qm mine",
        ),
        steps.finish("Rewrote parse()."),
    )
    post(world, deliver, mention("@openhands fix this please"))

    await run_worker(run_settings, workspaces=agent_server)

    (pr,) = world.created_pulls
    assert "TEMPLATE-FROM-REPO-4411" in pr["body"]
    assert "TEMPLATE-BY-AGENT-9902" not in pr["body"]
    # Read from the checkout, not through the contents API.
    assert not world.requests_to("GET", r"/contents/")
    # One token per purpose: tracking and reads, the clone, publishing.
    purposes = Counter(json.dumps(t["permissions"], sort_keys=True) for t in world.token_log)
    assert len(purposes) == 3, purposes
    assert set(purposes.values()) == {1}, purposes
    assert all(t["repositories"] == [REPO.split("/")[1]] for t in world.token_log)


async def test_a_follow_up_in_a_kept_checkout_still_finds_the_template(
    world: FakeGitHub,
    git_host: FakeGitHost,
    deliver: Deliverer,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    run_settings: Settings,
    redis: Redis,
) -> None:
    """A kept checkout is the agent's: the template comes from GitHub instead."""
    # Scripts match in order: the follow-up's conversation holds the first mention too.
    llm.script(
        steps.tool_call(
            "terminal",
            command=f"printf {json.dumps(AGENTS_TEMPLATE)} > {TEMPLATE} && "
            "printf 'def parse(text):\\n    return None\\n' > app.py",
        ),
        steps.finish("Rewrote parse()."),
        match="[[two]]",
    )
    llm.script(steps.finish("Nothing to change yet."), match="[[one]]")
    post(world, deliver, mention("@openhands have a look [[one]]"))
    await run_worker(run_settings, workspaces=agent_server)
    assert not world.created_pulls
    post(world, deliver, mention("@openhands now fix it [[two]]"))

    await run_worker(run_settings, workspaces=agent_server)

    (pr,) = world.created_pulls
    assert "TEMPLATE-FROM-REPO-4411" in pr["body"]
    assert "TEMPLATE-BY-AGENT-9902" not in pr["body"]
    assert world.requests_to("GET", r"/contents/")  # the follow-up asked GitHub
