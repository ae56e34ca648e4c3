"""The enqueuer against real Redis: a burst bigger than any one script call is stored exactly once,
every waiter hears its own outcome, and every stored job is the signed bytes it was given."""

from __future__ import annotations

import asyncio

from arq.constants import default_queue_name, job_key_prefix
from redis.asyncio import Redis

from bot.queue import codec, signing
from bot.queue.enqueue import Enqueuer

KEY = b"k" * 32


async def test_a_burst_is_stored_once_each_across_many_calls(redis: Redis) -> None:
    # 300 at once with calls of at most 32 and 16 sent as they are decided: eager calls, calls
    # gathered while every slot was busy, and halves all happen; repeats of one burst are
    # duplicates whichever call carried the first.
    enqueuer = Enqueuer(redis, key=KEY, max_batch=32, max_in_flight=3, eager_batch=16)
    jobs = {f"job-{n}": codec.job("record", f"n{n}", "ünïcode ✓") for n in range(300)}
    try:
        # A waiter its batch forgot would hang: a bound turns that into a failure.
        burst = [enqueuer.enqueue_raw(i, j) for i, j in jobs.items()]
        first = await asyncio.wait_for(asyncio.gather(*burst), 30)
        repeat = [enqueuer.enqueue_raw(i, j) for i, j in jobs.items()]
        again = await asyncio.wait_for(asyncio.gather(*repeat), 30)
    finally:
        await enqueuer.close()
    assert first == ["queued"] * 300
    assert again == ["duplicate"] * 300
    assert await redis.zcard(default_queue_name) == 300
    for job_id, payload in jobs.items():
        stored = await redis.get(job_key_prefix + job_id)
        assert stored is not None
        assert signing.verified(KEY, stored) == payload  # the very bytes, signed


async def test_a_closed_enqueuer_hands_its_connections_back(redis: Redis) -> None:
    pool = redis.connection_pool
    enqueuer = Enqueuer(redis, key=KEY)
    await asyncio.gather(
        *(enqueuer.enqueue_raw(f"job-{n}", codec.job("record", n)) for n in range(40))
    )
    held = len(pool._in_use_connections)
    assert held >= 1
    await enqueuer.close()
    assert len(pool._in_use_connections) == 0
