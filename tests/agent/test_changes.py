"""Publishing keeps what git means: a real agent-server run makes the files, the bot's publishing
client writes them to the fake GitHub's Git Data API, and the tree GitHub got is read back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.agent import changes
from bot.agent.results import ChangedFile, Patch
from bot.agent.run import AgentRun, RunSpec, run_agent
from bot.agent.workspace.local import LocalProvider
from bot.config import Settings
from bot.errors import PublishError
from bot.github import commits, publish
from bot.github.client import GitHubApp
from bot.queue.tasks import RepoRef
from tests.agent.test_agent_run import clone_token
from tests.conftest import serving_gateway
from tests.fakes import llm as steps
from tests.fakes.git_data import BareRepo
from tests.fakes.git_host import FakeGitHost
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import ScriptedLLM

REPO = "octo/app"
REF = RepoRef(owner="octo", name="app")
INSTALLATION = 41
WHEN = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
# Non-ASCII, spaces and a newline: git quotes such a name unless asked for -z.
ODD_NAME = "docs/café notes\nsecond line.txt"
ODD_NAME_SHELL = r"$(printf 'docs/caf\303\251 notes\nsecond line.txt')"


@pytest.fixture
def repo(fake_github: FakeGitHub, git_host: FakeGitHost) -> None:
    git_host.create_repo(
        REPO, {"README.md": "# app\n", "src/main.py": "print('hello')\n", "tool.sh": "echo\n"}
    )
    fake_github.add_installation(INSTALLATION, "octo", [REPO])


async def _run(
    settings: Settings, agent_server: LocalProvider, redis: Redis, git_host: FakeGitHost
) -> AgentRun:
    spec = RunSpec(
        run_id=f"run-{uuid.uuid4().hex[:12]}",
        installation_id=INSTALLATION,
        repo=REF,
        clone_url=git_host.clone_url(REPO),
        prompt="Make the files",
    )
    token = await clone_token(settings, redis, spec)
    async with serving_gateway(settings, redis) as gateway:
        return await run_agent(settings, agent_server, spec, gateway=gateway, clone_token=token)


async def _publish(settings: Settings, redis: Redis, git_host: FakeGitHost, run: AgentRun) -> str:
    writer = await GitHubApp(settings, redis).installation_client(
        INSTALLATION, repositories=["app"], permissions=publish.PUBLISH_PERMISSIONS
    )
    assert run.head_sha == git_host.rev_parse(REPO, "refs/heads/main")
    return await publish.create_commit(
        writer,
        REF,
        base_sha=run.head_sha,
        changes=run.result.changes,
        message="Make the files",
        when=WHEN,
    )


def _tree_items(fake_github: FakeGitHub) -> dict[str, dict[str, Any]]:
    """The entries of the one tree the bot asked GitHub to make, by path."""
    (made,) = fake_github.requests_to("POST", r"/git/trees$")
    return {item["path"]: item for item in made.json["tree"]}


async def test_modes_links_and_any_file_name_are_published_as_git_has_them(
    repo: None,
    git_host: FakeGitHost,
    fake_github: FakeGitHub,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    agent_settings: Settings,
    redis: Redis,
) -> None:
    llm.script(
        steps.tool_call(
            "terminal",
            command="printf '#!/bin/sh\\necho run\\n' > run.sh && chmod +x run.sh"
            " && chmod +x tool.sh && ln -s src/main.py main-link && ln -s ../README.md src/up",
        ),
        steps.tool_call(
            "terminal", command=f'mkdir -p docs && printf "odd\\n" > "{ODD_NAME_SHELL}"'
        ),
        steps.finish("Made the files"),
    )

    run = await _run(agent_settings, agent_server, redis, git_host)
    assert run.result.status == "finished", run.result.error
    sha = await _publish(agent_settings, redis, git_host, run)

    items = _tree_items(fake_github)
    assert set(items) == {"run.sh", "tool.sh", "main-link", "src/up", ODD_NAME}
    assert {path: item["mode"] for path, item in items.items()} == {
        "run.sh": "100755",
        "tool.sh": "100755",  # only its mode changed
        "main-link": "120000",
        "src/up": "120000",
        ODD_NAME: "100644",
    }
    bare = BareRepo(fake_github.git_path(REPO))  # type: ignore[arg-type]
    tree = {entry.path: entry for entry in bare.ls_tree(sha, recursive=True)}
    assert bare.read_blob(tree["main-link"].sha) == b"src/main.py"  # a link: its target
    assert bare.read_blob(tree["src/up"].sha) == b"../README.md"
    assert bare.read_blob(tree["run.sh"].sha) == b"#!/bin/sh\necho run\n"
    assert bare.read_blob(tree[ODD_NAME].sha) == b"odd\n"
    assert tree["tool.sh"].mode == "100755"
    assert tree["README.md"].mode == "100644"  # untouched files keep theirs
    llm.assert_script_done()


async def test_links_leaving_the_repository_and_big_files_are_refused_by_name(
    repo: None,
    git_host: FakeGitHost,
    fake_github: FakeGitHub,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    agent_settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(changes, "MAX_BLOB_BYTES", 4096)
    llm.script(
        steps.tool_call(
            "terminal",
            command="ln -s /etc/passwd abs-link && ln -s ../../outside src/up-link"
            " && head -c 5000 /dev/zero > big.bin && printf 'fine\\n' > ok.txt",
        ),
        steps.finish("Made the files"),
    )

    run = await _run(agent_settings, agent_server, redis, git_host)
    assert run.result.status == "finished", run.result.error
    found = {c.path: c for c in run.result.changes}
    assert found["ok.txt"].refused is None
    assert found["ok.txt"].content == b"fine\n"
    assert found["big.bin"].refused is not None
    assert found["big.bin"].content is None  # never read
    assert found["big.bin"].size == 5000
    with pytest.raises(PublishError) as refused:
        await _publish(agent_settings, redis, git_host, run)

    message = refused.value.user_message
    assert message.startswith(commits.REFUSED.split("{")[0])
    for path in ("abs-link", "src/up-link", "big.bin"):
        assert f"` {path} `" in message
    assert "ok.txt" not in message
    assert "4,096-byte limit" in message
    assert "leads outside the repository" in message
    # Refused before any write: no blob, tree or commit was made.
    assert not [r for r in fake_github.requests if r.method == "POST" and "/git/" in r.path]
    llm.assert_script_done()


@pytest.mark.parametrize(
    ("path", "target", "escapes"),
    [
        ("link", "src/main.py", False),
        ("src/link", "../README.md", False),
        ("src/deep/link", "../../x", False),
        ("link", "/etc/passwd", True),
        ("link", "..", True),
        ("src/link", "../../x", True),
        ("link", "a/../../x", True),
        ("link", "", True),
    ],
)
def test_a_link_escapes_when_it_is_absolute_or_climbs_past_the_root(
    path: str, target: str, escapes: bool
) -> None:
    assert changes.escapes(path, target) is escapes


async def test_a_fork_patch_with_a_refused_file_is_not_posted(
    repo: None, fake_github: FakeGitHub, agent_settings: Settings, redis: Redis
) -> None:
    fake_github.add_issue(REPO, 5, "Fork PR", "", "someone")
    writer = await GitHubApp(agent_settings, redis).installation_client(
        INSTALLATION, repositories=["app"], permissions=publish.PUBLISH_PERMISSIONS
    )
    refused = ChangedFile("@admin", "added", None, mode="120000", refused="it leads out")
    patch = Patch(text="diff --git a/x b/x\n", size=19)

    with pytest.raises(PublishError, match="Nothing was published: ` @admin ` \\(it leads out\\)"):
        await publish.post_patch(writer, REF, 5, patch, [refused], reason="Fork.", key="r:patch")

    assert not fake_github.comments
