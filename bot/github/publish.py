"""Every write a run makes to GitHub, apart from its tracking comment: changes published through
the Git Data API (so the workspace never holds a token that can write: blobs, a tree on the base
commit, a commit, then a ref and a pull request), patches, replies, reviews, issues, reactions.

Idempotent: the commit's dates come from the run, so a re-executed job builds the same commit,
finds its branch and pull request, and reuses them. Every create happens once (`once`): a branch
or pull request whose creation answered 5xx, timed out or was refused as existing is found by
its name; comments (patches too), replies, reviews and issues carry a marker naming the run's
output and are found by it. Blobs, trees and commits need no finding (they are content-addressed)
nor do reactions (GitHub answers a repeated one with the first): the client sends them again.
Commits themselves (blobs, a tree, a commit, with git's modes) are made in `commits`.
Docs: https://docs.github.com/rest/git
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from githubkit import GitHub
from githubkit.exception import RequestFailed

from bot.agent.repo_files import RepoFile
from bot.agent.results import ChangedFile, Patch
from bot.errors import BranchMoved, PublishError
from bot.github import once, outbound, threads
from bot.github.commits import create_commit, refuse_unpublishable, together
from bot.queue.tasks import RepoRef

# The only token that may write code: minted for publishing, for the one repository.
PUBLISH_PERMISSIONS = {
    "contents": "write",
    "pull_requests": "write",
    "issues": "write",
    "metadata": "read",
}
PATCH_COMMENT_LIMIT = 60_000  # GitHub comments hold 65,536 characters
TEMPLATE_PATHS = (
    ".github/pull_request_template.md",
    ".github/PULL_REQUEST_TEMPLATE.md",
    "docs/pull_request_template.md",
    "pull_request_template.md",
)
TEMPLATE_FILE = RepoFile("pr-template", TEMPLATE_PATHS)  # read from a run's fresh checkout


def slug(title: str, limit: int = 40) -> str:
    text = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return text[:limit].rstrip("-") or "change"


def issue_branch(number: int, title: str) -> str:
    return f"openhands/issue-{number}-{slug(title)}"


async def _ref_sha(gh: GitHub[Any], repo: RepoRef, branch: str) -> str | None:
    try:
        ref = await gh.rest.git.async_get_ref(repo.owner, repo.name, f"heads/{branch}")
    except RequestFailed as exc:
        if exc.response.status_code == 404:
            return None
        raise
    return ref.parsed_data.object_.sha


async def ensure_branch(gh: GitHub[Any], repo: RepoRef, branch: str, sha: str) -> bool:
    """Point a new branch at `sha`; True when the branch already pointed there (a re-run)."""
    return await _point_branch(gh, repo, branch, sha, await _ref_sha(gh, repo, branch))


async def _point_branch(
    gh: GitHub[Any], repo: RepoRef, branch: str, sha: str, current: str | None
) -> bool:
    """`ensure_branch`, the branch's sha read (`current`, None when it does not exist)."""
    if current == sha:
        return True
    if current is None:

        async def create() -> str:
            await gh.rest.git.async_create_ref(
                repo.owner, repo.name, ref=f"refs/heads/{branch}", sha=sha
            )
            return sha

        # A lost creation, or one that raced us ("Reference already exists"), is found by name.
        current = await once.create_once(
            gh,
            f"branch {branch}",
            create,
            lambda: _ref_sha(gh, repo, branch),
            exists=lambda exc: exc.response.status_code == 422,
        )
        if current == sha:
            return False
    # Our branch from an earlier attempt with other content: move it, it is ours alone.
    await gh.rest.git.async_update_ref(
        repo.owner, repo.name, f"heads/{branch}", sha=sha, force=True
    )
    return False


async def fast_forward(
    gh: GitHub[Any], repo: RepoRef, branch: str, expected: str, sha: str
) -> None:
    """Move a pull request's branch from `expected` to `sha`, never by force."""
    current = await _ref_sha(gh, repo, branch)
    if current == sha:
        return
    if current != expected:
        raise BranchMoved(
            f"`{branch}` moved to {str(current)[:7]} while the agent worked from {expected[:7]}"
        )
    try:
        await gh.rest.git.async_update_ref(
            repo.owner, repo.name, f"heads/{branch}", sha=sha, force=False
        )
    except RequestFailed as exc:
        if exc.response.status_code == 422:
            if await _ref_sha(gh, repo, branch) == sha:  # an earlier try's, whose answer was lost
                return
            raise BranchMoved(f"`{branch}` moved while the agent worked") from exc
        raise


