"""The worker process: arq job functions, one per task kind, with long-lived clients in `ctx`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from arq import Retry, cron, func
from arq.connections import RedisSettings
from arq.jobs import Job
from githubkit.exception import GitHubException

from bot import keys, logs
from bot.agent.workspace import WorkspaceProvider, make_provider
from bot.config import Settings
from bot.errors import (
    BotError,
    CallbackRejected,
    CallbackUnavailable,
    PermanentError,
    TransientError,
)
from bot.github import messages
from bot.github.client import GitHubApp
from bot.github.permissions import can_write
from bot.github.tracking import TrackingComment
from bot.jobs import scheduler
from bot.jobs.automation import run_automation_job
from bot.jobs.mention import MentionRun, thread_key
from bot.jobs.review import run_review_job
from bot.queue import codec
from bot.queue.enqueue import Enqueuer
from bot.queue.tasks import (
    AutomationTask,
    CancelTask,
    ConfigTask,
    InstallationTask,
    MentionTask,
    RepoRef,
    ReviewTask,
)
from bot.repo_config import schema as repo_config
from bot.runs import callback
from bot.runs.lifecycle import tracked
from bot.runs.store import RunRecord, RunStore

log = logging.getLogger(__name__)

MAX_TRIES = 5
Gated = MentionTask | CancelTask | ReviewTask  # tasks a person asked for: gated on permission

# The bot's own token for gating and acknowledging: one repository, no code access.
ACK_PERMISSIONS = {"issues": "write", "pull_requests": "write", "metadata": "read"}
# Reading `.openhands/config.yml` and reporting it when it is invalid.
CONFIG_PERMISSIONS = {"contents": "read", "issues": "write", "metadata": "read"}
RESYNC_MAX_AGE_SECONDS = 23 * 3600
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _deps(ctx: dict[str, Any]) -> tuple[Settings, GitHubApp]:
    return ctx["settings"], ctx["github"]


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    ctx["github"] = GitHubApp(settings, ctx["redis"])
    ctx["runs"] = RunStore(ctx["redis"], settings.run_retention_seconds)
    ctx["enqueuer"] = Enqueuer(ctx["redis"], dedup_seconds=settings.delivery_dedup_seconds)
    ctx["http"] = httpx.AsyncClient(timeout=settings.callback_timeout_seconds)
    if "workspaces" not in ctx:  # not injected: this worker owns its provider
        provider = make_provider(settings)
        ctx["workspaces"] = provider
        ctx["owns_workspaces"] = True
        # Started in the background: the local agent-server takes ~15 s, jobs wait for it.
        ctx["workspaces_starting"] = asyncio.create_task(provider.start())
    if exposed_queue(settings):
        log.warning(
            "WORKSPACE_KIND=local runs the agent on this host, and REDIS_URL is a TCP Redis "
            "without a password: the agent could reach the queue and add jobs. Use "
            "WORKSPACE_KIND=runtime or server, or a Redis with a password (or leave REDIS_URL "
            "unset with nothing on :6379, for the private unix-socket Redis)."
        )
    log.info("worker ready", extra={"github_api_url": settings.github_api_url})


def exposed_queue(settings: Settings) -> bool:
    """The agent shares this host (`local`) and the queue is a TCP Redis anyone here can use."""
    url = urlsplit(settings.redis_url)
    return settings.workspace_kind == "local" and url.scheme == "redis" and not url.password


async def shutdown(ctx: dict[str, Any]) -> None:
    log.info("worker stopping")
    with contextlib.suppress(Exception):
        await ctx["enqueuer"].close()
        await ctx["http"].aclose()
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
    recorded = await redis.hget(keys.REPO_INSTALLATION, repo.full_name.lower())
    if recorded is not None:
        return int(recorded)
    _, github = _deps(ctx)
    try:
        installation_id = await github.find_installation(repo.owner, repo.name)
    except GitHubException as exc:
        raise failures.classify(exc, f"looking up the installation for {repo.full_name}") from exc
    await redis.hset(keys.REPO_INSTALLATION, repo.full_name.lower(), installation_id)
    return installation_id


async def _with_installation[T: (MentionTask, ReviewTask, AutomationTask)](
    ctx: dict[str, Any], task: T
) -> T:
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


async def _ack_client(ctx: dict[str, Any], task: Gated) -> Any:
    """The bot's client for gating and answering on the task's thread: one repository, no code."""
    installation_id = await installation_for(ctx, task.repo, task.installation_id)
    return await ctx["github"].installation_client(
        installation_id, repositories=[task.repo.name], permissions=ACK_PERMISSIONS
    )


async def _gate(ctx: dict[str, Any], task: Gated) -> tuple[bool, Any]:
    """Check the sender may write; return (allowed, installation client)."""
    settings, _ = _deps(ctx)
    try:
        gh = await _ack_client(ctx, task)
        allowed = await can_write(
            gh,
            ctx["redis"],
            task.repo,
            task.sender,
            cache_seconds=settings.permission_cache_seconds,
        )
    except GitHubException as exc:
        raise failures.classify(exc, f"checking {task.sender}'s permission") from exc
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
        raise failures.classify(exc, "adding a reaction") from exc


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
    settings, _ = _deps(ctx)
    headline, details = messages.failure("permission_lookup", settings.bot_handle, exc.user_message)
    try:
        gh = await _ack_client(ctx, task)
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


JobFunction = Callable[[dict[str, Any], dict[str, Any]], Awaitable[dict[str, Any]]]


def logged(job: JobFunction) -> JobFunction:
    """Every log line of the job carries its run, delivery, repository and installation."""

    @functools.wraps(job)
    async def run(ctx: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        repo = data.get("repo") or {}
        name = f"{repo.get('owner')}/{repo.get('name')}" if repo.get("name") else None
        with logs.bound(
            run_id=data.get("run_id"),
            delivery_id=data.get("delivery_id"),
            repo=name,
            installation_id=data.get("installation_id"),
        ):
            return await job(ctx, data)

    return run


@logged
async def run_mention(ctx: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """A mention or the trigger label: gate on permission, 👀, then the agent run."""
    task = MentionTask.model_validate(data)
    record = _record(ctx, task, "mention", task.trigger, task.number)
    return await tracked(
        ctx, record, lambda: _mention(ctx, task), on_cancelled=lambda: _say_stopped(ctx, task)
    )


async def _say_stopped(ctx: dict[str, Any], task: MentionTask) -> None:
    """The run was cancelled while it waited (e.g. through the run API): tell the thread."""
    settings, _ = _deps(ctx)
    gh = await _ack_client(ctx, task)
    by = await ctx["redis"].get(keys.STOP_PREFIX + task.run_id)
    tracking = TrackingComment(
        gh, ctx["redis"], task.repo, task.number, task.run_id, run_url=settings.run_url(task.run_id)
    )
    await tracking.finalize(*messages.stopped(by.decode() if by else "the run API"))


def _record(
    ctx: dict[str, Any], task: MentionTask | ReviewTask, kind: str, trigger: str, number: int
) -> RunRecord:
    return RunRecord(
        run_id=task.run_id,
        kind=kind,
        trigger=trigger,
        repo=task.repo.full_name,
        number=number,
        sender=task.sender,
        job_id=ctx.get("job_id"),
    )


async def _mention(ctx: dict[str, Any], task: MentionTask) -> dict[str, Any]:
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


@logged
async def run_cancel(ctx: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """`@handle stop` from a writer: abort the thread's running job at once."""
    task = CancelTask.model_validate(data)
    _, stopped = await _admit(ctx, task)
    if stopped is not None:
        return stopped
    redis = ctx["redis"]
    active = await redis.hgetall(keys.ACTIVE_PREFIX + thread_key(task.repo.full_name, task.number))
    run_id = active.get(b"run_id", b"").decode()
    job_id = active.get(b"job_id", b"").decode()
    if not run_id or not job_id:
        log.info("stop on %s#%d: nothing is running", task.repo.full_name, task.number)
        return {"run_id": task.run_id, "status": "nothing_running"}
    await redis.set(keys.STOP_PREFIX + run_id, task.sender, ex=3600)
    # arq cancels the job's task: the run interrupts its conversation and finalizes its comment.
    aborted = await Job(job_id, redis, _deserializer=codec.loads).abort(timeout=30)
    log.info(
        "stop on %s#%d: run %s aborted=%s",
        task.repo.full_name,
        task.number,
        run_id,
        aborted,
        extra={"run_id": run_id},
    )
    return {"run_id": task.run_id, "status": "stopped", "stopped_run": run_id}


