"""The worker process: arq job functions, one per task kind, with long-lived clients in `ctx`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from arq import Retry
from arq.connections import RedisSettings
from arq.jobs import Job
from githubkit.exception import GitHubException

from bot import messages
from bot.config import Settings
from bot.errors import BotError, PermanentError, TransientError, classify_github
from bot.github import GitHubApp
from bot.mention import ACTIVE_PREFIX, STOP_PREFIX, MentionRun, thread_key
from bot.permissions import can_write
from bot.review import run_review_job
from bot.tasks import CancelTask, InstallationTask, MentionTask, RepoRef, ReviewTask
from bot.workspace import WorkspaceProvider, make_provider

log = logging.getLogger("bot.worker")

REPO_INSTALLATION_KEY = "openhands-bot:repo-installation"  # hash: "owner/name" -> installation id
INSTALLATION_REPOS_PREFIX = "openhands-bot:installation-repos:"  # set per installation
MAX_TRIES = 5
Gated = MentionTask | CancelTask | ReviewTask  # tasks a person asked for: gated on permission

# The bot's own token for gating and acknowledging: one repository, no code access.
ACK_PERMISSIONS = {"issues": "write", "pull_requests": "write", "metadata": "read"}


def _deps(ctx: dict[str, Any]) -> tuple[Settings, GitHubApp]:
    return ctx["settings"], ctx["github"]


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    ctx["github"] = GitHubApp(settings, ctx["redis"])
    if "workspaces" not in ctx:  # not injected: this worker owns its provider
        provider = make_provider(settings)
        ctx["workspaces"] = provider
        ctx["owns_workspaces"] = True
        # Started in the background: the local agent-server takes ~15 s, jobs wait for it.
        ctx["workspaces_starting"] = asyncio.create_task(provider.start())
    log.info("worker ready", extra={"github_api_url": settings.github_api_url})


async def shutdown(ctx: dict[str, Any]) -> None:
    log.info("worker stopping")
    if ctx.get("owns_workspaces"):
        starting = ctx.get("workspaces_starting")
        if starting is not None and not starting.done():
            starting.cancel()
        await ctx["workspaces"].close()


async def _workspaces(ctx: dict[str, Any]) -> WorkspaceProvider:
    starting = ctx.get("workspaces_starting")
    if starting is not None:
        with contextlib.suppress(Exception):  # a failed start is retried by the provider
            await asyncio.shield(starting)
    provider: WorkspaceProvider = ctx["workspaces"]
    return provider


async def installation_for(ctx: dict[str, Any], repo: RepoRef, known: int | None) -> int:
    """The installation covering `repo`: from the delivery, our records, or GitHub."""
    if known is not None:
        return known
    redis = ctx["redis"]
    recorded = await redis.hget(REPO_INSTALLATION_KEY, repo.full_name.lower())
    if recorded is not None:
        return int(recorded)
    _, github = _deps(ctx)
    try:
        installation_id = await github.find_installation(repo.owner, repo.name)
    except GitHubException as exc:
        raise classify_github(exc, f"looking up the installation for {repo.full_name}") from exc
    await redis.hset(REPO_INSTALLATION_KEY, repo.full_name.lower(), installation_id)
    return installation_id


async def _with_installation[T: (MentionTask, ReviewTask)](ctx: dict[str, Any], task: T) -> T:
    """The task with its installation id filled in (plain repository webhooks lack it)."""
    if task.installation_id is not None:
        return task
    return task.model_copy(update={"installation_id": await installation_for(ctx, task.repo, None)})


def _retry_or_fail(ctx: dict[str, Any], exc: TransientError | PermanentError, run_id: str) -> None:
    """Raise arq's Retry for a transient error while tries remain; otherwise log and give up."""
    tries = int(ctx.get("job_try", 1))
    if isinstance(exc, TransientError) and tries < MAX_TRIES:
        defer = max(exc.retry_after, 2.0**tries)
        log.warning(
            "run %s: %s; retry %d in %.0fs",
            run_id,
            exc.user_message,
            tries,
            defer,
            extra={"run_id": run_id},
        )
        raise Retry(defer=defer) from exc
    log.error("run %s failed: %s", run_id, exc.user_message, extra={"run_id": run_id})


