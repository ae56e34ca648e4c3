"""GitHub creates that happen once: after a create whose answer was lost (a 5xx, a timeout, a
dropped connection) or refused as a duplicate, look for what it made before creating again.

A create is found by what identifies it: a marker in its body (`output_marker`), or its name (a
branch, a pull request's head). Comments, replies and reviews are read in full; issues only
among the newest (a lost one is recent, and a repository's issues are many).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from githubkit import GitHub, Response
from githubkit.exception import GitHubException, RateLimitExceeded, RequestError, RequestFailed

from bot.github.client import RetryPolicy
from bot.queue.tasks import RepoRef

log = logging.getLogger(__name__)

PAGE = 100  # GitHub's largest page


def output_marker(key: str) -> str:
    """The hidden line that lets a create be found again; `key` names the output (run and kind)."""
    return f"<!-- openhands-output:{key} -->"


def marked(body: str, key: str) -> str:
    return f"{body}\n\n{output_marker(key)}"


def outcome_unknown(exc: GitHubException) -> bool:
    """Whether GitHub may have applied a request that failed: a 5xx, a timeout, a lost link."""
    if isinstance(exc, RateLimitExceeded):
        return False
    if isinstance(exc, RequestFailed):
        return exc.response.status_code >= 500
    return isinstance(exc, RequestError)


def _policy(gh: GitHub[Any]) -> RetryPolicy:
    """The client's own retry policy (how many tries, how long between them)."""
    policy = gh.config.auto_retry
    return policy if isinstance(policy, RetryPolicy) else RetryPolicy()


async def create_once[T](
    gh: GitHub[Any],
    what: str,
    create: Callable[[], Awaitable[T]],
    find: Callable[[], Awaitable[T | None]],
    *,
    exists: Callable[[RequestFailed], bool] = lambda exc: False,
) -> T:
    """`create()`, without ever making a second one.

    After a failure that may have been applied, or a refusal `exists` says means "already
    there", `find()` looks for it; found, it is the result. Not found after an unknown outcome,
    the create is tried again (as often as the client retries a 5xx); otherwise the error stands.
    """
    policy = _policy(gh)
    attempt = 0
    while True:
        try:
            return await create()
        except GitHubException as exc:
            unknown = outcome_unknown(exc)
            duplicate = isinstance(exc, RequestFailed) and not unknown and exists(exc)
            if not unknown and not duplicate:
                raise
            if unknown:  # give GitHub a moment before asking what it did
                await asyncio.sleep(policy.backoff(attempt).total_seconds())
            found = await find()
            if found is not None:
                log.info("%s: found the one already made (%s)", what, type(exc).__name__)
                return found
            if duplicate or attempt >= policy.server_retries:
                raise
            log.warning("%s: not made (%s); trying again", what, type(exc).__name__)
            attempt += 1


async def post_marked(
    gh: GitHub[Any],
    key: str,
    body: str,
    create: Callable[[str], Awaitable[Any]],
    find: Callable[[str], Awaitable[Any | None]],
) -> Any:
    """An output whose body carries the marker of `key`: the one already there (an earlier
    try's), or `create(body with the marker)`, made once."""
    mark = output_marker(key)
    found = await find(mark)
    if found is not None:
        return found
    return await create_once(gh, key, lambda: create(marked(body, key)), lambda: find(mark))


async def _first_with(
    list_page: Callable[[int], Awaitable[Response[Any]]], text: str
) -> Any | None:
    """The first item, page by page, whose body contains `text`."""
    page = 1
    while True:
        items: list[Any] = list((await list_page(page)).parsed_data)
        for item in items:
            if text in (item.body or ""):
                return item
        if len(items) < PAGE:
            return None
        page += 1


async def find_comment(gh: GitHub[Any], repo: RepoRef, number: int, text: str) -> Any | None:
    """The first comment on an issue or pull request whose body contains `text`."""
    return await _first_with(
        lambda page: gh.rest.issues.async_list_comments(
            repo.owner, repo.name, number, per_page=PAGE, page=page
        ),
        text,
    )


async def find_review_comment(gh: GitHub[Any], repo: RepoRef, number: int, text: str) -> Any | None:
    """The first review (diff) comment on a pull request whose body contains `text`."""
    return await _first_with(
        lambda page: gh.rest.pulls.async_list_review_comments(
            repo.owner, repo.name, number, per_page=PAGE, page=page
        ),
        text,
    )


async def find_review(gh: GitHub[Any], repo: RepoRef, number: int, text: str) -> Any | None:
    """The first review of a pull request whose body contains `text`."""
    return await _first_with(
        lambda page: gh.rest.pulls.async_list_reviews(
            repo.owner, repo.name, number, per_page=PAGE, page=page
        ),
        text,
    )


async def find_issue(gh: GitHub[Any], repo: RepoRef, text: str) -> Any | None:
    """The newest issue (not pull request) whose body contains `text`, among the 100 newest."""
    response = await gh.rest.issues.async_list_for_repo(
        repo.owner, repo.name, state="all", sort="created", direction="desc", per_page=PAGE
    )
    issues: list[Any] = list(response.parsed_data)
    for issue in issues:
        if not issue.pull_request and text in (issue.body or ""):
            return issue
    return None
