"""A pull request's review threads, read through GraphQL (REST has no thread state): which are
the bot's own findings, which a human dismissed, and which the bot may still resolve itself.

Docs: https://docs.github.com/graphql/reference/objects#pullrequestreviewthread
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from githubkit import GitHub

from bot.queue.tasks import RepoRef
from bot.runs.findings import marker_in

THREADS_QUERY = """
query($owner: String!, $name: String!, $number: Int!, $after: String) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) {
      reviewThreads(first: 100, after: $after) {
        pageInfo { hasNextPage endCursor }
        nodes {
          id isResolved isOutdated path line
          resolvedBy { login }
          comments(first: 100) {
            nodes {
              databaseId body
              author { __typename login }
              reactionGroups { content reactors { totalCount } }
            }
          }
        }
      }
    }
  }
}
"""
# Resolving a thread has no REST call.
RESOLVE_THREAD = """
mutation($threadId: ID!) {
  resolveReviewThread(input: {threadId: $threadId}) { thread { id isResolved } }
}
"""
MAX_PAGES = 20  # 2,000 threads: more than any pull request a review could follow
# A reply that says the finding will not be acted on.
WONT_FIX = re.compile(
    r"\b(won'?t|will not|not going to|not gonna|no need to) (fix|change|do)\b|\bwontfix\b"
    r"|\bby design\b|\bintended\b|\bintentional(ly)?\b|\bfalse positive\b"
    r"|\bnot an? (bug|issue|problem)\b|\bignore (this|it)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class ThreadComment:
    id: int
    author: str  # GraphQL's login: an App's bot is its slug, without REST's `[bot]`
    is_bot: bool
    body: str
    thumbs_down: int


@dataclass(frozen=True, slots=True)
class ReviewThread:
    id: str
    resolved: bool
    resolved_by: str | None
    path: str
    line: int | None
    comments: tuple[ThreadComment, ...]


@dataclass(frozen=True, slots=True)
class BotIdentity:
    """How the bot's own comments are told apart: its App slug, when configured."""

    slug: str | None

    def wrote(self, comment: ThreadComment) -> bool:
        if self.slug is None:
            return comment.is_bot
        return comment.author.lower().removesuffix("[bot]") == self.slug.lower()

    def finding_of(self, thread: ReviewThread) -> str | None:
        """The fingerprint of the bot finding that started `thread`, or None (a human's)."""
        if not thread.comments or not self.wrote(thread.comments[0]):
            return None
        return marker_in(thread.comments[0].body)

    def human_replies(self, thread: ReviewThread) -> list[ThreadComment]:
        return [c for c in thread.comments[1:] if not self.wrote(c)]

    def dismissed(self, thread: ReviewThread) -> bool:
        """A human resolved it, replied that it won't be fixed, or reacted 👎 to the finding."""
        if thread.resolved and thread.resolved_by is not None:
            if thread.resolved_by.lower().removesuffix("[bot]") != (self.slug or "").lower():
                return True
        if any(WONT_FIX.search(c.body) for c in self.human_replies(thread)):
            return True
        return bool(thread.comments) and thread.comments[0].thumbs_down > 0


async def review_threads(gh: GitHub[Any], repo: RepoRef, number: int) -> list[ReviewThread]:
    """Every review thread of the pull request, oldest first."""
    threads: list[ReviewThread] = []
    after: str | None = None
    for _ in range(MAX_PAGES):
        variables: dict[str, Any] = {"owner": repo.owner, "name": repo.name, "number": number}
        if after is not None:
            variables["after"] = after
        data = await gh.async_graphql(THREADS_QUERY, variables)
        page = ((data.get("repository") or {}).get("pullRequest") or {}).get("reviewThreads")
        if not isinstance(page, dict):
            break
        threads += [_thread(node) for node in page.get("nodes") or [] if isinstance(node, dict)]
        info = page.get("pageInfo") or {}
        after = info.get("endCursor")
        if not info.get("hasNextPage") or not isinstance(after, str):
            break
    return threads


def _thread(node: dict[str, Any]) -> ReviewThread:
    comments = (node.get("comments") or {}).get("nodes") or []
    resolver = node.get("resolvedBy") or {}
    line = node.get("line")
    return ReviewThread(
        id=str(node.get("id", "")),
        resolved=bool(node.get("isResolved")),
        resolved_by=resolver.get("login") if isinstance(resolver.get("login"), str) else None,
        path=str(node.get("path") or ""),
        line=line if isinstance(line, int) else None,
        comments=tuple(_comment(c) for c in comments if isinstance(c, dict)),
    )


def _comment(node: dict[str, Any]) -> ThreadComment:
    author = node.get("author") or {}  # None for a deleted account ("ghost")
    thumbs_down = sum(
        int((group.get("reactors") or {}).get("totalCount") or 0)
        for group in node.get("reactionGroups") or []
        if isinstance(group, dict) and group.get("content") == "THUMBS_DOWN"
    )
    database_id = node.get("databaseId")
    return ThreadComment(
        id=database_id if isinstance(database_id, int) else 0,
        author=str(author.get("login") or "ghost"),
        is_bot=author.get("__typename") == "Bot",
        body=str(node.get("body") or ""),
        thumbs_down=thumbs_down,
    )
