"""Write pacing across clients through real Redis: one installation's writes never overlap, its
windows are counted by every client together, and GitHub's `Retry-After` holds them all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from githubkit.exception import RateLimitExceeded
from redis.asyncio import Redis

from bot import keys
from bot.config import Settings
from bot.github.client import GitHubApp
from bot.github.failures import classify
from bot.github.pacing import WritePaced
from tests.fakes.github import FakeGitHub

INSTALLATION = 41
OTHER = 42
COMMENTS = r"/issues/7/comments$"


@pytest.fixture
async def apps(
    fake_github: FakeGitHub, settings: Settings, redis: Redis, redis_url: str
) -> AsyncIterator[list[GitHubApp]]:
    """Two bots on one Redis, each with its own connection (two workers)."""
    fake_github.add_installation(INSTALLATION, "octo", ["octo/app"])
    fake_github.add_installation(OTHER, "other", ["other/app"])
    fake_github.add_issue("octo/app", 7, "An issue", "body", "someone")
    fake_github.add_issue("other/app", 7, "An issue", "body", "someone")
    second = Redis.from_url(redis_url)
    yield [GitHubApp(settings, redis), GitHubApp(settings, second)]
    await second.aclose()


def _limited(settings: Settings, limits: str) -> Settings:
    return settings.model_copy(update={"github_write_limits": limits})


async def _comment(app: GitHubApp, installation: int, body: str) -> None:
    owner = "octo" if installation == INSTALLATION else "other"
    gh = await app.installation_client(installation)
    await gh.rest.issues.async_create_comment(owner, "app", 7, body=body)


async def _comments(app: GitHubApp, installation: int, label: str, count: int) -> None:
    for n in range(count):
        await _comment(app, installation, f"{label}{n}")


def _overlapping(requests: list[Any]) -> list[tuple[str, str]]:
    return [
        (a.path, b.path) for i, a in enumerate(requests) for b in requests[i + 1 :] if a.overlaps(b)
    ]


async def test_writes_of_one_installation_never_overlap(
    fake_github: FakeGitHub, apps: list[GitHubApp]
) -> None:
    # Each write takes a while at GitHub: unpaced, two clients' writes would be in flight together.
    fake_github.delay("POST", COMMENTS, 0.05)
    await asyncio.gather(*(_comments(app, INSTALLATION, f"w{i}-", 5) for i, app in enumerate(apps)))
    posts = fake_github.requests_to("POST", r"/repos/octo/app" + COMMENTS)
    assert len(posts) == 10
    assert _overlapping(posts) == []
    assert sorted(c["body"] for c in fake_github.comments.values()) == sorted(
        f"w{i}-{n}" for i in range(2) for n in range(5)
    )


async def test_reads_and_other_installations_are_not_held(
    fake_github: FakeGitHub, apps: list[GitHubApp]
) -> None:
    # The same detector sees overlap where pacing has no say: reads, and another installation.
    fake_github.delay("GET", COMMENTS, 0.3)
    fake_github.delay("POST", COMMENTS, 0.3)
    clients = [await app.installation_client(INSTALLATION) for app in apps]
    await asyncio.gather(
        *(gh.rest.issues.async_list_comments("octo", "app", 7) for gh in clients),
        _comment(apps[0], INSTALLATION, "mine"),
        _comment(apps[1], OTHER, "theirs"),
    )
    reads = fake_github.requests_to("GET", COMMENTS)
    assert len(reads) == 2
    assert reads[0].overlaps(reads[1])
    ours, theirs = (
        fake_github.requests_to("POST", rf"/repos/{owner}/app" + COMMENTS)
        for owner in ("octo", "other")
    )
    assert ours[0].overlaps(theirs[0])


async def test_a_window_is_counted_by_every_client_together(
    fake_github: FakeGitHub, settings: Settings, redis: Redis, redis_url: str
) -> None:
    fake_github.add_installation(INSTALLATION, "octo", ["octo/app"])
    fake_github.add_issue("octo/app", 7, "An issue", "body", "someone")
    hourly = _limited(settings, "3/3600")  # three an hour: the rest must wait too long
    other = Redis.from_url(redis_url)
    try:
        apps = [GitHubApp(hourly, redis), GitHubApp(hourly, other)]
        results = await asyncio.gather(
            *(_comment(apps[n % 2], INSTALLATION, f"c{n}") for n in range(6)),
            return_exceptions=True,
        )
    finally:
        await other.aclose()
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(fake_github.requests_to("POST", COMMENTS)) == 3
    assert len(fake_github.comments) == 3
    assert len(refused) == 3
    for error in refused:
        # Refused before sending, and sorted like GitHub's own limit: the job runs again later.
        assert isinstance(error, WritePaced)
        sorted_as = classify(error, "commenting")
        assert sorted_as.code == "github_rate_limit"
        assert 0 < sorted_as.retry_after <= 3600


async def test_a_short_window_makes_writes_wait_not_fail(
    fake_github: FakeGitHub, settings: Settings, redis: Redis
) -> None:
    fake_github.add_installation(INSTALLATION, "octo", ["octo/app"])
    fake_github.add_issue("octo/app", 7, "An issue", "body", "someone")
    app = GitHubApp(_limited(settings, "2/0.2"), redis)
    await asyncio.gather(*(_comment(app, INSTALLATION, f"c{n}") for n in range(5)))
    posts = fake_github.requests_to("POST", COMMENTS)
    assert [p.status for p in posts] == [201] * 5
    assert _overlapping(posts) == []
    # The log keeps only the window's writes (at most the last few), and expires on its own.
    assert 0 < await redis.zcard(f"{keys.WRITE_LOG_PREFIX}{INSTALLATION}") <= 5
    assert await redis.pttl(f"{keys.WRITE_LOG_PREFIX}{INSTALLATION}") > 0


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "3600"},
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "9999999999"},
    ],
    ids=["retry-after", "ratelimit-reset"],
)
async def test_a_rate_limited_answer_holds_every_clients_writes(
    fake_github: FakeGitHub, apps: list[GitHubApp], headers: dict[str, str]
) -> None:
    message = {"message": "You have exceeded a secondary rate limit."}
    fake_github.fail_next("POST", COMMENTS, 403, headers=headers, body=message)
    with pytest.raises(RateLimitExceeded) as first:
        await _comment(apps[0], INSTALLATION, "first")
    assert not isinstance(first.value, WritePaced)  # GitHub's own answer
    with pytest.raises(WritePaced):
        await _comment(apps[1], INSTALLATION, "second")
    assert len(fake_github.requests_to("POST", COMMENTS)) == 1  # the second was never sent
    await _comment(apps[1], OTHER, "elsewhere")  # another installation is not held
    assert [c["body"] for c in fake_github.comments.values()] == ["elsewhere"]
