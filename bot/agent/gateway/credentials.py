"""Per-run gateway credentials and usage in Redis: a random token minted when a run starts,
stored only as its hash with the run id, budget and an expiry, revoked when the run ends."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

from bot import keys

TOKEN_PREFIX = "ohgw-"  # recognisable in a leak scan; says nothing about the run


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Grant:
    """What a valid token entitles to: calls charged to `run_id`, up to `budget` USD."""

    run_id: str
    budget: float | None


@dataclass(frozen=True, slots=True)
class Usage:
    """What a run's LLM calls through the gateway have cost so far."""

    cost: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0

    def over(self, budget: float | None) -> bool:
        return budget is not None and self.cost >= budget


class Credentials:
    """Mint, check, charge and revoke run credentials; every key lives in bot/keys.py."""

    def __init__(self, redis: Redis, *, usage_seconds: int) -> None:
        self._redis = redis
        self._usage_seconds = usage_seconds  # how long a run's usage stays readable

    async def mint(self, run_id: str, budget: float | None, ttl_seconds: int) -> str:
        """A fresh token for `run_id`, valid for `ttl_seconds` unless revoked sooner."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        key = keys.GATEWAY_CREDENTIAL_PREFIX + _digest(token)
        fields = {"run_id": run_id, "budget": "" if budget is None else repr(float(budget))}
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=fields)
            pipe.expire(key, max(1, ttl_seconds))
            await pipe.execute()
        return token

    async def grant(self, token: str) -> Grant | None:
        """The grant behind `token`, or None for an unknown, revoked or expired one."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        key = keys.GATEWAY_CREDENTIAL_PREFIX + _digest(token)
        raw = await cast(Awaitable[dict[bytes, bytes]], self._redis.hgetall(key))
        if not raw or b"run_id" not in raw:
            return None
        budget = raw.get(b"budget", b"").decode()
        return Grant(raw[b"run_id"].decode(), float(budget) if budget else None)

    async def revoke(self, token: str) -> None:
        await self._redis.delete(keys.GATEWAY_CREDENTIAL_PREFIX + _digest(token))

    async def charge(
        self, run_id: str, cost: float, prompt_tokens: int, completion_tokens: int
    ) -> None:
        key = keys.GATEWAY_USAGE_PREFIX + run_id
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hincrbyfloat(key, "cost", cost)
            pipe.hincrby(key, "prompt_tokens", prompt_tokens)
            pipe.hincrby(key, "completion_tokens", completion_tokens)
            pipe.hincrby(key, "calls", 1)
            pipe.expire(key, self._usage_seconds)
            await pipe.execute()

    async def usage(self, run_id: str) -> Usage:
        key = keys.GATEWAY_USAGE_PREFIX + run_id
        raw = await cast(Awaitable[dict[bytes, bytes]], self._redis.hgetall(key))
        if not raw:
            return Usage()
        return Usage(
            cost=float(raw.get(b"cost", b"0")),
            prompt_tokens=int(raw.get(b"prompt_tokens", b"0")),
            completion_tokens=int(raw.get(b"completion_tokens", b"0")),
            calls=int(raw.get(b"calls", b"0")),
        )
