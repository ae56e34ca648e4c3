"""The retry policy's method rules: a 5xx or a lost answer is retried only for requests that can
be sent twice without doing twice (reads, PUT, PATCH, DELETE, and the POSTs named repeatable);
rate limits, which mean nothing was done, are waited out whatever the method."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from githubkit.exception import (
    GitHubException,
    RequestError,
    RequestFailed,
    RequestTimeout,
    SecondaryRateLimitExceeded,
)
from githubkit.response import Response
from redis.asyncio import Redis

from bot.config import Settings
from bot.github.client import GitHubApp, RetryPolicy, repeatable
from tests.fakes.github import FakeGitHub

API = "https://api.github.com"
REPO = "/repos/octo/app"
INSTALLATION = 41


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", f"{REPO}/issues/7/comments", True),
        ("HEAD", f"{REPO}", True),
        ("PUT", f"{REPO}/contents/README.md", True),
        ("DELETE", f"{REPO}/git/refs/heads/old", True),
        ("PATCH", f"{REPO}/issues/comments/12", True),  # a comment's body
        ("PATCH", f"{REPO}/issues/7", True),  # an issue's state
        ("PATCH", f"{REPO}/git/refs/heads/fix", True),  # a ref's sha
        ("POST", "/app/installations/31/access_tokens", True),  # another token
        ("POST", f"{REPO}/git/blobs", True),  # content-addressed
        ("POST", f"{REPO}/git/trees", True),
        ("POST", f"{REPO}/git/commits", True),
        ("POST", f"{REPO}/issues/comments/12/reactions", True),  # 200 when it exists
        ("POST", f"{REPO}/issues/7/reactions", True),
        ("POST", f"{REPO}/pulls/comments/9/reactions", True),
        ("POST", f"{REPO}/issues/7/comments", False),  # a second comment
        ("POST", f"{REPO}/issues", False),  # a second issue
        ("POST", f"{REPO}/pulls", False),  # 422 "already exists"
        ("POST", f"{REPO}/git/refs", False),  # 422 "Reference already exists"
        ("POST", f"{REPO}/pulls/3/reviews", False),  # a second review
        ("POST", f"{REPO}/pulls/3/comments/9/replies", False),  # a second reply
        ("POST", "/app-manifests/abc/conversions", False),  # a one-time code
        ("POST", f"/api/v3{REPO}/git/blobs", True),  # GitHub Enterprise Server's prefix
        ("POST", f"/api/v3{REPO}/issues/7/comments", False),
    ],
)
def test_which_requests_may_be_sent_again(method: str, path: str, expected: bool) -> None:
    assert repeatable(method, path) is expected


def _failed(method: str, path: str, status: int, **headers: str) -> RequestFailed:
    request = httpx.Request(method, API + path)
    return RequestFailed(Response(httpx.Response(status, headers=headers, request=request), Any))


def _timeout(method: str, path: str) -> RequestTimeout:
    return RequestTimeout(httpx.ReadTimeout("timed out", request=httpx.Request(method, API + path)))


def _unreachable(method: str, path: str) -> RequestError[Any]:
    request = httpx.Request(method, API + path)
    return RequestError(httpx.ConnectError("refused", request=request))


def _limited(method: str, path: str) -> SecondaryRateLimitExceeded:
    request = httpx.Request(method, API + path)
    response = Response(httpx.Response(403, request=request), Any)
    return SecondaryRateLimitExceeded(response, timedelta(seconds=2))


COMMENT = f"{REPO}/issues/7/comments"


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (_failed("GET", COMMENT, 502), True),
        (_failed("PATCH", f"{REPO}/issues/comments/12", 503), True),
        (_failed("POST", f"{REPO}/git/blobs", 500), True),
        (_failed("POST", COMMENT, 502), False),
        (_failed("POST", f"{REPO}/pulls", 504), False),
        (_failed("GET", COMMENT, 404), False),
        (_failed("PATCH", f"{REPO}/git/refs/heads/fix", 422), False),
        (_timeout("GET", COMMENT), True),
        (_timeout("PUT", f"{REPO}/contents/a"), True),
        (_timeout("POST", COMMENT), False),
        (_unreachable("DELETE", f"{REPO}/git/refs/heads/old"), True),
        (_unreachable("POST", f"{REPO}/git/refs"), False),
        (_limited("POST", COMMENT), True),  # a rate limit: nothing was done
    ],
    ids=lambda value: repr(value) if isinstance(value, GitHubException) else str(value),
)
def test_what_is_retried(error: GitHubException, retried: bool) -> None:
    decision = RetryPolicy(base_delay=0.01)(error, 0)
    assert decision.do_retry is retried


def test_retries_stop_after_their_count_and_back_off() -> None:
    policy = RetryPolicy(server_retries=3, base_delay=1.0)
    error = _failed("GET", COMMENT, 502)
    for count, (low, high) in enumerate([(0.5, 1.0), (1.0, 2.0), (2.0, 4.0)]):
        wait = policy(error, count).retry_after  # doubling, with jitter in its upper half
        assert wait is not None
        assert low <= wait.total_seconds() <= high
    assert policy(error, 3).do_retry is False


@pytest.fixture
async def gh(fake_github: FakeGitHub, settings: Settings, redis: Redis) -> Any:
    fake_github.add_installation(INSTALLATION, "octo", ["octo/app"])
    fake_github.add_issue("octo/app", 7, "An issue", "body", "someone")
    return await GitHubApp(settings, redis).installation_client(INSTALLATION)


async def test_the_bot_client_retries_a_read_but_never_re_posts(
    fake_github: FakeGitHub, gh: Any
) -> None:
    fake_github.fail_next("GET", r"/issues/7/comments$", 502, times=2)
    listed = await gh.rest.issues.async_list_comments("octo", "app", 7)
    assert listed.parsed_data == []
    assert len(fake_github.requests_to("GET", r"/issues/7/comments$")) == 3

    fake_github.fail_next("POST", r"/issues/7/comments$", 502, applied=True)
    with pytest.raises(RequestFailed) as raised:
        await gh.rest.issues.async_create_comment("octo", "app", 7, body="once")
    assert raised.value.response.status_code == 502
    assert len(fake_github.requests_to("POST", r"/issues/7/comments$")) == 1
    assert [c["body"] for c in fake_github.comments.values()] == ["once"]  # applied, once


async def test_the_bot_client_sends_an_edit_again(fake_github: FakeGitHub, gh: Any) -> None:
    comment_id = fake_github.add_comment("octo/app", 7, "first", "fake-bot[bot]")
    fake_github.fail_next("PATCH", rf"/issues/comments/{comment_id}$", 502, applied=True)
    await gh.rest.issues.async_update_comment("octo", "app", comment_id, body="second")
    assert len(fake_github.requests_to("PATCH", rf"/issues/comments/{comment_id}$")) == 2
    assert fake_github.comments[comment_id]["body"] == "second"
