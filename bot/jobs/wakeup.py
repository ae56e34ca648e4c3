"""A queued job starts within milliseconds without polling Redis hard: whoever queues a job (or
moves one to the front) publishes on one channel, the worker waits on it between polls, and a
slow poll (`QUEUE_POLL_SECONDS`) is the fallback should a message be missed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

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


async def next_due(redis: Redis, queue: str) -> float | None:
    """Seconds until the queue's earliest job is due (0 if one is due now), None when empty."""
    head = await redis.zrange(queue, 0, 0, withscores=True)
    if not head:
        return None
    return max(float(head[0][1]) / 1000 - time.time(), 0.0)
