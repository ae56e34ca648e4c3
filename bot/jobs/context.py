"""What every job is handed, typed: the long-lived clients made at worker start-up (`Deps`, kept
in arq's ctx under one key) and this try of the job (`Attempt`), instead of string-keyed reads."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from arq import Retry
from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot import keys, logs
from bot.agent.gateway import Gateway
from bot.agent.workspace.base import WorkspaceProvider
from bot.config import Settings
from bot.errors import RefusedJob, TransientError, backoff
from bot.github.client import GitHubApp
from bot.queue import codec, signing
from bot.queue.enqueue import Enqueuer
from bot.runs.outcome import RunOutcome
from bot.runs.store import RunStore

log = logging.getLogger(__name__)

MAX_TRIES = 5
DEPS = "deps"
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Deps:
    """The worker's clients, made once at start-up and closed at shut-down."""

    settings: Settings
    redis: Redis
    github: GitHubApp
    runs: RunStore
    enqueuer: Enqueuer
    http: httpx.AsyncClient
    provider: WorkspaceProvider
    owns_provider: bool
    keys: signing.Keys
    gateway: Gateway  # the LLM gateway this worker serves; runs get their credential from it
    owns_gateway: bool = True
    clock: Clock = utc_now
    starting: asyncio.Task[None] | None = field(default=None)

    async def workspaces(self) -> WorkspaceProvider:
        """The workspace provider, once its background start has finished (or failed: a failed
        start is retried by the provider on first use)."""
        if self.starting is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.starting)
        return self.provider


@dataclass(frozen=True, slots=True)
class Attempt:
    """This try of the job, as arq tells it."""

    job_id: str | None
    tries: int
    max_tries: int
    enqueued_ms: int = 0  # when the job was first queued (a waiting run keeps its place by it)

    @property
    def label(self) -> str:
        """ "" on the first try, "try2" and on after: a re-run's conversation is its own."""
        return "" if self.tries <= 1 else f"try{self.tries}"

    @property
    def earlier(self) -> tuple[str, ...]:
        """The labels of this job's earlier tries."""
        return tuple(Attempt(self.job_id, t, self.max_tries).label for t in range(1, self.tries))

    @property
    def may_rerun(self) -> bool:
        """arq runs the job again after a shutdown (tries remain)."""
        return self.tries < self.max_tries


def deps(ctx: dict[str, Any]) -> Deps:
    found: Deps = ctx[DEPS]
    return found


def attempt(ctx: dict[str, Any]) -> Attempt:
    queued = ctx.get("enqueue_time")
    return Attempt(
        ctx.get("job_id"),
        int(ctx.get("job_try", 1)),
        int(ctx.get("max_tries", 1)),
        int(queued.timestamp() * 1000) if isinstance(queued, datetime) else 0,
    )


def retry_transient(now: Attempt, exc: TransientError, run_id: str) -> None:
    """Raise arq's Retry for a transient error while tries remain (back-off from `errors`)."""
    if now.tries >= MAX_TRIES:
        return
    defer = backoff(now.tries, base=2.0, retry_after=exc.retry_after)
    log.warning(
        "run %s: %s; retry %d in %.0fs",
        run_id,
        exc.user_message,
        now.tries,
        defer,
        extra={"run_id": run_id},
    )
    raise Retry(defer=defer) from exc


LEASE = "lease_seconds"  # in ctx: how long a job's claim lives unless renewed


async def _renew(redis: Redis, job_id: str, lease: float) -> None:
    """Keep renewing the job's claim (arq's in-progress key) while it runs. A worker that dies
    stops renewing, and its job is free for another worker once the claim runs out."""
    key = in_progress_key_prefix + job_id
    while True:
        await asyncio.sleep(lease / 3)
        try:
            # SET, not PEXPIRE: after a Redis outage longer than the lease the key is gone, and
            # this worker, still running the job, takes its claim back.
            await redis.set(key, b"1", px=int(lease * 1000))
        except (RedisError, OSError) as exc:  # Redis away: the next beat tries again
            log.warning("could not renew the claim on job %s: %s", job_id, type(exc).__name__)


@contextlib.asynccontextmanager
async def claim_renewed(ctx: dict[str, Any]) -> AsyncIterator[None]:
    """Renew the running job's claim for as long as the block runs."""
    job_id, lease = ctx.get("job_id"), ctx.get(LEASE)
    if not job_id or not lease:
        yield
        return
    beat = asyncio.create_task(_renew(ctx["redis"], job_id, float(lease)))
    try:
        yield
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat


REPLAYED = "refused a replayed job: job {job_id} is a copy of job {first}, which already ran"


async def refuse_replay(ctx: dict[str, Any]) -> None:
    """A signed job runs under one job id only: the first to load it claims its MAC for as long
    as a job can live; a copy queued under another id raises RefusedJob, with a log line. (arq's
    own retries and deferrals keep the job id, so they go on.)"""
    mac, job_id = codec.loaded_mac.get(), ctx.get("job_id")
    if mac is None or not job_id:
        return
    redis: Redis = ctx["redis"]
    key = keys.CONSUMED_JOB_PREFIX + mac
    if await redis.set(key, job_id, nx=True, ex=codec.REPLAY_WINDOW_SECONDS):
        return
    first = await redis.get(key)
    if first is not None and first.decode() != job_id:
        log.error(REPLAYED.format(job_id=job_id, first=first.decode()))
        raise RefusedJob("a copy of a job that already ran")


def leased[**P, R](function: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """A job (ctx first) whose claim is renewed while it runs: cron jobs and the callback."""

    @functools.wraps(function)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        ctx = args[0]
        assert isinstance(ctx, dict)
        await refuse_replay(ctx)
        async with claim_renewed(ctx):
            return await function(*args, **kwargs)

    return run


JobFunction = Callable[[dict[str, Any], dict[str, Any]], Awaitable[dict[str, Any]]]
TypedJob = Callable[[Deps, Attempt, dict[str, Any]], Awaitable[RunOutcome]]


def job(body: TypedJob) -> JobFunction:
    """An arq job from a typed one: its deps and attempt handed in, its outcome stored as JSON,
    its claim renewed while it runs, and every log line it writes carrying its run, delivery,
    repository and installation."""

    @functools.wraps(body)
    async def run(ctx: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        repo = data.get("repo") or {}
        name = f"{repo.get('owner')}/{repo.get('name')}" if repo.get("name") else None
        with logs.bound(
            run_id=data.get("run_id"),
            delivery_id=data.get("delivery_id"),
            repo=name,
            installation_id=data.get("installation_id"),
        ):
            now = attempt(ctx)
            try:
                await refuse_replay(ctx)
                async with claim_renewed(ctx):
                    outcome = await body(deps(ctx), now, data)
            except RedisError as exc:  # Redis stayed away past the outage window: try later
                log.warning("Redis unavailable (%s); the job runs again", type(exc).__name__)
                raise Retry(defer=backoff(now.tries, base=5.0)) from exc
            return outcome.as_result()

    return run
