"""Every create the bot makes on GitHub happens once: when GitHub does the write but answers 502,
the bot finds what it made instead of making a second one; when the write never happened, it is
made again. Through the bot's own client (its retry policy) to the fake GitHub on loopback."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from githubkit.exception import RequestFailed
from redis.asyncio import Redis

from bot.agent.results import ChangedFile
from bot.config import Settings
from bot.github import publish
from bot.github.client import GitHubApp
from bot.github.tracking import TrackingComment, marker
from bot.queue.tasks import RepoRef
from tests.fakes.git_host import FakeGitHost
from tests.fakes.github import FakeGitHub

REPO = "octo/app"
OWNER, NAME = REPO.split("/")
REF = RepoRef(owner=OWNER, name=NAME)
INSTALLATION = 51
ISSUE = 7
PR = 3
WHEN = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)


@pytest.fixture
def world(fake_github: FakeGitHub, git_host: FakeGitHost) -> FakeGitHub:
    git_host.create_repo(REPO, {"README.md": "# app\n"})
    fake_github.add_installation(INSTALLATION, OWNER, [REPO])
    fake_github.add_issue(REPO, ISSUE, "Crash", "it crashes", "reporter")
    head = git_host.commit(REPO, {"feature.txt": "wip\n"}, branch="feature")
    fake_github.add_pull(REPO, PR, "feature", head, "main", "octo-dev", title="Feature")
    return fake_github


@pytest.fixture
async def writer(world: FakeGitHub, settings: Settings, redis: Redis) -> Any:
    """The bot's publishing client: its retry policy, its narrowed token."""
    return await GitHubApp(settings, redis).installation_client(
        INSTALLATION, repositories=[NAME], permissions=publish.PUBLISH_PERMISSIONS
    )


async def _commit(writer: Any, git_host: FakeGitHost, text: str = "fixed\n") -> str:
    return await publish.create_commit(
        writer,
        REF,
        base_sha=git_host.rev_parse(REPO, "refs/heads/main"),
        changes=[ChangedFile(path="app.py", status="added", content=text.encode())],
        message="Fix",
        when=WHEN,
    )


def _bot_comments(world: FakeGitHub) -> list[dict[str, Any]]:
    return [c for c in world.comments.values() if c["user"] == world.bot_login]


# ----------------------------------------------------------------------------- comments


async def test_a_comment_whose_answer_was_lost_is_found_not_posted_again(
    world: FakeGitHub, writer: Any
) -> None:
    world.fail_next("POST", rf"/issues/{ISSUE}/comments$", 502, applied=True)

    url = await publish.comment(writer, REF, ISSUE, "Done.", key="run-1:comment")

    (made,) = _bot_comments(world)
    assert made["body"].startswith("Done.")
    assert url.endswith(f"#issuecomment-{made['id']}")
    assert len(world.requests_to("POST", rf"/issues/{ISSUE}/comments$")) == 1


async def test_a_comment_that_never_landed_is_posted_again(world: FakeGitHub, writer: Any) -> None:
    world.fail_next("POST", rf"/issues/{ISSUE}/comments$", 502)

    await publish.comment(writer, REF, ISSUE, "Done.", key="run-1:comment")

    assert len(_bot_comments(world)) == 1
    assert [r.status for r in world.requests_to("POST", rf"/issues/{ISSUE}/comments$")] == [
        502,
        201,
    ]


async def test_a_rerun_finds_the_comment_of_its_first_try(world: FakeGitHub, writer: Any) -> None:
    first = await publish.comment(writer, REF, ISSUE, "Done.", key="run-1:comment")
    again = await publish.comment(writer, REF, ISSUE, "Done.", key="run-1:comment")
    other = await publish.comment(writer, REF, ISSUE, "Done.", key="run-2:comment")

    assert again == first
    assert other != first
    assert len(_bot_comments(world)) == 2


async def test_a_create_that_keeps_failing_gives_up(world: FakeGitHub, writer: Any) -> None:
    world.fail_next("POST", rf"/issues/{ISSUE}/comments$", 502, times=10)

    with pytest.raises(RequestFailed):
        await publish.comment(writer, REF, ISSUE, "Done.", key="run-1:comment")

    assert len(world.requests_to("POST", rf"/issues/{ISSUE}/comments$")) == 4  # 1 + 3 retries
    assert _bot_comments(world) == []


async def test_a_tracking_comment_whose_answer_was_lost_is_found_by_its_marker(
    world: FakeGitHub, writer: Any, redis: Redis
) -> None:
    world.fail_next("POST", rf"/issues/{ISSUE}/comments$", 502, applied=True)
    tracking = TrackingComment(writer, redis, REF, ISSUE, "run-9", min_interval=0)

    await tracking.phase("queued")
    await tracking.finalize("Done", [])

    (made,) = _bot_comments(world)
    assert tracking.comment_id == made["id"]
    assert made["body"].startswith(marker("run-9"))
    assert "Done" in made["body"]


async def test_an_issue_whose_answer_was_lost_is_found(world: FakeGitHub, writer: Any) -> None:
    world.fail_next("POST", rf"/repos/{REPO}/issues$", 502, applied=True)

    number, url = await publish.open_issue(writer, REF, "Report", "Body", key="run-1:issue")

    (issue,) = [i for i in world.issues if i["title"] == "Report"]
    assert issue["number"] == number
    assert url.endswith(f"/issues/{number}")
    assert len(world.requests_to("POST", rf"/repos/{REPO}/issues$")) == 1


