"""What every job is handed, typed: the long-lived clients made at worker start-up (`Deps`, kept
in arq's ctx under one key) and this try of the job (`Attempt`), instead of string-keyed reads."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from arq import Retry
from redis.asyncio import Redis

from bot import logs
from bot.agent.workspace.base import WorkspaceProvider
from bot.config import Settings
from bot.errors import TransientError, backoff
from bot.github.client import GitHubApp
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


JobFunction = Callable[[dict[str, Any], dict[str, Any]], Awaitable[dict[str, Any]]]
TypedJob = Callable[[Deps, Attempt, dict[str, Any]], Awaitable[RunOutcome]]


def job(body: TypedJob) -> JobFunction:
    """An arq job from a typed one: its deps and attempt handed in, its outcome stored as JSON,
    and every log line it writes carrying its run, delivery, repository and installation."""

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
            outcome = await body(deps(ctx), attempt(ctx), data)
            return outcome.as_result()

    return run
