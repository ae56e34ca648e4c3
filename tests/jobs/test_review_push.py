"""Reviews that remember the pull request: pushes reviewed incrementally, findings raised once,
the bot's own threads resolved when their code is gone, one summary, a push cancelling a review."""

from __future__ import annotations

import re
import subprocess
from typing import Any

from redis.asyncio import Redis

from bot.agent.workspace.local import LocalProvider
from bot.config import Settings
from bot.jobs import review_push
from bot.runs.findings import marker_in
from bot.runs.store import RunStatus, RunStore
from tests.conftest import Deliverer, run_worker
from tests.fakes import llm as steps
from tests.fakes.git_host import FakeGitHost
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import ScriptedLLM
from tests.jobs.test_review import PR, REPO, open_pull, pr_event, review_json, world

__all__ = ["world"]  # the fixture, shared with test_review

BASE = [f"line {i}\n" for i in range(1, 41)]


def finding(line: int, rule: str, body: str, severity: str = "important") -> dict[str, Any]:
    return {"path": "app.py", "line": line, "severity": severity, "body": body, "rule": rule}


def push(github: FakeGitHub, host: FakeGitHost, lines: list[str], message: str) -> str:
    """A commit of app.py on the PR's branch; GitHub's file list follows it. The new head."""
    head = host.commit(REPO, {"app.py": "".join(lines)}, branch=f"pr-{PR}", message=message)
    bare = str(host.bare_path(REPO))
    diff = subprocess.run(
        ["git", f"--git-dir={bare}", "diff", "main", head, "--", "app.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    patch = diff[diff.index("@@") :]
    adds = sum(1 for x in patch.splitlines() if x.startswith("+"))
    dels = sum(1 for x in patch.splitlines() if x.startswith("-"))
    github.set_pull_files(
        REPO,
        PR,
        [{"filename": "app.py", "additions": adds, "deletions": dels, "patch": patch}],
    )
    github.sync_pull_refs(REPO)
    return head


def touched(host: FakeGitHost, base: str, head: str) -> set[int]:
    """The app.py lines the commits base..head added or changed."""
    diff = subprocess.run(
        ["git", f"--git-dir={host.bare_path(REPO)}", "diff", base, head, "--", "app.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(review_push.added_lines(diff[diff.index("@@") :] if "@@" in diff else ""))


def bot_root(github: FakeGitHub, text: str) -> int:
    (found,) = [
        c["id"]
        for c in github.review_comments.values()
        if c["user"] == github.bot_login and c["in_reply_to_id"] is None and text in c["body"]
    ]
    return found


async def test_five_pushes_review_only_new_lines_once_and_keep_one_summary(
    world: FakeGitHub,
    git_host: FakeGitHost,
    deliver: Deliverer,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    agent_settings: Settings,
    redis: Redis,
) -> None:
    settings = agent_settings.model_copy(
        update={"review_on_push": True, "github_app_slug": world.app_slug}
    )

    script = llm.script()

    async def review(head: str, comments: list[dict[str, Any]], action: str) -> None:
        script.extend(steps.finish(review_json(comments)))
        assert deliver.post("pull_request", pr_event(action, PR, head)).status_code == 202
        await run_worker(settings, workspaces=agent_server)

    # 1. Opened: lines 20 and 31 are the PR's; three findings.
    heads = [open_pull(world, git_host, PR)]
    await review(
        heads[0],
        [
            finding(31, "dead-code", "FIND-DEAD: this line does nothing."),
            finding(20, "naming", "FIND-NAME: unclear name."),
            finding(22, "magic-number", "FIND-MAGIC: a magic number."),
        ],
        "opened",
    )
    dead, name, magic = (bot_root(world, f) for f in ("FIND-DEAD", "FIND-NAME", "FIND-MAGIC"))
    # People answer: alice asks about one finding, bob 👎 another, carol starts her own thread.
    world.add_review_comment(REPO, PR, "Why? It reads fine to me.", "alice", in_reply_to_id=name)
    world.react_as(magic, "-1", "bob")
    human = world.add_review_comment(REPO, PR, "Human note on line 20.", "carol", line=20)

    # 2. The dead line and the named line are rewritten; the agent repeats the dismissed finding
    # on an untouched line and finds the rewritten dead line.
    lines = list(BASE)
    lines[19] = "line 20 renamed\n"
    lines.insert(30, "new line A v2\n")
    heads.append(push(world, git_host, lines, "rewrite"))
    await review(
        heads[-1],
        [
            finding(31, "dead-code", "FIND-DEAD2: still does nothing."),
            finding(22, "magic-number", "FIND-MAGIC again."),
        ],
        "synchronize",
    )
    # 3. Copies of two flagged lines are added at the end: the same findings there are dropped.
    lines += ["line 22\n", "new line A v2\n"]
    heads.append(push(world, git_host, lines, "copies"))
    await review(
        heads[-1],
        [
            finding(42, "magic-number", "FIND-MAGIC a third time."),
            finding(43, "dead-code", "FIND-DEAD2 repeated."),
        ],
        "synchronize",
    )
    # 4. A secret is printed; the agent also flags an untouched line.
    lines.append("print(secret)\n")
    heads.append(push(world, git_host, lines, "debug"))
    await review(
        heads[-1],
        [
            finding(44, "secret-leak", "FIND-SECRET: prints a secret.", "critical"),
            finding(2, "naming", "FIND-OLD: about an untouched line."),
        ],
        "synchronize",
    )
    # 5. The secret is gone.
    lines.pop()
    heads.append(push(world, git_host, lines, "fix"))
    await review(heads[-1], [], "synchronize")
    # 6. Unrelated lines at the end.
    lines.append("tail\n")
    heads.append(push(world, git_host, lines, "tail"))
    await review(heads[-1], [finding(44, "style", "FIND-TAIL: trailing line.")], "synchronize")

    llm.assert_script_done()
    world.assert_no_unexpected()
    reviews = world.reviews
    # Pushes 3 and 5 raised nothing new: no review, only the summary edited.
    assert [r["commit_id"] for r in reviews] == [heads[0], heads[1], heads[3], heads[5]]
    for before, after, posted in (
        (heads[0], heads[1], reviews[1]),
        (heads[2], heads[3], reviews[2]),
        (heads[4], heads[5], reviews[3]),
    ):
        new_lines = touched(git_host, before, after)
        assert posted["comments"], posted
        assert {c["line"] for c in posted["comments"]} <= new_lines
    bodies = [c["body"] for r in reviews for c in r["comments"]]
    prints = [marker_in(body) for body in bodies]
    assert None not in prints
    assert len(prints) == len(set(prints)) == 6  # 3 + DEAD2 + SECRET + TAIL; 0 duplicates
    assert not any(
        "FIND-MAGIC again" in b or "a third time" in b or "FIND-OLD" in b for b in bodies
    )
    assert not any("repeated" in b for b in bodies)
    # The bot's own threads whose code is gone are resolved; a thread a human replied in, the
    # 👎 one and the human's own are not, and the bot wrote nothing in them.
    resolved = world.resolved_threads
    assert resolved.get(dead) == world.bot_login
    assert resolved.get(bot_root(world, "FIND-SECRET")) == world.bot_login
    for untouched in (name, magic, human):
        assert untouched not in resolved
    replies = [c for c in world.review_comments.values() if c["in_reply_to_id"] in {name, human}]
    assert all(c["user"] != world.bot_login for c in replies)
    # One summary: the first review's body, edited after each push; the others only point to it.
    assert len(world.review_edits()) == 5
    assert "Looks mostly fine." in reviews[0]["body"]
    assert re.search(
        r"\*\*Reviews:\*\* 6 · last reviewed commit `" + heads[-1][:7], reviews[0]["body"]
    )
    for later in reviews[1:]:
        assert "Looks mostly fine." not in later["body"]
        assert later["body"].startswith("Re-review of ")
    # The agent saw only the push's diff, and the findings still open.
    second = llm.completions[1].text
    assert review_push.INCREMENT.format(base=heads[0][:12]) in second
    earlier = second.split("# Earlier findings")[1]
    assert "FIND-NAME" in earlier  # still open
    assert "FIND-DEAD:" not in earlier  # its code is gone: resolved before the agent ran
    assert "FIND-MAGIC" not in earlier  # dismissed


async def test_a_push_during_a_review_cancels_it_and_the_new_head_is_reviewed(
    world: FakeGitHub,
    git_host: FakeGitHost,
    deliver: Deliverer,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    agent_settings: Settings,
    redis: Redis,
) -> None:
    settings = agent_settings.model_copy(
        update={"review_on_push": True, "github_app_slug": world.app_slug}
    )
    first = open_pull(world, git_host, PR)
    lines = list(BASE)
    lines[19] = "line 20 changed\n"
    lines.insert(30, "new line A\n")
    lines.append("pushed while reviewing\n")
    pushed: list[str] = []

    def push_now(_request: dict[str, Any]) -> steps.Hang:
        """While the first review waits for the LLM, a push lands; that review never hears back."""
        second = push(world, git_host, lines, "more")
        delivered = deliver.post("pull_request", pr_event("synchronize", PR, second))
        pushed.extend([second, delivered.json()["run_id"]])
        return steps.hang()

    llm.script(push_now)
    llm.script(
        steps.finish(review_json([finding(42, "style", "FIND-LATE: late line.")])),
        match="pushed while reviewing",
    )
    opened = deliver.post("pull_request", pr_event("opened", PR, first)).json()["run_id"]

    await run_worker(settings, workspaces=agent_server)

    runs = RunStore(redis, 3600)
    second, pushed_run = pushed
    cancelled, reviewed = await runs.get(opened), await runs.get(pushed_run)
    assert cancelled is not None
    assert reviewed is not None
    assert cancelled.status is RunStatus.CANCELLED
    assert reviewed.status is RunStatus.COMPLETED
    (posted,) = world.reviews
    assert posted["commit_id"] == second
    assert [c["line"] for c in posted["comments"]] == [42]
    # Nothing lost: the cancelled head's lines are in what the new review read.
    assert "+new line A" in llm.completions[-1].text
    assert "+pushed while reviewing" in llm.completions[-1].text


async def test_without_graphql_the_review_is_still_posted(
    world: FakeGitHub,
    git_host: FakeGitHost,
    deliver: Deliverer,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    agent_settings: Settings,
    redis: Redis,
) -> None:
    settings = agent_settings.model_copy(update={"review_on_push": True})
    head = open_pull(world, git_host, PR)
    world.fail_next("POST", r"^/graphql$", 404, times=10)  # a server with no GraphQL API
    llm.script(steps.finish(review_json([finding(31, "dead-code", "FIND-DEAD: unused.")])))
    deliver.post("pull_request", pr_event("opened", PR, head))

    await run_worker(settings, workspaces=agent_server)

    (posted,) = world.reviews
    assert [c["line"] for c in posted["comments"]] == [31]