async def test_a_reply_whose_answer_was_lost_is_found(world: FakeGitHub, writer: Any) -> None:
    asked = world.add_review_comment(REPO, PR, "@openhands why?", "octo-dev", path="feature.txt")
    world.fail_next("POST", r"/replies$", 502, applied=True)

    await publish.reply_in_thread(writer, REF, PR, asked, "Because.", key="run-1:reply")

    replies = [c for c in world.review_comments.values() if c["in_reply_to_id"] == asked]
    assert len(replies) == 1
    assert replies[0]["body"].startswith("Because.")
    assert len(world.requests_to("POST", r"/replies$")) == 1


async def test_a_review_whose_answer_was_lost_is_found(
    world: FakeGitHub, git_host: FakeGitHost, writer: Any
) -> None:
    world.fail_next("POST", rf"/pulls/{PR}/reviews$", 502, applied=True)

    await publish.review(
        writer,
        REF,
        PR,
        commit_id=git_host.rev_parse(REPO, "refs/heads/feature"),
        body="Looks fine.",
        event="COMMENT",
        comments=[{"path": "feature.txt", "line": 1, "body": "nit"}],
        key="run-1:review",
    )

    (review,) = world.reviews
    assert review["body"].startswith("Looks fine.")
    assert review["comments"] == [{"path": "feature.txt", "line": 1, "body": "nit"}]
    assert len(world.requests_to("POST", rf"/pulls/{PR}/reviews$")) == 1


# ----------------------------------------------------------------------------- branches and PRs


async def test_a_branch_whose_creation_answer_was_lost_is_found(
    world: FakeGitHub, git_host: FakeGitHost, writer: Any
) -> None:
    sha = await _commit(writer, git_host)
    world.fail_next("POST", r"/git/refs$", 502, applied=True)

    existed = await publish.ensure_branch(writer, REF, "openhands/fix", sha)

    assert existed is False
    assert git_host.branches(REPO)["openhands/fix"] == sha
    assert len(world.requests_to("POST", r"/git/refs$")) == 1
    assert world.requests_to("PATCH", r"/git/refs/") == []  # found where it should be


async def test_a_branch_made_meanwhile_elsewhere_is_moved_to_the_run_commit(
    world: FakeGitHub, git_host: FakeGitHost, writer: Any
) -> None:
    sha = await _commit(writer, git_host)
    # The first look sees no branch; by the time the bot creates it, an earlier try made it.
    world.fail_next("GET", r"/git/ref/heads/openhands/fix$", 404, body={"message": "Not Found"})
    stale = git_host.commit(REPO, {"app.py": "older\n"}, branch="openhands/fix")

    await publish.ensure_branch(writer, REF, "openhands/fix", sha)

    assert stale != sha
    assert git_host.branches(REPO)["openhands/fix"] == sha
    assert [r.status for r in world.requests_to("POST", r"/git/refs$")] == [422]


async def test_a_pull_request_whose_answer_was_lost_is_found(
    world: FakeGitHub, git_host: FakeGitHost, writer: Any
) -> None:
    sha = await _commit(writer, git_host)
    await publish.ensure_branch(writer, REF, "openhands/fix", sha)
    world.fail_next("POST", rf"/repos/{REPO}/pulls$", 502, applied=True)

    number, url, _ = await publish.ensure_pull_request(
        writer, REF, branch="openhands/fix", base="main", title="Fix", body="Fixes", draft=True
    )

    (pull,) = world.created_pulls
    assert pull["number"] == number
    assert url.endswith(f"/pull/{number}")
    assert len(world.requests_to("POST", rf"/repos/{REPO}/pulls$")) == 1


async def test_a_pull_request_refused_as_existing_is_reused(
    world: FakeGitHub, git_host: FakeGitHost, writer: Any
) -> None:
    sha = await _commit(writer, git_host)
    await publish.ensure_branch(writer, REF, "openhands/fix", sha)
    first, _, _ = await publish.ensure_pull_request(
        writer, REF, branch="openhands/fix", base="main", title="Fix", body="Fixes", draft=True
    )
    # A stale list (as after a lost answer): the create is refused with "already exists".
    world.fail_next("GET", rf"/repos/{REPO}/pulls$", 200, body=[])

    number, _, reused = await publish.ensure_pull_request(
        writer, REF, branch="openhands/fix", base="main", title="Fix", body="Fixes", draft=True
    )

    assert (number, reused) == (first, True)
    assert len(world.created_pulls) == 1
    assert [r.status for r in world.requests_to("POST", rf"/repos/{REPO}/pulls$")] == [201, 422]


async def test_a_refused_pull_request_that_does_not_exist_stays_an_error(
    world: FakeGitHub, git_host: FakeGitHost, writer: Any
) -> None:
    sha = await _commit(writer, git_host)
    await publish.ensure_branch(writer, REF, "openhands/fix", sha)
    world.fail_next("POST", rf"/repos/{REPO}/pulls$", 422, body={"message": "Validation Failed"})

    with pytest.raises(RequestFailed):
        await publish.ensure_pull_request(
            writer, REF, branch="openhands/fix", base="main", title="Fix", body="", draft=True
        )

    assert world.created_pulls == []


async def test_a_fast_forward_whose_answer_was_lost_is_sent_again_and_holds(
    world: FakeGitHub, git_host: FakeGitHost, writer: Any
) -> None:
    parent = git_host.rev_parse(REPO, "refs/heads/feature")
    world.fail_next("PATCH", r"/git/refs/heads/feature$", 502, applied=True)

    sha = await publish.push(
        writer,
        REF,
        branch="feature",
        parent=parent,
        changes=[ChangedFile(path="feature.txt", status="modified", content=b"done\n")],
        message="Finish",
        when=WHEN,
        handle="openhands",
    )

    assert git_host.rev_parse(REPO, "refs/heads/feature") == sha
    assert [r.status for r in world.requests_to("PATCH", r"/git/refs/heads/feature$")] == [
        502,
        200,
    ]
