"""A run's turn: its thread free (one run per issue or pull request) and one of its
installation's run slots (MAX_RUNS_PER_INSTALLATION). Until then the run waits in the queue,
not in a worker slot: its job is deferred, its record stays PENDING, and waiting does not use up
the job's tries. First come, first served; a run that ends wakes the next."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from arq import Retry
from arq.constants import job_key_prefix, retry_key_prefix

from bot import installations, keys
from bot.errors import BotError
from bot.jobs import turnstile
from bot.jobs.context import Attempt, Deps
from bot.jobs.gate import installation_for
from bot.jobs.turnstile import Turnstile
from bot.queue.enqueue import EXPIRES_MS
from bot.queue.tasks import RepoRef

log = logging.getLogger(__name__)

WAITING_FOR_RUN = "waiting for run `{run_id}` to finish"

WAITING_SECONDS = 24 * 3600  # how long what a run waits for is remembered
HOLD_MARGIN_SECONDS = 300  # a place outlives JOB_TIMEOUT_SECONDS by this, then frees itself
STALE_MIN_SECONDS = 60.0  # a waiter unseen this long (or 6 polls) is passed over
Tell = Callable[[str], Awaitable[None]]


def _now_ms() -> int:
    return int(time.time() * 1000)


class Turn:
    """`take` before the run starts (raises arq's Retry while it must wait); `release` when the
    run is over, or will never start."""

    def __init__(
        self,
        deps: Deps,
        now: Attempt,
        run_id: str,
        repo: RepoRef,
        *,
        installation: int | None,
        thread: str | None = None,
        tell: Tell | None = None,
    ) -> None:
        self.deps = deps
        self.now = now
        self.run_id = run_id
        self.repo = repo
        self.installation = installation
        self.thread = thread
        self.tell = tell  # says on the thread what the run waits for, when that changes
        self._gates: list[Turnstile] | None = None

    async def gates(self, *, ask_github: bool = True) -> list[Turnstile]:
        """The thread (when the run has one), then the installation (looked up on GitHub when
        the delivery did not say and our records do not know, only if `ask_github`)."""
        if self._gates is not None:
            return self._gates
        settings = self.deps.settings
        hold = (settings.job_timeout_seconds + HOLD_MARGIN_SECONDS) * 1000
        stale = int(max(STALE_MIN_SECONDS, 6 * settings.wait_poll_seconds) * 1000)
        gates = []
        if self.thread is not None:
            gates.append(Turnstile(keys.thread_line(self.thread), 1, hold, stale))
        installation = await self._installation(ask_github)
        if installation is not None:
            capacity = settings.max_runs_per_installation
            gates.append(Turnstile(keys.installation_line(installation), capacity, hold, stale))
        if ask_github:
            self._gates = gates
        return gates

    async def _installation(self, ask_github: bool) -> int | None:
        if not ask_github and self.installation is None:
            return await installations.get(self.deps.redis, self.repo.full_name)
        try:
            return await installation_for(self.deps, self.repo, self.installation)
        except BotError as exc:  # the run itself will fail on it, and say so
            log.warning("run %s: no installation to count it against: %s", self.run_id, exc)
            return None

    async def take(self) -> None:
        """Hold every place, or raise arq's Retry to look again later (keeping those held)."""
        job_id = self.now.job_id or self.run_id
        arrival = self.now.enqueued_ms or _now_ms()
        for gate in await self.gates():
            holding = await turnstile.enter(
                self.deps.redis, gate, self.run_id, job_id, arrival_ms=arrival, now_ms=_now_ms()
            )
            if holding is not None:
                await self._waiting(_why(gate, holding))
                raise await self._deferred()
        await self.deps.redis.delete(keys.WAITING_PREFIX + self.run_id)

    async def release(self) -> None:
        """Give up every place and place in line (waking who is next)."""
        for gate in await self.gates(ask_github=False):
            await turnstile.leave(self.deps.redis, gate, self.run_id, now_ms=_now_ms())
        await self.deps.redis.delete(keys.WAITING_PREFIX + self.run_id)

    async def _waiting(self, why: str) -> None:
        """Say what the run waits for, once per change (not at every look)."""
        told = await self.deps.redis.set(
            keys.WAITING_PREFIX + self.run_id, why, ex=WAITING_SECONDS, get=True
        )
        if (told.decode() if isinstance(told, bytes) else told) == why:
            return
        log.info("run %s is %s", self.run_id, why, extra={"run_id": self.run_id})
        await self.deps.runs.log(self.run_id, why)
        if self.tell is not None:
            try:
                await self.tell(why)
            except Exception as exc:  # the wait goes on; the comment catches up when it starts
                log.warning("run %s: could not say it waits: %s", self.run_id, type(exc).__name__)

    async def _deferred(self) -> Retry:
        """arq's Retry to look again in WAIT_POLL_SECONDS, at no cost in tries."""
        job_id = self.now.job_id
        if job_id is not None:
            with contextlib.suppress(Exception):
                async with self.deps.redis.pipeline(transaction=True) as pipe:
                    # arq counted this start as a try before running it; waiting is not a try.
                    pipe.decr(retry_key_prefix + job_id)
                    # A long wait must not outlive the job (arq drops it a day after queueing).
                    pipe.pexpire(job_key_prefix + job_id, EXPIRES_MS)
                    await pipe.execute()
        return Retry(defer=self.deps.settings.wait_poll_seconds)


def _why(gate: Turnstile, holding: list[str]) -> str:
    """What the run waits for, as its tracking comment and log say it."""
    if gate.name.startswith("thread:"):
        if holding:
            return WAITING_FOR_RUN.format(run_id=holding[0])
        return "waiting for the runs queued before it on this thread"
    # Not the count of runs in progress: the comment would be edited at every change of it.
    return f"waiting for a free run slot (this installation runs {gate.capacity} at a time)"
