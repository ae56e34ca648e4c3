"""The stop protocol in one place: who asked a run to stop, and aborting the job that runs it.

`@handle stop` (the cancel job) and the run API ask; the run reads who asked when it is
cancelled, to say so on its thread and end CANCELLED rather than be run again."""

from __future__ import annotations

import contextlib
from typing import cast

from arq.connections import ArqRedis
from arq.jobs import Job
from redis.asyncio import Redis

from bot import keys
from bot.queue import codec

REMEMBER_SECONDS = 3600


async def request(redis: Redis, run_id: str, by: str) -> None:
    """Remember that `by` asked `run_id` to stop (read when the run is cancelled)."""
    await redis.set(keys.STOP_PREFIX + run_id, by, ex=REMEMBER_SECONDS)


async def requested_by(redis: Redis, run_id: str) -> str | None:
    """Who asked `run_id` to stop, or None when nobody did (a shutdown, a timeout)."""
    by = await redis.get(keys.STOP_PREFIX + run_id)
    return by.decode() if isinstance(by, bytes) else by


async def abort(redis: Redis, job_id: str, *, wait: float) -> bool:
    """Ask arq to cancel the job: its run interrupts its conversation and finalizes itself."""
    job = Job(job_id, cast(ArqRedis, redis), _deserializer=codec.loads)
    with contextlib.suppress(Exception):  # asked; the worker acts on it (or has ended)
        return bool(await job.abort(timeout=wait))
    return False
