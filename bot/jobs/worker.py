"""The worker process: arq's wiring. Clients are made once at start-up into one typed `Deps`,
closed at shut-down; each job lives in its own module."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import Any
from urllib.parse import urlsplit

import httpx
from arq import Worker, cron, func
from arq.connections import RedisSettings
from redis.exceptions import RedisError

from bot import logs, redis_outage
from bot.agent.gateway import Gateway, GatewayProcess
from bot.agent.workspace import WorkspaceProvider, make_provider
from bot.config import Settings
from bot.errors import UnsafeDeployment
from bot.github.client import GitHubApp
from bot.jobs.automation import run_automation
from bot.jobs.callback import deliver_callback
from bot.jobs.cancel import run_cancel
from bot.jobs.config_sync import refresh_config, resync_configs
from bot.jobs.context import DEPS, LEASE, MAX_TRIES, Clock, Deps, deps, leased, utc_now
from bot.jobs.installation import sync_installation
from bot.jobs.mention import run_mention
from bot.jobs.review import run_review
from bot.jobs.scheduler import automation_tick
from bot.jobs.wakeup import WakeUp, next_due
from bot.queue import codec, signing
from bot.queue.enqueue import Enqueuer
from bot.runs.store import RunStore

log = logging.getLogger(__name__)

SETTINGS = "settings"
INJECTED_PROVIDER = "workspaces"
INJECTED_CLOCK = "clock"
INJECTED_GATEWAY = "gateway"


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx[SETTINGS]
    redis = ctx["redis"]  # arq's own connection
    injected: WorkspaceProvider | None = ctx.get(INJECTED_PROVIDER)
    # The LLM gateway, the only holder of the provider key: a process of this worker's own, so
    # the provider client (litellm) stays out of the worker, and its socket is this worker's.
    given: Gateway | None = ctx.get(INJECTED_GATEWAY)
    gateway = given or GatewayProcess(settings, redis)
    provider = injected or make_provider(settings, gateway_dir=gateway.socket_path.parent)
    if exposed_queue(settings) and not getattr(provider, "isolates_network", False):
        if injected is None:  # tests inject a provider of their own, and are only warned
            raise UnsafeDeployment(QUEUE_EXPOSED)
        log.warning(QUEUE_EXPOSED)
    keys = signing.keys_for(settings)
    if given is None:
        await gateway.start()
    made = Deps(
        settings=settings,
        redis=redis,
        github=GitHubApp(settings, redis, pooled=True),
        runs=RunStore(redis, settings.run_retention_seconds),
        enqueuer=Enqueuer(redis, key=keys.queue, dedup_seconds=settings.delivery_dedup_seconds),
        keys=keys,
        http=httpx.AsyncClient(timeout=settings.callback_timeout_seconds),
        provider=provider,
        owns_provider=injected is None,
        gateway=gateway,
        owns_gateway=given is None,
        clock=ctx.get(INJECTED_CLOCK) or utc_now,
    )
    if made.owns_provider:
        # Started in the background: the local agent-server takes ~15 s, jobs wait for it.
        made.starting = asyncio.create_task(provider.start())
    ctx[DEPS] = made
    log.info("worker ready", extra={"github_api_url": settings.github_api_url})


QUEUE_EXPOSED = (
    "WORKSPACE_KIND=local without its sandbox runs the agent on this host, and REDIS_URL is a TCP "
    "Redis without a password: the agent could reach the queue. Turn the sandbox on "
    "(LOCAL_SANDBOX=true, as root with bubblewrap, slirp4netns and nftables installed), or use "
    "a Redis with a password, or WORKSPACE_KIND=runtime or server."
)


def exposed_queue(settings: Settings) -> bool:
    """The agent shares this host (`local`) and the queue is a TCP Redis anyone here can use."""
    url = urlsplit(settings.redis_url)
    return settings.workspace_kind == "local" and url.scheme == "redis" and not url.password


async def shutdown(ctx: dict[str, Any]) -> None:
    log.info("worker stopping")
    if DEPS not in ctx:  # start-up failed before the clients were made
        return
    made = deps(ctx)
    # Each close on its own: one failing must not leave the others open.
    with contextlib.suppress(Exception):
        await made.enqueuer.close()
    with contextlib.suppress(Exception):
        await made.http.aclose()
    with contextlib.suppress(Exception):
        await made.github.close()
    if made.owns_provider:
        if made.starting is not None and not made.starting.done():
            made.starting.cancel()
        await made.provider.close()
    if made.owns_gateway:
        with contextlib.suppress(Exception):
            await made.gateway.stop()


def redis_settings(settings: Settings) -> RedisSettings:
    """arq's connection, made to ride out an outage: a command that meets a dropped or refused
    connection retries with back-off (capped at 5 s) for about REDIS_OUTAGE_SECONDS, so a run in
    flight pauses on its next Redis write and carries on when Redis is back."""
    return dataclasses.replace(
        RedisSettings.from_dsn(settings.redis_url),
        retry=redis_outage.retry(settings),
        retry_on_error=list(redis_outage.RETRY_ON),
        conn_retries=redis_outage.tries(settings),
        conn_retry_delay=int(redis_outage.CAP_SECONDS),
    )


def cron_jobs() -> list[Any]:
    """New per worker: arq's cron jobs hold their next run time, so workers must not share them."""
    return [
        # Every minute, at second 0; arq gives each firing one job id, so one worker runs it.
        cron(leased(automation_tick), second=0, run_at_startup=True, timeout=120),
        # Hourly, and at start-up: a fresh deployment learns its installations and configs.
        cron(leased(resync_configs), minute=17, second=30, run_at_startup=True, timeout=1800),
    ]


