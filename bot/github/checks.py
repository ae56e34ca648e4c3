"""The review's check run on the head commit (the Checks API): in progress once the review starts,
then completed once, whatever happened, with a conclusion and a title that say what it was.

Its own token asks only for `checks: write`: an installation that has not yet accepted that
permission gets its reviews without a check (logged), rather than no review at all.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Literal

from githubkit import GitHub
from githubkit.exception import GitHubException, RequestFailed
from githubkit.utils import UNSET
from redis.asyncio import Redis

from bot import keys
from bot.github.client import GitHubApp
from bot.queue.tasks import RepoRef, review_check_external_id

log = logging.getLogger(__name__)

CHECK_NAME = "OpenHands review"
CHECK_PERMISSIONS = {"checks": "write"}
Conclusion = Literal["success", "failure", "neutral", "cancelled", "skipped", "timed_out"]
MAX_TITLE = 1000
MAX_SUMMARY = 60_000  # GitHub takes 65,535 characters
IN_PROGRESS_TITLE = "reviewing"
IN_PROGRESS_SUMMARY = "The review is under way."


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class ReviewCheck:
    """One review run's check: `start` it on the head commit, `complete` it once."""

    def __init__(
        self,
        app: GitHubApp,
        redis: Redis,
        repo: RepoRef,
        installation_id: int,
        run_id: str,
        number: int,
        *,
        details_url: str | None,
    ) -> None:
        self._app = app
        self._redis = redis
        self._repo = repo
        self._installation = installation_id
        self._number = number
        self.run_id = run_id
        self.details_url = details_url
        self.check_id: int | None = None
        self.completed: tuple[str, str] | None = None  # (conclusion, title) once completed
        self._gh: GitHub[Any] | None = None

    @property
    def _key(self) -> str:
        return f"{keys.CHECK_PREFIX}{self.run_id}"

    async def _client(self) -> GitHub[Any] | None:
        if self._gh is None:
            try:
                self._gh = await self._app.installation_client(
                    self._installation,
                    repositories=[self._repo.name],
                    permissions=CHECK_PERMISSIONS,
                )
            except RequestFailed as exc:
                if exc.response.status_code not in (403, 404, 422):
                    raise
                log.warning(
                    "run %s: no check run: the installation does not grant checks: write (%d)",
                    self.run_id,
                    exc.response.status_code,
                    extra={"run_id": self.run_id},
                )
                return None
        return self._gh

    async def start(self, head_sha: str) -> None:
        """The check `in_progress` on `head_sha`; a re-executed job finds the one it made. A
        refusal is logged: the review goes on without a check."""
        if self.check_id is not None:
            return
        recorded = await self._redis.get(self._key)
        gh = await self._client()
        if gh is None:
            return
        if recorded is not None:
            self.check_id = int(recorded)
            await self._update(gh, status="in_progress")
            return
        try:
            made = await gh.rest.checks.async_create(
                self._repo.owner,
                self._repo.name,
                name=CHECK_NAME,
                head_sha=head_sha,
                status="in_progress",
                started_at=_now(),
                external_id=review_check_external_id(self._number),
                details_url=self.details_url or UNSET,
                output={"title": IN_PROGRESS_TITLE, "summary": IN_PROGRESS_SUMMARY},
            )
        except GitHubException as exc:  # the review goes on without a check: it claims nothing
            log.warning(
                "run %s: GitHub refused the check run: %s",
                self.run_id,
                type(exc).__name__,
                extra={"run_id": self.run_id},
            )
            return
        self.check_id = made.parsed_data.id
        await self._redis.set(self._key, self.check_id, ex=30 * 24 * 3600)

    async def complete(self, conclusion: Conclusion, title: str, summary: str) -> None:
        """The last write: completed with `conclusion`. Does nothing when no check was started
        (nothing was claimed) or when it is completed already. Raises if GitHub refuses it."""
        if self.check_id is None or self.completed is not None:
            return
        gh = await self._client()
        if gh is None:
            return
        title = title[:MAX_TITLE]
        await self._update(
            gh,
            status="completed",
            conclusion=conclusion,
            completed_at=_now(),
            output={"title": title, "summary": summary[:MAX_SUMMARY] or title},
        )
        self.completed = (conclusion, title)

    async def _update(self, gh: GitHub[Any], **changes: Any) -> None:
        assert self.check_id is not None
        try:
            await gh.rest.checks.async_update(
                self._repo.owner, self._repo.name, self.check_id, **changes
            )
        except GitHubException:
            log.warning(
                "run %s: GitHub refused an update of check run %s",
                self.run_id,
                self.check_id,
                extra={"run_id": self.run_id},
            )
            raise
