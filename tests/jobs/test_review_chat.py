"""Chat and fixes in the bot's review threads, with the real agent-server and a scripted LLM."""

from __future__ import annotations

import copy

from redis.asyncio import Redis

from bot.agent.workspace.local import LocalProvider
from bot.config import Settings
from bot.jobs import review_chat
from bot.runs.findings import fingerprint, marker
from tests.conftest import Deliverer, load_payload, run_worker
from tests.fakes import llm as steps
from tests.fakes.git_host import FakeGitHost
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import ScriptedLLM
from tests.jobs.test_mention import (
    INSTALLATION,
    NAME,
    OWNER,
    REPO,
    WRITER,
    mention,
    post,
    run_settings,
    world,
)

__all__ = ["run_settings", "world"]  # fixtures shared with test_mention

PR = 15
CALC = "a = 1\nb = 2\nc = 3\nd = 4\n"
FINDINGS = {
    1: "FIND-A: `a` shadows a builtin module name.",
    2: "FIND-B: `b` is never read.",
    3: "FIND-C: `c` should be a constant.",
    4: "FIND-D: rename `d`.",
}


def open_pull(github: FakeGitHub, host: FakeGitHost) -> str:
    """A same-repo PR adding calc.py, with one bot finding per line; its head."""
    head = host.commit(REPO, {"calc.py": CALC}, branch="feature", message="calc")
    host.create_ref(REPO, f"refs/pull/{PR}/head", head)
    patch = "@@ -0,0 +1,4 @@\n" + "".join(f"+{line}\n" for line in CALC.splitlines())
    github.add_pull(
        REPO,
        PR,
        "feature",
        head,
        "main",
        WRITER,
        title="Calc",
        files=[{"filename": "calc.py", "status": "added", "additions": 4, "patch": patch}],
    )
    for line, text in FINDINGS.items():
        code = CALC.splitlines()[line - 1]
        print_ = fingerprint("calc.py", code, "style")
        github.add_review_comment(
            REPO,
            PR,
            f"**🟠 Important**\n\n{text}\n\n{marker(print_)}",
            github.bot_login,
            path="calc.py",
            line=line,
            commit_id=head,
        )
    return head


def root_of(github: FakeGitHub, text: str) -> int:
    (found,) = [
        c["id"]
        for c in github.review_comments.values()
        if c["in_reply_to_id"] is None and text in c["body"]
    ]
    return found


def replies_to(github: FakeGitHub, root: int) -> list[str]:
    return [c["body"] for c in github.review_comments.values() if c["in_reply_to_id"] == root]


async def test_a_mention_in_a_bot_thread_is_answered_there_with_the_thread_and_diff(
    world: FakeGitHub,
    git_host: FakeGitHost,
    deliver: Deliverer,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    run_settings: Settings,
    redis: Redis,
) -> None:
    settings = run_settings.model_copy(update={"github_app_slug": world.app_slug})
    head = open_pull(world, git_host)
    root = root_of(world, "FIND-B")
    world.add_review_comment(REPO, PR, "I think b is fine.", "alice", in_reply_to_id=root)
    payload = copy.deepcopy(load_payload("pull_request_review_comment/created.json"))
    payload["repository"].update({"name": NAME, "full_name": REPO})
    payload["repository"]["owner"]["login"] = OWNER
    payload["installation"] = {"id": INSTALLATION}
    payload["pull_request"]["number"] = PR
    payload["pull_request"]["head"].update({"ref": "feature", "sha": head})
    payload["comment"].update(
        {"body": "@openhands why is this a problem?", "path": "calc.py", "in_reply_to_id": root}
    )
    payload["comment"]["user"]["login"] = payload["sender"]["login"] = WRITER
    world.add_review_comment(
        REPO,
        PR,
        payload["comment"]["body"],
        WRITER,
        comment_id=payload["comment"]["id"],
        path="calc.py",
        line=2,
        in_reply_to_id=root,
    )
    llm.script(steps.finish("Because `b` is assigned and never read: ANSWER-77."))
    assert deliver.post("pull_request_review_comment", payload).status_code == 202

    await run_worker(settings, workspaces=agent_server)

    (answer,) = [b for b in replies_to(world, root) if "ANSWER-77" in b]
    assert answer
    prompt = llm.completions[0].text
    assert "# The review thread you are asked in" in prompt
    assert "FIND-B" in prompt  # the finding that started the thread
    assert "I think b is fine." in prompt  # the human's reply in it
    assert "+b = 2" in prompt  # the PR's diff
    assert "FIND-A" not in prompt.split("# The pull request's diff")[0]  # other threads: no
    assert root not in world.resolved_threads


async def test_fix_makes_one_commit_resolves_fixed_threads_and_explains_the_declined_one(
    world: FakeGitHub,
    git_host: FakeGitHost,
    deliver: Deliverer,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    run_settings: Settings,
    redis: Redis,
) -> None:
    settings = run_settings.model_copy(update={"github_app_slug": world.app_slug})
    head = open_pull(world, git_host)
    roots = {line: root_of(world, text.split(":")[0]) for line, text in FINDINGS.items()}
    verdict = (
        '```findings\n{"fixed": ["F1", "F2", "F3"], '
        '"declined": {"F4": "`d` is part of the public API."}}\n```'
    )
    llm.script(
        steps.tool_call(
            "terminal", command="printf 'import math\\nB = 2\\nC = 3\\nd = 4\\n' > calc.py"
        ),
        steps.finish(f"Fixed three findings.\n\n{verdict}"),
    )
    post(world, deliver, mention("@openhands fix", number=PR, pr=True))

    await run_worker(settings, workspaces=agent_server)

    tip = git_host.rev_parse(REPO, "refs/heads/feature")
    assert git_host.rev_parse(REPO, f"{tip}^") == head  # one commit on the PR's branch
    resolved = world.resolved_threads
    for line in (1, 2, 3):
        (reply,) = replies_to(world, roots[line])
        assert reply.startswith(review_chat.FIXED_IN.format(sha=tip))
        assert resolved.get(roots[line]) == world.bot_login
    declined = review_chat.DECLINED.format(reason="`d` is part of the public API.")
    (reply,) = replies_to(world, roots[4])
    assert reply.startswith(declined)
    assert roots[4] not in resolved
    prompt = llm.completions[0].text
    for label, text in zip(("F1", "F2", "F3", "F4"), FINDINGS.values(), strict=True):
        assert f"- {label}: `calc.py` line" in prompt
        assert text.split(":")[0] in prompt
