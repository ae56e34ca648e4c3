"""The change as a commit through the Git Data API, keeping what git means: each file's mode
(executable bits, symbolic links as links), any file name, and blobs streamed up in base64 pieces
so a big file is never held twice; a file that cannot be published is refused before any write.
Docs: https://docs.github.com/rest/git
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator, Awaitable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from githubkit import GitHub
from githubkit_schemas.latest.models import BasicError, ShortBlob

from bot.agent.results import ChangedFile
from bot.errors import PublishError
from bot.queue.tasks import RepoRef

BOT_NAME = "openhands-bot"
BOT_EMAIL = "openhands-bot@users.noreply.github.com"
REFUSED = "Nothing was published: {files}."
_CHUNK = 3 * 256 * 1024  # raw bytes per base64 piece of a blob's body (a multiple of 3)


def _named(path: str) -> str:
    """A file name in a comment: one line (controls escaped), inert (a code span)."""
    shown = json.dumps(path, ensure_ascii=False)[1:-1]
    fence = "`" * (max((len(r) for r in re.findall("`+", shown)), default=0) + 1)
    return f"{fence} {shown} {fence}"


def refuse_unpublishable(changes: Sequence[ChangedFile]) -> None:
    """Raise PublishError naming every file that cannot be published, and why."""
    refused = [f"{_named(c.path)} ({c.refused})" for c in changes if c.refused]
    if refused:
        raise PublishError(REFUSED.format(files="; ".join(refused)))


class _BlobBody:
    """`{"encoding":"base64","content":...}` for one blob, base64-encoded piece by piece as it is
    sent (never a second whole copy of the file). Iterable again, so a retry can resend it."""

    def __init__(self, content: bytes | bytearray) -> None:
        self._content = content
        self._head = b'{"encoding":"base64","content":"'
        self.length = len(self._head) + 4 * ((len(content) + 2) // 3) + 2

    async def _pieces(self) -> AsyncIterator[bytes]:
        yield self._head
        view = memoryview(self._content)
        for start in range(0, len(view), _CHUNK):
            yield base64.b64encode(view[start : start + _CHUNK])
        yield b'"}'

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._pieces()


async def _create_blob(gh: GitHub[Any], repo: RepoRef, content: bytes | bytearray) -> str:
    """POST /repos/{owner}/{repo}/git/blobs with a streamed body; the blob's sha."""
    body = _BlobBody(content)
    made = await gh.arequest(
        "POST",
        f"/repos/{repo.owner}/{repo.name}/git/blobs",
        content=cast(Any, body),
        headers={
            "Content-Type": "application/json",
            "Content-Length": str(body.length),  # known: httpx sends no chunked encoding
            "X-GitHub-Api-Version": gh.rest.git._REST_API_VERSION,
        },
        response_model=ShortBlob,
        error_models={"403": BasicError, "404": BasicError, "409": BasicError},
    )
    return str(made.parsed_data.sha)


async def together(*steps: Awaitable[Any]) -> list[Any]:
    """The steps' results, run at once; the first failure cancels the others and is raised as
    itself (not in a group: callers catch GitHub's and publishing's errors by type)."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def create_commit(
    gh: GitHub[Any],
    repo: RepoRef,
    *,
    base_sha: str,
    changes: list[ChangedFile],
    message: str,
    when: datetime,
) -> str:
    """A commit of `changes` on top of `base_sha`; the same inputs give the same sha. Modes are
    git's (executable bits, symbolic links as links); a refused file stops it before any write."""
    refuse_unpublishable(changes)
    owner, name = repo.owner, repo.name

    async def blobs() -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        for change in changes:
            entry = {"path": change.path, "mode": change.mode, "type": "blob", "sha": None}
            if change.status != "deleted" and change.content is not None:
                entry["sha"] = await _create_blob(gh, repo, change.content)
            entries.append(entry)
        return entries

    # The base commit (for its tree) is read while the blobs go up.
    base, entries = await together(gh.rest.git.async_get_commit(owner, name, base_sha), blobs())
    tree = await gh.rest.git.async_create_tree(
        owner, name, base_tree=base.parsed_data.tree.sha, tree=cast(Any, entries)
    )
    stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    person = {"name": BOT_NAME, "email": BOT_EMAIL, "date": stamp}
    commit = await gh.rest.git.async_create_commit(
        owner,
        name,
        message=message,
        tree=tree.parsed_data.sha,
        parents=[base_sha],
        author=cast(Any, person),
        committer=cast(Any, person),
    )
    return str(commit.parsed_data.sha)
