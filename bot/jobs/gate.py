"""Before a person's request runs: find the installation, check the sender may write, and
acknowledge with 👀; a check that fails for good is said on the thread, never left silent."""

from __future__ import annotations

import logging
from typing import Any

from githubkit import GitHub
from githubkit.exception import GitHubException, RequestFailed

from bot import installations
from bot.errors import BotError, PermanentError, RefusedJob, TransientError
from bot.github import failures, messages, publish, reads
from bot.github.permissions import can_write
from bot.jobs.context import Attempt, Deps, retry_transient
from bot.queue.tasks import AutomationTask, CancelTask, MentionTask, RepoRef, ReviewTask
from bot.runs import lifecycle, metrics
from bot.runs.outcome import Done, RunOutcome
from bot.runs.store import RunRecord

log = logging.getLogger(__name__)

Gated = MentionTask | CancelTask | ReviewTask  # tasks a person asked for: gated on permission

# The bot's own token for gating and acknowledging: one repository, no code access.
ACK_PERMISSIONS = {"issues": "write", "pull_requests": "write", "metadata": "read"}
OWN_COMMENT = "run {run_id}: {sender} is this App itself; its own comments never trigger a run"
WRONG_SENDER = "refused a job naming {sender} as the author of comment {comment_id}, by {author}"
WRONG_INSTALLATION = (
    "refused a job for {repo} naming installation {claimed}; GitHub says {found} covers it"
)


async def installation_for(deps: Deps, repo: RepoRef, claimed: int | None) -> int:
    """The installation covering `repo`, as GitHub says (`GET /repos/{o}/{r}/installation`):
    neither the job's word nor Redis's map is taken. A job claiming another one is refused."""
    try:
        found = await deps.github.find_installation(repo.owner, repo.name)
    except GitHubException as exc:
        raise failures.classify(exc, f"looking up the installation for {repo.full_name}") from exc
    if claimed is not None and claimed != found:
        said = WRONG_INSTALLATION.format(repo=repo.full_name, claimed=claimed, found=found)
        log.error(said, extra={"repo": repo.full_name})
        raise RefusedJob(said)
    if claimed is None:  # the map serves the turnstiles' counting, never a decision
        await installations.record(deps.redis, found, [repo.full_name])
    return found


async def with_installation[T: (MentionTask, ReviewTask, AutomationTask)](deps: Deps, task: T) -> T:
    """The task with GitHub's installation for its repository (plain repository webhooks lack
    one; a job claiming another one is refused)."""
    found = await installation_for(deps, task.repo, task.installation_id)
    return task.model_copy(update={"installation_id": found})


async def ack_client(deps: Deps, task: Gated) -> GitHub[Any]:
    """The bot's client for gating and answering on the task's thread: one repository, no code."""
    installation_id = await installation_for(deps, task.repo, task.installation_id)
    return await deps.github.installation_client(
        installation_id, repositories=[task.repo.name], permissions=ACK_PERMISSIONS
    )


async def _gate(deps: Deps, task: Gated) -> tuple[bool, GitHub[Any]]:
    """Check the sender may write; return (allowed, installation client)."""
    try:
        gh = await ack_client(deps, task)
        await _check_sender(gh, task)
        allowed = await can_write(
            gh,
            deps.redis,
            task.repo,
            task.sender,
            cache_seconds=deps.settings.permission_cache_seconds,
            key=deps.keys.permissions,
        )
    except GitHubException as exc:
        raise failures.classify(exc, f"checking {task.sender}'s permission") from exc
    return allowed, gh


async def _check_sender(gh: GitHub[Any], task: Gated) -> None:
    """The job's sender is the triggering comment's author, as GitHub says; RefusedJob if not."""
    if task.comment_id is None or task.trigger not in ("issue_comment", "review_comment"):
        return  # a label, or the run API: no comment to ask about
    review = task.trigger == "review_comment"
    try:
        author = await reads.comment_author(gh, task.repo, task.comment_id, review=review)
    except RequestFailed as exc:
        if exc.response.status_code != 404:
            raise
        author = "nobody (it does not exist)"
    if author.lower() != task.sender.lower():
        said = WRONG_SENDER.format(sender=task.sender, comment_id=task.comment_id, author=author)
        log.error(said, extra={"run_id": task.run_id, "repo": task.repo.full_name})
        raise RefusedJob(said)