def worker_options(
    settings: Settings,
    *,
    workspaces: WorkspaceProvider | None = None,
    gateway: Gateway | None = None,
    clock: Clock | None = None,
    scheduled: bool = True,
) -> dict[str, Any]:
    """Keyword arguments for `arq.Worker`, with `settings` (and an injected workspace provider,
    which the caller then owns, as it owns an injected, started gateway, and a clock for the
    scheduler) in every job's ctx.
    `scheduled=False` leaves out the cron jobs (the automation tick and the hourly resync)."""
    ctx: dict[str, Any] = {
        SETTINGS: settings,
        "max_tries": MAX_TRIES,
        LEASE: settings.worker_lease_seconds,
    }
    if workspaces is not None:
        ctx[INJECTED_PROVIDER] = workspaces
    if gateway is not None:
        ctx[INJECTED_GATEWAY] = gateway
    signed = codec.Signed(signing.keys_for(settings).queue)
    if clock is not None:
        ctx[INJECTED_CLOCK] = clock
    return {
        "functions": [
            run_mention,
            run_cancel,
            run_review,
            sync_installation,
            run_automation,
            refresh_config,
            func(leased(deliver_callback), max_tries=settings.callback_max_attempts + 1),
        ],
        "cron_jobs": cron_jobs() if scheduled else [],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": redis_settings(settings),
        # Signed both ways: a job planted in Redis fails to load, and arq fails it unrun. The
        # cron jobs arq queues itself go through the same serializer, so they are signed too.
        "job_serializer": signed.dumps,
        "job_deserializer": signed.loads,
        "ctx": ctx,
        "max_jobs": settings.max_jobs,
        "job_timeout": settings.job_timeout_seconds,
        "max_tries": MAX_TRIES,
        "allow_abort_jobs": True,
        "keep_result": 24 * 3600,
    }


class LeasedWorker(Worker):
    """arq's worker with a short claim on each job it runs (arq's default lives the whole job
    timeout plus 10 s, so a killed worker's run froze for an hour). Every job renews its claim
    while it runs (`context.claim_renewed`); a dead worker's job is free within the lease."""

    def __init__(self, *args: Any, lease_seconds: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_progress_timeout_s = lease_seconds
        self._redis_down = False
        # Between polls the worker waits for a wake-up (`bot.jobs.wakeup`) instead of arq's
        # fixed sleep: `poll_delay` becomes the longest wait. A burst worker (tests) keeps arq's.
        self._fallback = self.poll_delay_s
        self._wakeup: WakeUp | None = None
        if not self.burst and self._fallback > 0:
            self.poll_delay_s = 0

    async def _poll_iteration(self) -> None:
        """arq's poll, surviving Redis: an error leaves the loop alive to poll again later."""
        try:
            await super()._poll_iteration()
            await self._wait_for_work()
        except (RedisError, OSError) as exc:
            if not self._redis_down:
                log.warning("Redis unavailable (%s); waiting for it", type(exc).__name__)
            self._redis_down = True
            await asyncio.sleep(1.0)
            return
        if self._redis_down:
            log.info("Redis is back")
            self._redis_down = False

    async def _wait_for_work(self) -> None:
        """Until a job may be due: a wake-up, a job of ours ending, the queue's earliest deferred
        job or cron job coming due, or the fallback poll, whichever is first."""
        if self.poll_delay_s or self.burst:  # arq sleeps its own way
            return
        if self._wakeup is None:
            self._wakeup = WakeUp(self.pool)
            self._wakeup.start()
        wait = self._fallback
        if self.job_counter < self.max_jobs and self.allow_pick_jobs:
            due = await next_due(self.pool, self.queue_name, self.queue_read_limit)
            if due is not None:
                wait = min(wait, due)
        now = utc_now()
        for job in self.cron_jobs:
            if job.next_run is not None:
                wait = min(wait, max((job.next_run - now).total_seconds() - 1.0, 0.0))
        await self._wakeup.wait(wait)

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        if self._wakeup is not None:
            self._wakeup.poke()  # a slot is free: take the next queued job now

    async def close(self) -> None:
        if self._wakeup is not None:
            await self._wakeup.close()
        if self._pool is not None and self.tasks:
            # arq gathers its job tasks without return_exceptions: one that a stop cancelled
            # (a deploy's SIGTERM mid-job) raised out of close() before `on_shutdown` ran, so
            # the worker's clients, workspaces and gateway process were never closed.
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
            for job_id in [j for j, task in self.tasks.items() if task.done()]:
                del self.tasks[job_id]
        await super().close()

    async def run_job(self, job_id: str, score: int) -> None:
        """arq's run_job (a task of its own per job) with the job id on every line it logs, the
        codec's refusal of an unsigned job among them."""
        with logs.bound(job_id=job_id):
            await super().run_job(job_id, score)

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Never start a job this worker is already running (its claim may have lapsed while
        Redis was away; its heartbeat takes it back)."""
        await super().start_jobs([j for j in job_ids if j.decode() not in self.tasks])


def make_worker(
    settings: Settings,
    *,
    workspaces: WorkspaceProvider | None = None,
    gateway: Gateway | None = None,
    clock: Clock | None = None,
    scheduled: bool = True,
    **arq_options: Any,
) -> LeasedWorker:
    """The worker the CLI, replay and tests run: `worker_options` plus arq's own options."""
    options = worker_options(
        settings, workspaces=workspaces, gateway=gateway, clock=clock, scheduled=scheduled
    )
    # The longest wait between polls: wake-ups start queued jobs sooner (`LeasedWorker`).
    options["poll_delay"] = settings.queue_poll_seconds
    options.update(arq_options)
    return LeasedWorker(**options, lease_seconds=settings.worker_lease_seconds)
