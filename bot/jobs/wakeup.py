"""A queued job starts within milliseconds without polling Redis hard: whoever queues a job (or
moves one to the front) publishes on one channel, the worker waits on it between polls, and a
slow poll (`QUEUE_POLL_SECONDS`) is the fallback should a message be missed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot import keys

log = logging.getLogger(__name__)


class WakeUp:
    """Set by a message on the queue's channel (or a local poke); waited on between polls."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="queue-wakeup")

    def poke(self) -> None:
        """Look at the queue again now (a job of this worker finished: a slot is free)."""
        self._event.set()

    async def wait(self, seconds: float) -> None:
        """Until a wake-up or `seconds`; then the next wait waits for a new one."""
        if seconds > 0 and not self._event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), seconds)
        self._event.clear()

    async def _listen(self) -> None:
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(keys.QUEUE_WAKE)
                self._event.set()  # (re)subscribed: what was published meanwhile was missed
                async for _ in pubsub.listen():
                    self._event.set()
            except (RedisError, OSError) as exc:  # the fallback poll carries on meanwhile
                log.warning("queue wake-ups unavailable (%s)", type(exc).__name__)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


async def next_due(redis: Redis, queue: str, window: int) -> float | None:
    """Seconds until a job of the queue's first `window` (what a poll reads) may be taken: 0 if
    one is due and unclaimed, else the nearest of a claim lapsing and a deferred job coming due;
    None when there is nothing to wait for. A running job stays queued under its claim until it
    ends, so a due job is not a reason to poll again unless no worker holds it: polling on it
    kept every worker with a free slot spinning (thousands of commands a run with four)."""
    now_ms = time.time() * 1000
    head = await redis.zrangebyscore(queue, "-inf", now_ms, start=0, num=window, withscores=True)
    later = await redis.zrangebyscore(queue, f"({now_ms}", "+inf", start=0, num=1, withscores=True)
    waits = [max(float(later[0][1]) - now_ms, 0.0) / 1000] if later else []
    if head:
        async with redis.pipeline(transaction=False) as pipe:
            for job_id, _ in head:
                name = job_id.decode() if isinstance(job_id, bytes) else str(job_id)
                pipe.pttl(in_progress_key_prefix + name)
            claims = await pipe.execute()
        for left in claims:
            if int(left) == -2:  # no claim: free to take now
                return 0.0
            if int(left) >= 0:  # claimed until then, unless renewed
                waits.append(int(left) / 1000)
    return min(waits) if waits else None
