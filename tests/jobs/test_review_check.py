"""What the review's check run says for each outcome: never green for a skip or a failure."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from bot.config import Settings
from bot.github.checks import ReviewCheck
from bot.github.client import GitHubApp
from bot.jobs.context import Attempt
from bot.jobs.review_check import facts, findings_title, settled, verdict
from bot.queue.tasks import RepoRef
from bot.runs import stop
from bot.runs.outcome import Done, RunOutcome
from tests.fakes.github import FakeGitHub


@pytest.mark.parametrize(
    ("severities", "title"),
    [
        ({}, "no findings"),
        ({"critical": 0, "important": 0, "suggestion": 0}, "no findings"),
        ({"critical": 1, "important": 0, "suggestion": 1}, "2 findings: 1 critical, 1 suggestion"),
        ({"important": 1}, "1 finding: 1 important"),
    ],
)
def test_findings_title(severities: dict[str, int], title: str) -> None:
    assert findings_title(severities) == title


async def _reviewed() -> RunOutcome:
    return RunOutcome("r", Done.REVIEWED, facts=facts({}, ""))


def _reviewed_with(**severities: int) -> RunOutcome:
    return RunOutcome(
        "r", Done.REVIEWED, facts=facts(severities, "**Coverage:** 2 of 2 files reviewed.")
    )


def test_success_only_for_a_review_without_blocking_findings() -> None:
    assert verdict(_reviewed_with(), "oh")[:2] == ("success", "no findings")
    assert verdict(_reviewed_with(important=2, suggestion=1), "oh")[:2] == (
        "success",
        "3 findings: 2 important, 1 suggestion",
    )
    conclusion, title, summary = verdict(_reviewed_with(critical=1, important=1), "oh")
    assert (conclusion, title) == ("failure", "2 findings: 1 critical, 1 important")
    assert summary == "**Coverage:** 2 of 2 files reviewed."


@pytest.mark.parametrize(
    ("outcome", "conclusion", "title"),
    [
        (
            RunOutcome("r", Done.SKIPPED, reason="too large"),
            "skipped",
            "skipped: over the size budget",
        ),
        (
            RunOutcome("r", Done.SKIPPED, reason="no reviewable files"),
            "skipped",
            "skipped: no reviewable files",
        ),
        (
            RunOutcome.failed("r", "llm_unavailable", "500"),
            "failure",
            "failed: the LLM did not answer",
        ),
        (
            RunOutcome.failed("r", "timeout"),
            "timed_out",
            "failed: the review took longer than its time limit",
        ),
        (
            RunOutcome.failed("r", "github"),
            "failure",
            "failed: GitHub refused a request the bot needed",
        ),
        (
            RunOutcome.failed("r", "no-such-code"),
            "failure",
            "failed: the bot hit an unexpected error",
        ),
    ],
)
def test_skips_and_failures_are_never_green(
    outcome: RunOutcome, conclusion: str, title: str
) -> None:
    assert verdict(outcome, "oh")[:2] == (conclusion, title)


REPO = RepoRef(owner="octo", name="checked")
HEAD = "c" * 40


async def _started(
    fake_github: FakeGitHub, settings: Settings, redis: Redis, run_id: str
) -> ReviewCheck:
    fake_github.add_installation(33, "octo", [REPO.full_name])
    check = ReviewCheck(GitHubApp(settings, redis), redis, REPO, 33, run_id, 4, details_url=None)
    await check.start(HEAD)
    return check


async def _never_ends() -> RunOutcome:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def _cancelled(check: ReviewCheck, settings: Settings, redis: Redis, now: Attempt) -> None:
    task = asyncio.create_task(settled(settings, redis, now, check, _never_ends))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def _final(fake_github: FakeGitHub) -> tuple[str, str | None, str]:
    (run,) = fake_github.check_runs
    return run["status"], run["conclusion"], run["output"]["title"]


async def test_a_crash_completes_the_check_as_failed(
    fake_github: FakeGitHub, settings: Settings, redis: Redis
) -> None:
    check = await _started(fake_github, settings, redis, "run-crash")

    async def crash() -> RunOutcome:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        await settled(settings, redis, Attempt("j", 1, 3), check, crash)
    assert _final(fake_github) == (
        "completed",
        "failure",
        "failed: the bot hit an unexpected error",
    )


async def test_a_stop_completes_the_check_as_cancelled(
    fake_github: FakeGitHub, settings: Settings, redis: Redis
) -> None:
    check = await _started(fake_github, settings, redis, "run-stop")
    await stop.request(redis, "run-stop", "alice")
    await _cancelled(check, settings, redis, Attempt("j", 1, 3))
    assert _final(fake_github) == ("completed", "cancelled", "stopped by @alice")


async def test_a_shutdown_leaves_the_check_to_the_next_try_which_completes_it(
    fake_github: FakeGitHub, settings: Settings, redis: Redis
) -> None:
    check = await _started(fake_github, settings, redis, "run-restart")
    await _cancelled(check, settings, redis, Attempt("j", 1, 3))
    assert _final(fake_github)[:2] == ("in_progress", None)

    again = ReviewCheck(
        GitHubApp(settings, redis), redis, REPO, 33, "run-restart", 4, details_url=None
    )
    await again.start(HEAD)  # the same check run, found again
    await settled(settings, redis, Attempt("j", 2, 3), again, _reviewed)
    assert _final(fake_github) == ("completed", "success", "no findings")


async def test_the_last_try_interrupted_completes_the_check_as_failed(
    fake_github: FakeGitHub, settings: Settings, redis: Redis
) -> None:
    check = await _started(fake_github, settings, redis, "run-last")
    await _cancelled(check, settings, redis, Attempt("j", 3, 3))
    assert _final(fake_github) == (
        "completed",
        "failure",
        "failed: the worker stopped during the review",
    )


async def test_without_the_checks_permission_the_review_goes_on_without_a_check(
    fake_github: FakeGitHub, settings: Settings, redis: Redis
) -> None:
    fake_github.add_installation(
        34, "octo", [REPO.full_name], permissions={"pull_requests": "write", "metadata": "read"}
    )
    check = ReviewCheck(GitHubApp(settings, redis), redis, REPO, 34, "run-old", 4, details_url=None)
    await check.start(HEAD)
    outcome = await settled(settings, redis, Attempt("j", 1, 3), check, _reviewed)
    assert outcome.status is Done.REVIEWED
    assert fake_github.check_runs == []
