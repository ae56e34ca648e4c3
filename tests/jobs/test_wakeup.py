"""A queued job starts on a wake-up, not on the next poll: with the fallback poll an hour away, a
real worker on real Redis still runs what the bot's enqueuer queues, the next queued job when a
slot frees, and a job deferred by Retry when it comes due."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from arq import Retry, func
from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis

from bot.config import Settings
from bot.jobs.wakeup import next_due
from bot.jobs.worker import LeasedWorker, redis_settings
from bot.queue import codec, signing
from bot.queue.enqueue import Enqueuer

HOUR = 3600.0
GUARD_SECONDS = 60  # not a measurement: only how long to wait before calling the job lost


async def record(ctx: dict[str, Any], label: str) -> None:
    ctx["seen"].append((label, ctx["job_try"]))
    if label == "deferred" and ctx["job_try"] == 1:
        raise Retry(defer=0.2)  # comes due long before the fallback poll


async def _until(seen: list[tuple[str, int]], count: int) -> None:
    for _ in range(GUARD_SECONDS * 20):
        if len(seen) >= count:
            return
        await asyncio.sleep(0.05)


async def test_queued_jobs_start_without_waiting_for_the_poll(
    settings: Settings, redis: Redis
) -> None:
    keys = signing.keys_for(settings)
    signed = codec.Signed(keys.queue)
    seen: list[tuple[str, int]] = []
    worker = LeasedWorker(
        functions=[func(record, name="record")],
        redis_settings=redis_settings(settings),
        job_serializer=signed.dumps,
        job_deserializer=signed.loads,
        ctx={"seen": seen},
        poll_delay=HOUR,  # the fallback poll never comes during this test
        max_jobs=1,  # the second and third job start only as a slot frees
        handle_signals=False,
        lease_seconds=30,
    )
    running = asyncio.create_task(worker.main())
    enqueuer = Enqueuer(redis, key=keys.queue)
    try:
        await asyncio.sleep(0.2)  # the worker's first poll found nothing; it waits now
        queued = await asyncio.gather(
            *(enqueuer.enqueue_raw(f"job-{n}", codec.job("record", f"n{n}")) for n in range(3))
        )
        assert queued == ["queued"] * 3
        await _until(seen, 3)
        assert sorted(seen) == [("n0", 1), ("n1", 1), ("n2", 1)]

        await enqueuer.enqueue_raw("job-deferred", codec.job("record", "deferred"))
        await _until(seen, 5)
        assert seen[3:] == [("deferred", 1), ("deferred", 2)]  # ran again once due
    finally:
        await enqueuer.close()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await worker.close()


async def test_a_job_another_worker_runs_is_no_reason_to_poll_again(redis: Redis) -> None:
    """A running job stays queued under its claim: the wait runs to the claim's end (or the next
    deferred job), not zero, else every worker with a free slot polls without pause."""
    queue = "test:wake-queue"
    now_ms = int(time.time() * 1000)
    await redis.zadd(queue, {"running": now_ms - 1000, "later": now_ms + 50_000})
    await redis.psetex(in_progress_key_prefix + "running", 20_000, b"1")
    claimed = await next_due(redis, queue, window=10)
    assert claimed is not None
    assert 10 < claimed <= 20  # the claim's end comes first
    await redis.delete(in_progress_key_prefix + "running")  # its worker died: the claim lapsed
    assert await next_due(redis, queue, window=10) == 0.0
    await redis.delete(queue)
    assert await next_due(redis, queue, window=10) is None
