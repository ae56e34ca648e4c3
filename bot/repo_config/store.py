"""The last valid `.openhands/config.yml` of each repository, kept in Redis: a broken version
never replaces it, and the scheduler reads automations from it."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from pydantic import ValidationError
from redis.asyncio import Redis

from bot import keys
from bot.repo_config.schema import RepoConfig


@dataclass(frozen=True, slots=True)
class Stored:
    """The configuration in effect for a repository, and the file version it came from."""

    sha: str | None
    config: RepoConfig


async def load(redis: Redis, repo: str) -> Stored:
    """The last valid configuration (defaults when the repository has none)."""
    raw = await redis.get(keys.CONFIG_PREFIX + repo.lower())
    if raw is None:
        return Stored(None, RepoConfig())
    record = json.loads(raw)
    try:
        return Stored(record.get("sha"), RepoConfig.model_validate(record["config"]))
    except (ValidationError, KeyError):  # stored by an older version of the bot
        return Stored(None, RepoConfig())


def last_slot_key(repo: str, name: str) -> str:
    return f"{keys.AUTOMATION_LAST_PREFIX}{repo.lower()}:{name.lower()}"


async def store(
    redis: Redis, repo: str, sha: str | None, config: RepoConfig, *, read_at: datetime
) -> None:
    """Keep `config` (read at `read_at`) as the repository's configuration in effect."""
    key = repo.lower()
    # An automation that leaves the file, or is switched off, forgets its schedule: added back
    # (or on), it waits for its next slot like a new one instead of catching up on the time it
    # was gone.
    kept = {a.name.lower() for a in config.automations if a.enabled}
    gone = [
        a.name for a in (await load(redis, repo)).config.automations if a.name.lower() not in kept
    ]
    gone += [a.name for a in config.automations if not a.enabled]
    if gone:
        await redis.delete(*[last_slot_key(repo, name) for name in gone])
    # A new one counts from when this file was read: the first slot after that runs, even when
    # the scheduler's next tick comes after it.
    for automation in config.automations:
        if automation.enabled:
            slot_key = last_slot_key(repo, automation.name)
            await redis.set(slot_key, int(read_at.timestamp()), nx=True)
    record = {"sha": sha, "config": config.model_dump(mode="json")}
    await redis.set(keys.CONFIG_PREFIX + key, json.dumps(record))
    if config.automations:
        await cast(Awaitable[int], redis.sadd(keys.CONFIG_REPOS, key))
    else:
        await cast(Awaitable[int], redis.srem(keys.CONFIG_REPOS, key))


async def forget(redis: Redis, repo: str) -> None:
    """The App no longer covers the repository."""
    await redis.delete(keys.CONFIG_PREFIX + repo.lower())
    await cast(Awaitable[int], redis.srem(keys.CONFIG_REPOS, repo.lower()))