async def _gate(ctx: dict[str, Any], task: Gated) -> tuple[bool, Any]:
    """Check the sender may write; return (allowed, installation client)."""
    settings, github = _deps(ctx)
    installation_id = await installation_for(ctx, task.repo, task.installation_id)
    try:
        gh = await github.installation_client(
            installation_id, repositories=[task.repo.name], permissions=ACK_PERMISSIONS
        )
        allowed = await can_write(
            gh,
            ctx["redis"],
            task.repo,
            task.sender,
            cache_seconds=settings.permission_cache_seconds,
        )
    except GitHubException as exc:
        raise classify_github(exc, f"checking {task.sender}'s permission") from exc
    return allowed, gh


async def _react(gh: Any, task: Gated, content: str) -> None:
    owner, name = task.repo.owner, task.repo.name
    try:
        if task.trigger == "review_comment" and task.comment_id is not None:
            await gh.rest.reactions.async_create_for_pull_request_review_comment(
                owner, name, task.comment_id, content=content
            )
        elif task.comment_id is not None:
            await gh.rest.reactions.async_create_for_issue_comment(
                owner, name, task.comment_id, content=content
            )
        else:
            await gh.rest.reactions.async_create_for_issue(
                owner, name, task.number, content=content
            )
    except GitHubException as exc:
        raise classify_github(exc, "adding a reaction") from exc


async def _admit(ctx: dict[str, Any], task: Gated) -> tuple[Any, dict[str, Any] | None]:
    """Gate on the sender's permission and acknowledge with 👀.

    Returns the installation client, or the job's result when the request stops here (denied,
    or a GitHub failure after the last retry)."""
    extra = {"run_id": task.run_id, "repo": task.repo.full_name, "delivery_id": task.delivery_id}
    try:
        allowed, gh = await _gate(ctx, task)
        if not allowed:
            log.info(
                "run %s: %s may not write to %s; ignoring",
                task.run_id,
                task.sender,
                task.repo.full_name,
                extra=extra,
            )
            return None, {"run_id": task.run_id, "status": "denied"}
        await _react(gh, task, "eyes")
    except (TransientError, PermanentError) as exc:
        _retry_or_fail(ctx, exc, task.run_id)
        await _tell_gate_failure(ctx, task, exc)
        return None, {"run_id": task.run_id, "status": "failed", "error": exc.user_message}
    log.info("run %s: acknowledged %s's request", task.run_id, task.sender, extra=extra)
    return gh, None


async def _tell_gate_failure(ctx: dict[str, Any], task: Gated, exc: BotError) -> None:
    """The permission check failed for good: say so on the thread rather than stay silent."""
    settings, github = _deps(ctx)
    headline, details = messages.failure("permission_lookup", settings.bot_handle, exc.user_message)
    try:
        installation_id = await installation_for(ctx, task.repo, task.installation_id)
        gh = await github.installation_client(
            installation_id, repositories=[task.repo.name], permissions=ACK_PERMISSIONS
        )
        await gh.rest.issues.async_create_comment(
            task.repo.owner, task.repo.name, task.number, body="\n".join([headline, "", *details])
        )
    except (GitHubException, BotError) as failure:
        log.error(
            "run %s: could not report the failed permission check: %s",
            task.run_id,
            type(failure).__name__,
            extra={"run_id": task.run_id},
        )


