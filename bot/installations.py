"""Which installation covers a repository: recorded from deliveries and resyncs, read by the run
API, the scheduler and every job (plain repository webhooks do not name their installation)."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import cast

from redis.asyncio import Redis

from bot import keys


def _names(values: Iterable[bytes | str]) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else v for v in values]


async def get(redis: Redis, repo: str) -> int | None:
    """The installation recorded for `owner/name`, if any."""
    recorded = await cast(Awaitable[bytes | None], redis.hget(keys.REPO_INSTALLATION, repo.lower()))
    return int(recorded) if recorded is not None else None


async def every(redis: Redis) -> dict[str, int]:
    """Every recorded repository (lower-cased) and its installation."""
    raw = await cast(Awaitable[dict[bytes, bytes]], redis.hgetall(keys.REPO_INSTALLATION))
    return {k.decode(): int(v) for k, v in raw.items()}


async def record(redis: Redis, installation_id: int, repos: list[str]) -> None:
    """`repos` are covered by `installation_id`."""
    if not repos:
        return
    names = [r.lower() for r in repos]
    await cast(
        Awaitable[int],
        redis.hset(keys.REPO_INSTALLATION, mapping=dict.fromkeys(names, installation_id)),
    )
    await cast(
        Awaitable[int], redis.sadd(keys.INSTALLATION_REPOS_PREFIX + str(installation_id), *names)
    )


async def remove(redis: Redis, installation_id: int, repos: list[str]) -> None:
    """`repos` are no longer covered by `installation_id`."""
    if not repos:
        return
    names = [r.lower() for r in repos]
    await cast(
        Awaitable[int], redis.srem(keys.INSTALLATION_REPOS_PREFIX + str(installation_id), *names)
    )
    await cast(Awaitable[int], redis.hdel(keys.REPO_INSTALLATION, *names))


async def forget(redis: Redis, installation_id: int, also: list[str]) -> list[str]:
    """The installation is gone: forget it and its repositories (plus `also`); return them."""
    members = keys.INSTALLATION_REPOS_PREFIX + str(installation_id)
    names = _names(await cast(Awaitable[set[bytes]], redis.smembers(members))) + also
    if names:
        await cast(Awaitable[int], redis.hdel(keys.REPO_INSTALLATION, *[n.lower() for n in names]))
    await redis.delete(members)
    return names
