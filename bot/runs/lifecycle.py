"""A run's record from start to end, whatever kind of run it is: status transitions, the log,
and the completion callback queued once the run is over (so it never delays finalization)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from arq import Retry
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.config import Settings
from bot.queue import codec
from bot.queue.enqueue import Enqueuer
from bot.runs import callback, metrics, stop
from bot.runs.outcome import Done, RunOutcome
from bot.runs.store import RunError, RunRecord, RunStatus, RunStore

log = logging.getLogger(__name__)

CALLBACK_FUNCTION = "deliver_callback"


def callback_job_id(run_id: str) -> str:
    return f"callback:{run_id}"


def callback_job(run_id: str) -> bytes:
    return codec.job(CALLBACK_FUNCTION, run_id)


async def finish(
    settings: Settings,
    runs: RunStore,
    enqueuer: Enqueuer,
    run_id: str,
    status: RunStatus,
    *,
    outcome: str | None = None,
    error: RunError | None = None,
    allowed: set[RunStatus] | None = None,
    **values: Any,
) -> bool:
    """Move the run to its final status (once) and queue its callback when it has one."""
    fields: dict[str, Any] = {"finished_at": time.time(), **values}
    if outcome is not None:
        fields["outcome"] = outcome
    if error is not None:
        fields["error"] = error.model_dump()
    allowed = allowed or {RunStatus.PENDING, RunStatus.RUNNING}
    moved = await runs.transition(run_id, status, allowed, **fields)
    if not moved:
        return False
    await runs.log(run_id, f"{status.value}: {outcome or (error.code if error else '')}")
    record = await runs.get(run_id)
    if record is None:  # expired meanwhile: nothing to count or report
        return True
    await metrics.count_finished(runs.redis, record)  # once: only the move gets here
    if callback.target(settings, record, None) is not None:
        await enqueuer.enqueue_raw(callback_job_id(run_id), callback_job(run_id))
    return True


class Turn(Protocol):
    """What a run waits for before it starts (its thread, a slot of its installation)."""

    async def take(self) -> None:
        """Return once the run may start; raise arq's Retry to wait (its record stays PENDING)."""

    async def release(self) -> None:
        """Give the turn back: the run is over, or will never start."""


async def tracked(
    settings: Settings,
    runs: RunStore,
    enqueuer: Enqueuer,
    redis: Redis,
    record: RunRecord,
    body: Callable[[], Awaitable[RunOutcome]],
    *,
    may_rerun: bool,
    on_cancelled: Callable[[], Awaitable[None]] | None = None,
    turn: Turn | None = None,
) -> RunOutcome:
    """Run `body` as the run `record` describes, keeping its record true on every path.
    `may_rerun`: arq has tries left for this job. `on_cancelled` tells the user when the run was
    cancelled before it could start. `turn` is taken before the run starts and given back after."""
    run_id = record.run_id
    await runs.create(record)  # already there when the API created it, or on a re-execution
    current = await runs.get(run_id)
    if current is None or current.status not in (RunStatus.PENDING, RunStatus.RUNNING):
        if turn is not None:  # e.g. cancelled while it waited: it leaves the line
            await _quietly(turn.release, run_id)
        return await _not_started(runs, run_id, on_cancelled)
    if turn is not None:
        try:
            await turn.take()
        except Retry:
            raise
        except Exception as exc:
            await _failed(settings, runs, enqueuer, run_id, exc)
            raise
    try:
        return await _started(
            settings, runs, enqueuer, redis, record, body, may_rerun, on_cancelled
        )
    finally:
        if turn is not None:
            await asyncio.shield(_quietly(turn.release, run_id))


async def _quietly(action: Callable[[], Awaitable[None]], run_id: str) -> None:
    try:
        await action()
    except Exception:
        log.exception("run %s: could not give its turn back", run_id, extra={"run_id": run_id})


async def _not_started(
    runs: RunStore, run_id: str, on_cancelled: Callable[[], Awaitable[None]] | None
) -> RunOutcome:
    current = await runs.get(run_id)
    status = current.status.value if current else "gone"
    log.info("run %s is %s; not starting it", run_id, status, extra={"run_id": run_id})
    if current is not None and current.status is RunStatus.CANCELLED and on_cancelled:
        try:
            await on_cancelled()
        except Exception:
            log.exception("run %s: could not say it was cancelled", run_id)
    return RunOutcome(run_id, Done.SKIPPED, reason=f"run is {status}")