def pr_body(
    *, number: int, summary: str, template: str | None, run_url: str | None, run_id: str
) -> str:
    """`Fixes #N`, what was done, the repo's template, and the run link. `summary` is the
    agent's, already cleaned (`outbound`): the bot's own `Fixes #N` is the only closing keyword."""
    parts = [f"Fixes #{number}", "", "## What was done", summary.strip() or "(no summary)"]
    if template:
        parts += ["", template.strip()]
    run = f"[run `{run_id}`]({run_url})" if run_url else f"run `{run_id}`"
    parts += ["", f"<sub>Opened by OpenHands from {run}.</sub>"]
    return "\n".join(parts)


async def _find_pull(gh: GitHub[Any], repo: RepoRef, branch: str) -> tuple[int, str, bool] | None:
    """The open pull request of `branch` (number, URL, True), if there is one."""
    existing = await gh.rest.pulls.async_list(
        repo.owner, repo.name, head=f"{repo.owner}:{branch}", state="open"
    )
    found: list[Any] = list(existing.parsed_data)  # githubkit's `list` name confuses mypy
    for pr in found:
        return int(pr.number), str(pr.html_url), True
    return None


async def _open_pull(
    gh: GitHub[Any], repo: RepoRef, branch: str, *, base: str, title: str, body: str, draft: bool
) -> tuple[int, str, bool]:
    """Create the pull request, finding it when its creation's answer was lost or refused."""

    async def create() -> tuple[int, str, bool]:
        created = await gh.rest.pulls.async_create(
            repo.owner, repo.name, title=title, head=branch, base=base, body=body, draft=draft
        )
        return created.parsed_data.number, created.parsed_data.html_url, False

    return await once.create_once(
        gh,
        f"pull request for {branch}",
        create,
        lambda: _find_pull(gh, repo, branch),
        exists=lambda exc: exc.response.status_code == 422,
    )


async def ensure_pull_request(
    gh: GitHub[Any],
    repo: RepoRef,
    *,
    branch: str,
    base: str,
    title: str,
    body: str,
    draft: bool,
) -> tuple[int, str, bool]:
    """Open the pull request for `branch`, or find the one a previous attempt opened.

    A creation whose answer was lost, or refused with 422 ("A pull request already exists"), is
    followed by a look for the open pull request of the branch: found, it is the run's."""
    reused = await _find_pull(gh, repo, branch)
    if reused is not None:
        return reused
    return await _open_pull(gh, repo, branch, base=base, title=title, body=body, draft=draft)


def patch_comment(patch: str, *, reason: str, size: int | None = None) -> str:
    """A comment carrying the change as a patch, cut to fit, with its full size (`size`, when
    `patch` is only its head) stated, in a fence no line of the patch can close."""
    size = len(patch.encode()) if size is None else size
    shown = outbound.clean_code(patch)
    note = ""
    if len(shown) > PATCH_COMMENT_LIMIT:
        shown = shown[:PATCH_COMMENT_LIMIT].rsplit("\n", 1)[0]
        note = f"\n\n_The patch is {size:,} bytes; the first {len(shown.encode()):,} are shown._"
    fence = outbound.fence_for(shown)
    return (
        f"{reason}\n\nApply it with `git apply`:\n\n<details><summary>Patch ({size:,} bytes)"
        f"</summary>\n\n{fence}diff\n{shown}\n{fence}\n</details>{note}"
    )


async def propose(
    writer: GitHub[Any],
    repo: RepoRef,
    *,
    base_sha: str,
    changes: list[ChangedFile],
    message: str,
    when: datetime,
    branch: str,
    base: str,
    title: str,
    body: str,
    draft: bool,
) -> tuple[int, str]:
    """The changes as a commit on `branch` and a pull request into `base`: (number, URL)."""
    refuse_unpublishable(changes)  # before anything is read or written
    # What an earlier attempt left (its branch, its pull request) is read while the commit is made.
    sha, current, found = await together(
        create_commit(writer, repo, base_sha=base_sha, changes=changes, message=message, when=when),
        _ref_sha(writer, repo, branch),
        _find_pull(writer, repo, branch),
    )
    await _point_branch(writer, repo, branch, sha, current)
    if found is None:
        found = await _open_pull(
            writer, repo, branch, base=base, title=title, body=body, draft=draft
        )
    return found[0], found[1]


async def push(
    writer: GitHub[Any],
    repo: RepoRef,
    *,
    branch: str,
    parent: str,
    changes: list[ChangedFile],
    message: str,
    when: datetime,
    handle: str,
) -> str:
    """The changes as one commit fast-forwarded onto `branch` (never forced); its sha."""
    sha = await create_commit(
        writer, repo, base_sha=parent, changes=changes, message=message, when=when
    )
    try:
        await fast_forward(writer, repo, branch, parent, sha)
    except BranchMoved as exc:
        raise PublishError(
            f"{exc}. Nothing was pushed; mention @{handle} again to redo it on the new head."
        ) from exc
    return sha


