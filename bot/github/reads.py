"""What jobs read from GitHub about a thread: the issue or pull request as it was asked about,
its facts and changed files, and files from a ref (through the contents API, for jobs without a
fresh checkout to read them from: see `bot.agent.repo_files`)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from githubkit import GitHub
from githubkit.exception import RequestFailed

from bot.agent.prompts import IssueContext, ThreadComment
from bot.github.once import output_marker
from bot.github.publish import TEMPLATE_FILE
from bot.github.tracking import MARKER_START
from bot.queue.tasks import MentionTask, RepoRef, ReviewTask

MAX_COMMENTS = 300


@dataclass(slots=True)
class PullInfo:
    head_ref: str
    head_sha: str
    base_ref: str
    is_fork: bool


@dataclass(frozen=True, slots=True)
class RepoInfo:
    clone_url: str
    default_branch: str


@dataclass(frozen=True, slots=True)
class PullFacts:
    number: int
    title: str
    body: str
    author: str
    author_is_bot: bool
    draft: bool
    head_sha: str
    head_ref: str
    base_ref: str
    is_fork: bool
    changed_lines: int
    changed_files: int


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _by_the_bot(body: str) -> bool:
    """A tracking comment or an output the bot posted (it carries one of the bot's markers):
    not part of what was asked, whether or not the App's login is known."""
    return MARKER_START in body or output_marker("").removesuffix(" -->") in body


async def _comments_before(
    gh: GitHub[Any], task: MentionTask, bot_login: str | None
) -> list[ThreadComment]:
    """The thread's comments written (and last edited) before the mention, but the bot's own."""
    owner, name = task.repo.owner, task.repo.name
    trigger_time = task.comment_created_at or datetime.now(UTC).isoformat()
    cutoff = datetime.fromisoformat(trigger_time.replace("Z", "+00:00"))
    comments: list[ThreadComment] = []
    page = 1
    while len(comments) < MAX_COMMENTS:
        response = await gh.rest.issues.async_list_comments(
            owner, name, task.number, per_page=100, page=page
        )
        batch: list[Any] = list(response.parsed_data)
        for comment in batch:
            login = comment.user.login if comment.user else "ghost"
            if comment.id == task.comment_id or _by_the_bot(comment.body or ""):
                continue
            if bot_login and login.lower() == bot_login.lower():
                continue
            if comment.created_at > cutoff or (comment.updated_at and comment.updated_at > cutoff):
                continue  # written or edited after the request: not part of it
            comments.append(
                ThreadComment(login, comment.body or "", comment.created_at.isoformat())
            )
        if len(batch) < 100:
            break
        page += 1
    return comments


async def _pull_info(gh: GitHub[Any], task: MentionTask) -> PullInfo | None:
    if not task.is_pull_request:
        return None
    pr = (await gh.rest.pulls.async_get(task.repo.owner, task.repo.name, task.number)).parsed_data
    head_repo = pr.head.repo.full_name if pr.head.repo else None
    return PullInfo(
        head_ref=pr.head.ref,
        head_sha=pr.head.sha,
        base_ref=pr.base.ref,
        is_fork=(head_repo or "").lower() != task.repo.full_name.lower(),
    )


async def load_context(
    gh: GitHub[Any], task: MentionTask, bot_login: str | None
) -> tuple[IssueContext, PullInfo | None, RepoInfo]:
    """The issue or PR as it was when the mention was written (later comments are left out),
    and the repository: all asked for at once, not in turn."""
    owner, name = task.repo.owner, task.repo.name
    issue_response, comments, pull, repo_response = await asyncio.gather(
        gh.rest.issues.async_get(owner, name, task.number),
        _comments_before(gh, task, bot_login),
        _pull_info(gh, task),
        gh.rest.repos.async_get(owner, name),
    )
    issue, repo = issue_response.parsed_data, repo_response.parsed_data
    context = IssueContext(
        repo=task.repo.full_name,
        number=task.number,
        is_pull_request=task.is_pull_request,
        title=issue.title,
        body=issue.body or "",
        comments=comments,
        instruction=task.instruction,
        requested_by=task.sender,
        head_branch=pull.head_ref if pull else None,
        base_branch=pull.base_ref if pull else None,
        path=task.path,
        line=task.line,
        diff_hunk=task.diff_hunk,
    )
    return context, pull, RepoInfo(repo.clone_url, repo.default_branch)


async def pull_facts(gh: GitHub[Any], task: ReviewTask) -> PullFacts:
    pr = (await gh.rest.pulls.async_get(task.repo.owner, task.repo.name, task.number)).parsed_data
    head_repo = pr.head.repo.full_name if pr.head.repo else ""
    return PullFacts(
        number=pr.number,
        title=pr.title,
        body=_text(pr.body),
        author=pr.user.login,
        author_is_bot=pr.user.type == "Bot",
        draft=bool(pr.draft),
        head_sha=pr.head.sha,
        head_ref=pr.head.ref,
        base_ref=pr.base.ref,
        is_fork=head_repo.lower() != task.repo.full_name.lower(),
        changed_lines=int(pr.additions or 0) + int(pr.deletions or 0),
        changed_files=int(pr.changed_files or 0),
    )


async def comment_author(gh: GitHub[Any], repo: RepoRef, comment_id: int, *, review: bool) -> str:
    """Who wrote a comment (an inline review comment with `review`), as GitHub says now."""
    if review:
        found: Any = await gh.rest.pulls.async_get_review_comment(repo.owner, repo.name, comment_id)
    else:
        found = await gh.rest.issues.async_get_comment(repo.owner, repo.name, comment_id)
    user = found.parsed_data.user
    return str(user.login) if user is not None else ""


async def first_file(
    gh: GitHub[Any], repo: RepoRef, paths: tuple[str, ...], ref: str | None
) -> str | None:
    """The text of the first of `paths` that exists at `ref` (default branch when None)."""
    for path in paths:
        try:
            if ref:
                response = await gh.rest.repos.async_get_content(
                    repo.owner, repo.name, path, ref=ref
                )
            else:
                response = await gh.rest.repos.async_get_content(repo.owner, repo.name, path)
        except RequestFailed as exc:
            if exc.response.status_code == 404:
                continue
            raise
        content = getattr(response.parsed_data, "content", None)
        if isinstance(content, str):
            return base64.b64decode(content).decode("utf-8", errors="replace")
    return None


async def pr_template(
    gh: GitHub[Any], repo: RepoRef, files: Mapping[str, str] | None, base: str
) -> str | None:
    """The repository's pull request template: as the run's fresh checkout had it when it has
    one (`AgentRun.files`), else from `base` through the contents API."""
    if files is not None:
        return files.get(TEMPLATE_FILE.name)
    return await first_file(gh, repo, TEMPLATE_FILE.paths, base)


async def file_with_sha(
    gh: GitHub[Any], repo: RepoRef, path: str, ref: str | None
) -> tuple[str, str] | None:
    """(blob sha, text) of `path` on `ref` (the default branch when None), or None."""
    try:
        if ref is None:
            response = await gh.rest.repos.async_get_content(repo.owner, repo.name, path)
        else:
            response = await gh.rest.repos.async_get_content(repo.owner, repo.name, path, ref=ref)
    except RequestFailed as exc:
        if exc.response.status_code == 404:
            return None
        raise
    content = response.parsed_data
    if isinstance(content, list) or getattr(content, "type", None) != "file":
        return None
    encoded = getattr(content, "content", "") or ""
    text = base64.b64decode(encoded).decode("utf-8", errors="replace")
    return content.sha, text