@logged
async def run_review(ctx: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """A pull request to review; `@handle review` is gated like any mention."""
    task = ReviewTask.model_validate(data)
    trigger = task.trigger if task.rereview else "pull_request"
    record = _record(ctx, task, "review", trigger, task.number)
    return await tracked(ctx, record, lambda: _review(ctx, task))


async def _review(ctx: dict[str, Any], task: ReviewTask) -> dict[str, Any]:
    settings, github = _deps(ctx)
    if task.rereview:
        _, stopped = await _admit(ctx, task)
        if stopped is not None:
            return stopped
    task = await _with_installation(ctx, task)
    return await run_review_job(settings, ctx["redis"], github, await _workspaces(ctx), task)


@logged
async def sync_installation(ctx: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """Remember which repositories an installation covers, so jobs can find their installation."""
    task = InstallationTask.model_validate(data)
    assert task.installation_id is not None
    redis = ctx["redis"]
    members = f"{keys.INSTALLATION_REPOS_PREFIX}{task.installation_id}"
    if task.action == "deleted":
        old = await redis.smembers(members)
        names = [m.decode() if isinstance(m, bytes) else m for m in old] + task.repos_removed
        if names:
            await redis.hdel(keys.REPO_INSTALLATION, *[n.lower() for n in names])
            for name in names:
                await repo_config.forget(redis, name)
        await redis.delete(members)
        ctx["github"].tokens.forget(task.installation_id)
        return {"run_id": task.run_id, "status": "removed", "repos": len(names)}
    if task.repos_added:
        await redis.sadd(members, *[r.lower() for r in task.repos_added])
        mapping = {r.lower(): task.installation_id for r in task.repos_added}
        await redis.hset(keys.REPO_INSTALLATION, mapping=mapping)
    if task.repos_removed:
        await redis.srem(members, *[r.lower() for r in task.repos_removed])
        await redis.hdel(keys.REPO_INSTALLATION, *[r.lower() for r in task.repos_removed])
        for name in task.repos_removed:
            await repo_config.forget(redis, name)
    # Newly covered repositories may declare automations: read their config now.
    for full_name in task.repos_added:
        await _refresh_quietly(ctx, task.installation_id, full_name, None)
    return {
        "run_id": task.run_id,
        "status": "recorded",
        "added": len(task.repos_added),
        "removed": len(task.repos_removed),
    }


async def _refresh_quietly(
    ctx: dict[str, Any], installation_id: int, full_name: str, commit: str | None
) -> repo_config.Refreshed | None:
    """Read one repository's config; a failure is logged and left for the next resync."""
    if "/" not in full_name:
        return None
    owner, name = full_name.split("/", 1)
    try:
        gh = await ctx["github"].installation_client(
            installation_id, repositories=[name], permissions=CONFIG_PERMISSIONS
        )
        refreshed = await repo_config.refresh(
            gh, ctx["redis"], RepoRef(owner=owner, name=name), commit=commit
        )
    except GitHubException as exc:
        log.warning(
            "could not read the config of %s: %s",
            full_name,
            type(exc).__name__,
            extra={"repo": full_name},
        )
        return None
    except Exception:  # a bug of ours must not stop the other repositories' refresh
        log.exception("reading the config of %s failed", full_name, extra={"repo": full_name})
        return None
    await ctx["redis"].set(
        keys.CONFIG_CHECKED_PREFIX + full_name.lower(), int(time.time()), ex=RESYNC_MAX_AGE_SECONDS
    )
    return refreshed


@logged
async def refresh_config(ctx: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """A push touched `.openhands/config.yml` on the default branch: read it again."""
    task = ConfigTask.model_validate(data)
    installation_id = await installation_for(ctx, task.repo, task.installation_id)
    refreshed = await _refresh_quietly(ctx, installation_id, task.repo.full_name, task.commit)
    if refreshed is None:
        return {"run_id": task.run_id, "status": "failed"}
    return {
        "run_id": task.run_id,
        "status": refreshed.status,
        "errors": list(refreshed.errors),
        "reported": refreshed.reported,
    }


@logged
async def run_automation(ctx: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """A scheduled automation or an API-started prompt."""
    task = AutomationTask.model_validate(data)
    record = RunRecord(
        run_id=task.run_id,
        kind="automation",
        trigger=task.trigger,
        repo=task.repo.full_name,
        number=task.issue,
        automation=task.automation,
        sender=task.sender,
        job_id=ctx.get("job_id"),
    )

    async def body() -> dict[str, Any]:
        settings, github = _deps(ctx)
        try:
            filled = await _with_installation(ctx, task)
        except BotError as exc:
            return {
                "run_id": task.run_id,
                "status": "failed",
                "error": "github",
                "detail": exc.user_message,
            }
        return await run_automation_job(settings, github, await _workspaces(ctx), filled)

    return await tracked(ctx, record, body)


async def automation_tick(ctx: dict[str, Any]) -> dict[str, Any]:
    """Each minute: queue the automations that are due (see bot.jobs.scheduler)."""
    clock: Clock = ctx.get("clock", utc_now)
    raw = await ctx["redis"].hgetall(keys.REPO_INSTALLATION)
    installations = {k.decode(): int(v) for k, v in raw.items()}
    due = await scheduler.tick(ctx["redis"], ctx["enqueuer"], installations, clock())
    return {"queued": [d.job_id for d in due if d.queued], "due": len(due)}


async def resync_configs(ctx: dict[str, Any]) -> dict[str, Any]:
    """Hourly: every installation's repositories and their configs, in case a delivery was lost
    (or the bot was deployed after the App was installed)."""
    github: GitHubApp = ctx["github"]
    redis = ctx["redis"]
    app = github.app_client()
    seen = 0
    try:
        installations = [
            i async for i in app.rest.paginate(app.rest.apps.async_list_installations, per_page=100)
        ]
    except GitHubException as exc:
        log.warning("resync: could not list installations: %s", type(exc).__name__)
        return {"status": "failed"}
    for installation in installations:
        try:
            gh = await github.installation_client(installation.id)
            repos = [
                r
                async for r in gh.rest.paginate(
                    gh.rest.apps.async_list_repos_accessible_to_installation,
                    map_func=lambda response: response.parsed_data.repositories,
                    per_page=100,
                )
            ]
        except GitHubException as exc:
            log.warning("resync: installation %d: %s", installation.id, type(exc).__name__)
            continue
        names = [r.full_name for r in repos]
        if names:
            await redis.hset(
                keys.REPO_INSTALLATION, mapping={n.lower(): installation.id for n in names}
            )
            await redis.sadd(
                f"{keys.INSTALLATION_REPOS_PREFIX}{installation.id}", *[n.lower() for n in names]
            )
        for full_name in names:
            # Pushes keep configs current; the resync only catches what a lost delivery missed,
            # so a repository read within the last day is left alone (GitHub's rate limits).
            if await ctx["redis"].exists(keys.CONFIG_CHECKED_PREFIX + full_name.lower()):
                continue
            await _refresh_quietly(ctx, installation.id, full_name, None)
            seen += 1
    return {"status": "resynced", "repos": seen}


async def deliver_callback(ctx: dict[str, Any], run_id: str) -> dict[str, Any]:
    """POST the run's completion to its callback URL; retried with backoff on 5xx/network."""
    settings: Settings = ctx["settings"]
    runs: RunStore = ctx["runs"]
    record = await runs.get(run_id)
    if record is None:
        return {"run_id": run_id, "status": "gone"}
    to = callback.target(settings, record, await runs.callback_key(run_id))
    if to is None:
        return {"run_id": run_id, "status": "no callback"}
    tries = int(ctx.get("job_try", 1))
    try:
        code = await callback.send(ctx["http"], to, callback.payload(record, to.run_id))
    except CallbackRejected as exc:
        log.error("run %s: callback rejected: %s", run_id, exc, extra={"run_id": run_id})
        await runs.update(run_id, callback_status=f"rejected: {exc}")
        return {"run_id": run_id, "status": "rejected"}
    except CallbackUnavailable as exc:
        if tries < settings.callback_max_attempts:
            defer = settings.callback_retry_base_seconds * 2 ** (tries - 1)
            log.warning(
                "run %s: callback failed (%s); attempt %d of %d in %.1fs",
                run_id,
                exc,
                tries + 1,
                settings.callback_max_attempts,
                defer,
                extra={"run_id": run_id},
            )
            raise Retry(defer=defer) from exc
        log.error("run %s: callback gave up: %s", run_id, exc, extra={"run_id": run_id})
        await runs.update(run_id, callback_status=f"gave up after {tries} attempts: {exc}")
        return {"run_id": run_id, "status": "gave up"}
    await runs.update(run_id, callback_status=f"delivered ({code}) at {time.time():.0f}")
    return {"run_id": run_id, "status": "delivered", "attempts": tries}


def cron_jobs() -> list[Any]:
    """New per worker: arq's cron jobs hold their next run time, so workers must not share them."""
    return [
        # Every minute, at second 0; arq gives each firing one job id, so one worker runs it.
        cron(automation_tick, second=0, run_at_startup=True, timeout=120),
        # Hourly, and at start-up: a fresh deployment learns its installations and configs.
        cron(resync_configs, minute=17, second=30, run_at_startup=True, timeout=1800),
    ]


def worker_options(
    settings: Settings,
    *,
    workspaces: WorkspaceProvider | None = None,
    clock: Clock | None = None,
    scheduled: bool = True,
) -> dict[str, Any]:
    """Keyword arguments for `arq.Worker`, with `settings` (and an injected workspace provider,
    which the caller then owns, and a clock for the scheduler) in every job's ctx.
    `scheduled=False` leaves out the cron jobs (the automation tick and the hourly resync)."""
    ctx: dict[str, Any] = {"settings": settings, "max_tries": MAX_TRIES}
    if workspaces is not None:
        ctx["workspaces"] = workspaces
    if clock is not None:
        ctx["clock"] = clock
    return {
        "functions": [
            run_mention,
            run_cancel,
            run_review,
            sync_installation,
            run_automation,
            refresh_config,
            func(deliver_callback, max_tries=settings.callback_max_attempts + 1),
        ],
        "cron_jobs": cron_jobs() if scheduled else [],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "job_serializer": codec.dumps,
        "job_deserializer": codec.loads,
        "ctx": ctx,
        "max_jobs": settings.max_jobs,
        "job_timeout": settings.job_timeout_seconds,
        "max_tries": MAX_TRIES,
        "allow_abort_jobs": True,
        "keep_result": 24 * 3600,
    }