async def _started(
    settings: Settings,
    runs: RunStore,
    enqueuer: Enqueuer,
    redis: Redis,
    record: RunRecord,
    body: Callable[[], Awaitable[RunOutcome]],
    may_rerun: bool,
    on_cancelled: Callable[[], Awaitable[None]] | None,
) -> RunOutcome:
    run_id = record.run_id
    if not await runs.transition(
        run_id, RunStatus.RUNNING, {RunStatus.PENDING, RunStatus.RUNNING}, started_at=time.time()
    ):
        return await _not_started(runs, run_id, on_cancelled)
    await runs.log(run_id, f"started ({record.kind}, {record.trigger})")
    started = time.monotonic()
    try:
        outcome = await body()
    except asyncio.CancelledError:
        # arq runs the job again after a shutdown, unless this was its last try or it ran out
        # of time (arq's job timeout also arrives as a cancellation).
        rerun = may_rerun and time.monotonic() - started < settings.job_timeout_seconds - 1
        await asyncio.shield(_cancelled(settings, runs, enqueuer, redis, run_id, rerun=rerun))
        raise
    except Retry:
        await runs.transition(run_id, RunStatus.PENDING, {RunStatus.RUNNING})
        await runs.log(run_id, "retrying after a temporary failure")
        raise
    except RedisError:  # not the run's failure: its job runs again once Redis is back
        raise
    except Exception as exc:
        await _failed(settings, runs, enqueuer, run_id, exc)
        raise
    await _finish_with(settings, runs, enqueuer, run_id, outcome)
    return outcome


async def ended(
    settings: Settings, runs: RunStore, enqueuer: Enqueuer, record: RunRecord, outcome: RunOutcome
) -> RunOutcome:
    """A run that ended before it could start (e.g. its permission check failed for good):
    its record, final at once, and its callback."""
    await runs.create(record)
    await _finish_with(settings, runs, enqueuer, record.run_id, outcome)
    return outcome


async def _finish_with(
    settings: Settings, runs: RunStore, enqueuer: Enqueuer, run_id: str, outcome: RunOutcome
) -> None:
    values: dict[str, Any] = {}
    if outcome.cost:
        values["cost"] = outcome.cost
    if outcome.conversation_id:
        values["conversation_id"] = outcome.conversation_id
    if outcome.links:
        values["links"] = dict(outcome.links)
    await finish(
        settings,
        runs,
        enqueuer,
        run_id,
        outcome.run_status,
        outcome=outcome.summary,
        error=outcome.error,
        **values,
    )


async def _failed(
    settings: Settings, runs: RunStore, enqueuer: Enqueuer, run_id: str, exc: Exception
) -> None:
    """A bug of ours ended the run: its record says so rather than stay PENDING or RUNNING."""
    await finish(
        settings,
        runs,
        enqueuer,
        run_id,
        RunStatus.FAILED,
        outcome="failed",
        error=RunError(code="internal", detail=type(exc).__name__),
    )


async def _cancelled(
    settings: Settings,
    runs: RunStore,
    enqueuer: Enqueuer,
    redis: Redis,
    run_id: str,
    *,
    rerun: bool,
) -> None:
    """Stopped on request → CANCELLED; a worker shutting down → PENDING while arq will run it
    again, FAILED when it will not (its last try, or past JOB_TIMEOUT_SECONDS)."""
    with contextlib.suppress(Exception):
        by = await stop.requested_by(redis, run_id)
        if by is None and rerun:
            await runs.transition(run_id, RunStatus.PENDING, {RunStatus.RUNNING})
            await runs.log(run_id, "interrupted by a worker shutdown; it runs again")
            return
        if by is not None:
            status, why = (
                RunStatus.CANCELLED,
                RunError(code="cancelled", detail=f"stopped by {by}"),
            )
        else:
            why = RunError(
                code="interrupted", detail="the job timed out or its worker stopped on its last try"
            )
            status = RunStatus.FAILED
        await finish(
            settings, runs, enqueuer, run_id, status, outcome=status.value.lower(), error=why
        )
