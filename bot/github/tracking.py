"""One tracking comment per run, edited in place from queued to done, and always finalized.

Edits are throttled (GitHub allows about 80 content writes a minute per app) and keyed by the
run id, so a re-executed job, or a creation whose answer was lost, finds and reuses its comment
instead of posting another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from githubkit import GitHub
from githubkit.exception import GitHubException
from redis.asyncio import Redis

from bot import keys
from bot.github import once
from bot.queue.tasks import RepoRef

log = logging.getLogger(__name__)

PHASES = ("queued", "starting workspace", "working", "publishing", "done")


MARKER_START = "<!-- openhands-run:"


def marker(run_id: str) -> str:
    return f"{MARKER_START}{run_id} -->"


ON_IT = "**OpenHands** is on it. Say `@{handle} stop` to stop it."


def render(
    run_id: str,
    phase: str,
    detail: str = "",
    run_url: str | None = None,
    *,
    handle: str = "openhands",
) -> str:
    """The in-progress body: a checklist of phases with the current one in bold."""
    reached = PHASES.index(phase) if phase in PHASES else 0
    lines = [marker(run_id), ON_IT.format(handle=handle), ""]
    for index, name in enumerate(PHASES[:-1]):
        if index < reached:
            lines.append(f"- [x] {name.capitalize()}")
        elif index == reached:
            suffix = f": {detail}" if detail else ""
            lines.append(f"- [ ] **{name.capitalize()}**{suffix}")
        else:
            lines.append(f"- [ ] {name.capitalize()}")
    lines += ["", _footer(run_id, run_url)]
    return "\n".join(lines)


def _footer(run_id: str, run_url: str | None) -> str:
    run = f"[run `{run_id}`]({run_url})" if run_url else f"run `{run_id}`"
    return f"<sub>{run}</sub>"


def final_body(run_id: str, headline: str, details: list[str], run_url: str | None) -> str:
    parts = [marker(run_id), headline]
    if details:
        parts += ["", *details]
    parts += ["", _footer(run_id, run_url)]
    return "\n".join(parts)


class TrackingComment:
    """The run's comment on an issue or pull request."""

    def __init__(
        self,
        gh: GitHub[Any],
        redis: Redis,
        repo: RepoRef,
        number: int,
        run_id: str,
        *,
        min_interval: float = 5.0,
        run_url: str | None = None,
        journal: Callable[[str], Awaitable[None]] | None = None,
        handle: str = "openhands",
    ) -> None:
        self._gh = gh
        self._redis = redis
        self._repo = repo
        self._number = number
        self.run_id = run_id
        self._min_interval = min_interval
        self.run_url = run_url
        self.comment_id: int | None = None
        self._last_edit = 0.0
        self._last_body = ""
        self._pending: str | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.html_url: str | None = None
        self._journal = journal  # the run's own log, for the runs page
        self._handle = handle  # BOT_HANDLE: the stop command the comment offers

    @property
    def _key(self) -> str:
        return f"{keys.TRACKING_PREFIX}{self.run_id}"

    async def ensure(self, body: str | None = None) -> int:
        """Find this run's comment (by Redis record or marker) or create it, once."""
        if self.comment_id is not None:
            return self.comment_id
        recorded = await self._redis.get(self._key)
        if recorded is not None:
            self.comment_id = int(recorded)
            return self.comment_id
        owner, name = self._repo.owner, self._repo.name
        mark = marker(self.run_id)

        async def find() -> Any | None:
            return await once.find_comment(self._gh, self._repo, self._number, mark)

        async def create() -> Any:
            text = body or render(self.run_id, "queued", handle=self._handle)
            made = await self._gh.rest.issues.async_create_comment(
                owner, name, self._number, body=text
            )
            self._last_edit = time.monotonic()
            return made.parsed_data

        comment: Any = await find()
        if comment is None:  # a lost answer is looked up by the marker before posting again
            comment = await once.create_once(self._gh, "tracking comment", create, find)
            self._last_body = comment.body or ""
        self.comment_id = int(comment.id)
        self.html_url = comment.html_url
        await self._redis.set(self._key, self.comment_id, ex=30 * 24 * 3600)
        return self.comment_id

    async def _edit(self, body: str) -> None:
        if body == self._last_body:
            return
        comment_id = await self.ensure(body)
        if body == self._last_body:  # ensure() just created it with this body
            return
        await self._gh.rest.issues.async_update_comment(
            self._repo.owner, self._repo.name, comment_id, body=body
        )
        self._last_body = body
        self._last_edit = time.monotonic()

    def show(self, phase: str, detail: str = "") -> None:
        """Schedule an in-progress update; throttled, the latest state wins."""
        self._pending = render(self.run_id, phase, detail, self.run_url, handle=self._handle)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        wait = self._min_interval - (time.monotonic() - self._last_edit)
        if wait > 0:
            await asyncio.sleep(wait)
        body, self._pending = self._pending, None
        if body is not None:
            try:
                await self._edit(body)
            except GitHubException as exc:  # progress is best effort; the final edit is not
                log.warning("tracking comment update failed: %s", type(exc).__name__)

    async def phase(self, phase: str, detail: str = "") -> None:
        """Show a phase change now (not throttled)."""
        await self._cancel_pending()
        await self._note(f"{phase}: {detail}" if detail else phase)
        await self._edit(render(self.run_id, phase, detail, self.run_url, handle=self._handle))

    async def finalize(self, headline: str, details: list[str]) -> None:
        """The last edit: outcome and what to do next. Raises if GitHub refuses it."""
        await self._cancel_pending()
        await self._note(headline)
        await self._edit(final_body(self.run_id, headline, details, self.run_url))

    async def _note(self, line: str) -> None:
        if self._journal is not None:
            with contextlib.suppress(Exception):  # the log is for people, never in the way
                await self._journal(line)

    async def _cancel_pending(self) -> None:
        self._pending = None
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