async def comment(gh: GitHub[Any], repo: RepoRef, number: int, body: str, *, key: str) -> str:
    """A comment on an issue or pull request, once per `key` (`once.output_marker`); its URL."""

    async def create(text: str) -> Any:
        made = await gh.rest.issues.async_create_comment(repo.owner, repo.name, number, body=text)
        return made.parsed_data

    made = await once.post_marked(
        gh, key, body, create, lambda mark: once.find_comment(gh, repo, number, mark)
    )
    return str(made.html_url)


async def post_patch(
    writer: GitHub[Any],
    repo: RepoRef,
    number: int,
    patch: Patch | None,
    changes: Sequence[ChangedFile],
    *,
    reason: str,
    key: str,
) -> str:
    """The change as a patch in a comment (a fork the bot cannot push to); its URL. The files a
    commit could not hold are refused here too."""
    refuse_unpublishable(changes)
    if patch is None:
        raise PublishError("The change could not be made into a patch.")
    body = patch_comment(patch.text, reason=reason, size=patch.size)
    return await comment(writer, repo, number, body, key=key)


async def reply_in_thread(
    writer: GitHub[Any], repo: RepoRef, number: int, comment_id: int, body: str, *, key: str
) -> None:
    """An answer in the thread of an inline review comment, once per `key`."""

    async def create(text: str) -> Any:
        made = await writer.rest.pulls.async_create_reply_for_review_comment(
            repo.owner, repo.name, number, comment_id, body=text
        )
        return made.parsed_data

    await once.post_marked(
        writer, key, body, create, lambda mark: once.find_review_comment(writer, repo, number, mark)
    )


Reaction = Literal["+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"]


async def react(
    gh: GitHub[Any],
    repo: RepoRef,
    number: int,
    comment_id: int | None,
    *,
    review: bool,
    content: Reaction,
) -> None:
    """A reaction on the comment that asked (or on the issue, for a label)."""
    owner, name = repo.owner, repo.name
    if review and comment_id is not None:
        await gh.rest.reactions.async_create_for_pull_request_review_comment(
            owner, name, comment_id, content=content
        )
    elif comment_id is not None:
        await gh.rest.reactions.async_create_for_issue_comment(
            owner, name, comment_id, content=content
        )
    else:
        await gh.rest.reactions.async_create_for_issue(owner, name, number, content=content)


async def open_issue(
    gh: GitHub[Any], repo: RepoRef, title: str, body: str, *, key: str
) -> tuple[int, str]:
    """A new issue, once per `key`: (number, URL)."""

    async def create(text: str) -> Any:
        made = await gh.rest.issues.async_create(repo.owner, repo.name, title=title, body=text)
        return made.parsed_data

    issue = await once.post_marked(
        gh, key, body, create, lambda mark: once.find_issue(gh, repo, mark)
    )
    return int(issue.number), str(issue.html_url)


async def close_issue(gh: GitHub[Any], repo: RepoRef, number: int) -> None:
    await gh.rest.issues.async_update(repo.owner, repo.name, number, state="closed")


async def review(
    gh: GitHub[Any],
    repo: RepoRef,
    number: int,
    *,
    commit_id: str,
    body: str,
    event: Literal["APPROVE", "REQUEST_CHANGES", "COMMENT"],
    comments: list[dict[str, Any]],
    key: str,
) -> int:
    """A pull request review with its inline comments on the reviewed commit, once per `key`
    (the inline comments are part of the review: made, or found, with it); its id."""

    async def create(text: str) -> Any:
        made = await gh.rest.pulls.async_create_review(
            repo.owner,
            repo.name,
            number,
            commit_id=commit_id,
            body=text,
            event=event,
            comments=comments,
        )
        return made.parsed_data

    made = await once.post_marked(
        gh, key, body, create, lambda mark: once.find_review(gh, repo, number, mark)
    )
    return int(made.id)


async def edit_review(
    gh: GitHub[Any], repo: RepoRef, number: int, review_id: int, body: str
) -> None:
    """Rewrite a review's body in place (the one summary); `body` keeps its `once` marker."""
    await gh.rest.pulls.async_update_review(repo.owner, repo.name, number, review_id, body=body)


async def resolve_thread(gh: GitHub[Any], thread_id: str) -> None:
    await gh.async_graphql(threads.RESOLVE_THREAD, {"threadId": thread_id})