async def run_mention(ctx: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """A mention or the trigger label: gate on permission, 👀, then the agent run."""
    task = MentionTask.model_validate(data)
    extra = {"run_id": task.run_id, "repo": task.repo.full_name, "delivery_id": task.delivery_id}
    settings, github = _deps(ctx)
    gh, stopped = await _admit(ctx, task)
    if stopped is not None:
        return stopped
    task = await _with_installation(ctx, task)
    run = MentionRun(
        settings, ctx["redis"], github, await _workspaces(ctx), gh, task, ctx.get("job_id")
    )
    try:
        return await run.execute()
    except GitHubException as exc:
        # The tracking comment itself could not be written: nothing more we can tell the user.
        log.error(
            "run %s: GitHub refused the tracking comment: %s",
            task.run_id,
            type(exc).__name__,
            extra=extra,
        )
        return {"run_id": task.run_id, "status": "failed", "error": "github"}


async def run_cancel(ctx: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """`@handle stop` from a writer: abort the thread's running job at once."""
    task = CancelTask.model_validate(data)
    _, stopped = await _admit(ctx, task)
    if stopped is not None:
        return stopped
    redis = ctx["redis"]
    active = await redis.hgetall(ACTIVE_PREFIX + thread_key(task.repo.full_name, task.number))
    run_id = active.get(b"run_id", b"").decode()
    job_id = active.get(b"job_id", b"").decode()
    if not run_id or not job_id:
        log.info("stop on %s#%d: nothing is running", task.repo.full_name, task.number)
        return {"run_id": task.run_id, "status": "nothing_running"}
    await redis.set(STOP_PREFIX + run_id, task.sender, ex=3600)
    # arq cancels the job's task: the run interrupts its conversation and finalizes its comment.
    aborted = await Job(job_id, redis).abort(timeout=30)
    log.info(
        "stop on %s#%d: run %s aborted=%s",
        task.repo.full_name,
        task.number,
        run_id,
        aborted,
        extra={"run_id": run_id},
    )
    return {"run_id": task.run_id, "status": "stopped", "stopped_run": run_id}


async def run_review(ctx: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """A pull request to review; `@handle review` is gated like any mention."""
    task = ReviewTask.model_validate(data)
    settings, github = _deps(ctx)
    if task.rereview:
        _, stopped = await _admit(ctx, task)
        if stopped is not None:
            return stopped
    task = await _with_installation(ctx, task)
    return await run_review_job(settings, ctx["redis"], github, await _workspaces(ctx), task)


async def sync_installation(ctx: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """Remember which repositories an installation covers, so jobs can find their installation."""
    task = InstallationTask.model_validate(data)
    assert task.installation_id is not None
    redis = ctx["redis"]
    members = f"{INSTALLATION_REPOS_PREFIX}{task.installation_id}"
    if task.action == "deleted":
        old = await redis.smembers(members)
        names = [m.decode() if isinstance(m, bytes) else m for m in old] + task.repos_removed
        if names:
            await redis.hdel(REPO_INSTALLATION_KEY, *[n.lower() for n in names])
        await redis.delete(members)
        ctx["github"].tokens.forget(task.installation_id)
        return {"run_id": task.run_id, "status": "removed", "repos": len(names)}
    if task.repos_added:
        await redis.sadd(members, *[r.lower() for r in task.repos_added])
        mapping = {r.lower(): task.installation_id for r in task.repos_added}
        await redis.hset(REPO_INSTALLATION_KEY, mapping=mapping)
    if task.repos_removed:
        await redis.srem(members, *[r.lower() for r in task.repos_removed])
        await redis.hdel(REPO_INSTALLATION_KEY, *[r.lower() for r in task.repos_removed])
    return {
        "run_id": task.run_id,
        "status": "recorded",
        "added": len(task.repos_added),
        "removed": len(task.repos_removed),
    }


def worker_options(
    settings: Settings, *, workspaces: WorkspaceProvider | None = None
) -> dict[str, Any]:
    """Keyword arguments for `arq.Worker`, with `settings` (and an injected workspace provider,
    which the caller then owns) in every job's ctx."""
    ctx: dict[str, Any] = {"settings": settings}
    if workspaces is not None:
        ctx["workspaces"] = workspaces
    return {
        "functions": [run_mention, run_cancel, run_review, sync_installation],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "ctx": ctx,
        "max_jobs": settings.max_jobs,
        "job_timeout": settings.job_timeout_seconds,
        "max_tries": MAX_TRIES,
        "allow_abort_jobs": True,
        "keep_result": 24 * 3600,
    }