async def _by_this_app(deps: Deps, task: Gated) -> bool:
    """Whether the sender is the App itself, by the login GitHub gives it (`GET /app`)."""
    try:
        login = await deps.github.app_login()
    except GitHubException as exc:
        raise failures.classify(exc, "looking up the App's own login") from exc
    return task.sender.lower() == login.lower()


async def _acknowledge(gh: GitHub[Any], task: Gated) -> None:
    try:
        await publish.react(
            gh,
            task.repo,
            task.number,
            task.comment_id,
            review=task.trigger == "review_comment",
            content="eyes",
        )
    except GitHubException as exc:
        raise failures.classify(exc, "adding a reaction") from exc


async def admit(deps: Deps, now: Attempt, task: Gated) -> GitHub[Any] | RunOutcome:
    """Gate on the sender's permission and acknowledge with 👀.

    Returns the installation client, or the outcome when the request stops here (denied, or a
    GitHub failure after the last retry). A denial is logged and counted, nothing more."""
    extra = {"run_id": task.run_id, "repo": task.repo.full_name, "delivery_id": task.delivery_id}
    try:
        if await _by_this_app(deps, task):
            log.info(OWN_COMMENT.format(run_id=task.run_id, sender=task.sender), extra=extra)
            return RunOutcome.denied(task.run_id)
        allowed, gh = await _gate(deps, task)
        if not allowed:
            log.info(
                "run %s: %s may not write to %s; ignoring",
                task.run_id,
                task.sender,
                task.repo.full_name,
                extra=extra,
            )
            await metrics.count_denied(deps.redis, task.kind)
            return RunOutcome.denied(task.run_id)
        await _acknowledge(gh, task)
    except RefusedJob:  # logged where it was found: a forged claim gets no run, no comment
        return RunOutcome.denied(task.run_id)
    except (TransientError, PermanentError) as exc:
        if isinstance(exc, TransientError):
            retry_transient(now, exc, task.run_id)
        log.error("run %s failed: %s", task.run_id, exc.user_message, extra=extra)
        await _tell_gate_failure(deps, task, exc)
        return RunOutcome.failed(task.run_id, "permission_lookup", exc.user_message)
    log.info("run %s: acknowledged %s's request", task.run_id, task.sender, extra=extra)
    return gh


async def admit_run(
    deps: Deps, now: Attempt, task: MentionTask | ReviewTask, record: RunRecord
) -> RunOutcome | None:
    """`admit` for a run, on its first try only (a run with a record was admitted by an earlier
    try: it waited for its turn, or a shutdown interrupted it). None: the run goes on. Otherwise
    what the job returns: a denial, which is no run (no record, no callback), or a run that
    failed at the gate, recorded as such."""
    if await deps.runs.get(task.run_id) is not None:
        return None
    admitted = await admit(deps, now, task)
    if not isinstance(admitted, RunOutcome):
        return None
    if admitted.status is Done.DENIED:
        return admitted
    return await lifecycle.ended(deps.settings, deps.runs, deps.enqueuer, record, admitted)


async def _tell_gate_failure(deps: Deps, task: Gated, exc: BotError) -> None:
    """The permission check failed for good: say so on the thread rather than stay silent."""
    handle = deps.settings.bot_handle
    headline, details = messages.failure("permission_lookup", handle, exc.user_message)
    try:
        gh = await ack_client(deps, task)
        body = "\n".join([headline, "", *details])
        await publish.comment(gh, task.repo, task.number, body, key=f"{task.run_id}:gate")
    except (GitHubException, BotError) as failure:
        log.error(
            "run %s: could not report the failed permission check: %s",
            task.run_id,
            type(failure).__name__,
            extra={"run_id": task.run_id},
        )
