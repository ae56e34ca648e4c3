"""What a follow-up on an issue or pull request continues from: the run in progress (for `stop`),
the last summary, the kept conversation. (One run per thread at a time: `turns`.)"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

from bot import keys
from bot.agent.run import AgentRun

SUMMARY_SECONDS = 30 * 24 * 3600


def key(repo: str, number: int) -> str:
    return keys.thread(repo, number)


async def mark_active(redis: Redis, thread: str, run_id: str, job_id: str | None) -> None:
    """`run_id` (arq job `job_id`) is the run in progress on `thread`: `stop` aborts it."""
    mapping = {"run_id": run_id, "job_id": job_id or ""}
    await cast(Awaitable[int], redis.hset(keys.ACTIVE_PREFIX + thread, mapping=mapping))


async def active_run(redis: Redis, thread: str) -> tuple[str, str] | None:
    """(run id, job id) of the run in progress on `thread`, if any."""
    raw = await cast(Awaitable[dict[bytes, bytes]], redis.hgetall(keys.ACTIVE_PREFIX + thread))
    run_id = raw.get(b"run_id", b"").decode()
    job_id = raw.get(b"job_id", b"").decode()
    return (run_id, job_id) if run_id and job_id else None


async def clear_active(redis: Redis, thread: str, run_id: str) -> None:
    current = await cast(Awaitable[bytes | None], redis.hget(keys.ACTIVE_PREFIX + thread, "run_id"))
    if current is not None and current.decode() == run_id:
        await redis.delete(keys.ACTIVE_PREFIX + thread)


async def last_summary(redis: Redis, thread: str) -> str | None:
    raw = await redis.get(keys.SUMMARY_PREFIX + thread)
    return raw.decode() if isinstance(raw, bytes) else raw


async def save_summary(redis: Redis, thread: str, summary: str) -> None:
    await redis.set(keys.SUMMARY_PREFIX + thread, summary[:4000], ex=SUMMARY_SECONDS)


@dataclass(frozen=True, slots=True)
class Kept:
    """The conversation a follow-up continues: its run, the checkout's base, what was pushed."""

    conversation_run_id: str
    base_sha: str
    published_sha: str | None = None
    attempt: str = ""  # the try of the run that made the conversation


async def kept(redis: Redis, thread: str) -> Kept | None:
    raw = await redis.get(keys.THREAD_PREFIX + thread)
    if raw is None:
        return None
    record: dict[str, str] = json.loads(raw)
    return Kept(
        record["conversation_run_id"],
        record["base_sha"],
        record.get("published_sha"),
        record.get("attempt", ""),
    )


async def keep(redis: Redis, thread: str, kept: Kept, seconds: float) -> None:
    record = {"conversation_run_id": kept.conversation_run_id, "base_sha": kept.base_sha}
    if kept.published_sha:
        record["published_sha"] = kept.published_sha
    if kept.attempt:
        record["attempt"] = kept.attempt
    await redis.set(keys.THREAD_PREFIX + thread, json.dumps(record), ex=int(seconds))


def kept_from(
    run: AgentRun, run_id: str, attempt: str, base_sha: str, published: str | None
) -> Kept:
    """What a follow-up continues: the conversation this run used (its own, or the one it
    resumed), on `base_sha`, with what was pushed."""
    if run.resumed is not None:
        return Kept(run.resumed.conversation_run_id, base_sha, published, run.resumed.attempt)
    return Kept(run_id, base_sha, published, attempt)
