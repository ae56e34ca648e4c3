"""Content writes paced per installation as GitHub's secondary rate limits ask, across every
worker process through Redis: one at a time, at most N per window, none while GitHub said wait.

GitHub's rules (docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-
secondary-rate-limits and .../best-practices-for-using-the-rest-api): no more than 80
content-generating requests a minute and 500 an hour; requests for one client made serially,
not concurrently; after a `Retry-After` (or a secondary-limit 403/429) wait that long. A write
on an idle installation goes out at once: pacing only ever waits when a rule says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Generator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from typing import Any

import httpx
from githubkit.exception import SecondaryRateLimitExceeded
from githubkit.response import Response
from githubkit.throttling import BaseThrottler
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot import keys

log = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
LOCKED = -1  # the script's answer while another write of the installation is in flight
# A write waiting for the lock blocks on the installation's wake-up list, which each release
# pushes to (Redis hands it to the longest waiter first); it looks again after this long anyway,
# in case the holder died and its lock ran out instead.
LOCK_RECHECK_SECONDS = 0.25

# KEYS: the installation's write log (sorted set, ms), its lock, its "blocked until" (ms).
# ARGV: a unique token, the lock's life (ms), then (limit, window ms) pairs.
# Answers 0 (admitted: logged and locked), LOCKED, or the ms to wait before asking again.
# The clock is Redis's own, so every process counts on the same one.
_ADMIT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local blocked = tonumber(redis.call('GET', KEYS[3]) or '0')
if blocked > now then return blocked - now end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local wait = 0
local longest = 1
for i = 3, #ARGV - 1, 2 do
  local limit = tonumber(ARGV[i])
  local window = tonumber(ARGV[i + 1])
  if window > longest then longest = window end
  local since = '(' .. (now - window)
  local n = redis.call('ZCOUNT', KEYS[1], since, '+inf')
  if n >= limit then
    local oldest = redis.call(
      'ZRANGEBYSCORE', KEYS[1], since, '+inf', 'WITHSCORES', 'LIMIT', n - limit, 1)
    local w = tonumber(oldest[2]) + window - now
    if w > wait then wait = w end
  end
end
if wait > 0 then return math.max(wait, 1) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - longest)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], longest)
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 0
"""

# Release the lock only if this write still holds it (its life may have run out meanwhile), and
# leave one wake-up (never a pile of them) for the next waiting write.
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('RPUSH', KEYS[2], '1')
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""

# Push "blocked until" later, never earlier: now + ARGV[1] ms, by Redis's clock.
_BLOCK_LUA = """
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > current then redis.call('SET', KEYS[1], until_ms, 'PX', ARGV[1]) end
return until_ms
"""


class WritePaced(SecondaryRateLimitExceeded):
    """The installation may not write for longer than a job should wait: surfaced like GitHub's
    own secondary limit (same `retry_after`), so callers sort it the same way (a transient
    failure; the job runs again later). No request was sent."""

    def __init__(self, request: httpx.Request, wait: float) -> None:
        seconds = max(int(wait + 0.999), 1)
        raw = httpx.Response(429, headers={"retry-after": str(seconds)}, request=request)
        super().__init__(Response(raw, Any), timedelta(seconds=seconds))


class WritePacer(BaseThrottler):
    """githubkit's throttler hook: each content write of one installation waits for its turn."""

    def __init__(
        self,
        redis: Redis,
        installation_id: int,
        limits: Sequence[tuple[int, float]],
        *,
        max_wait: float,
        lock_seconds: float,
    ) -> None:
        self._redis = redis
        self._keys = [
            f"{keys.WRITE_LOG_PREFIX}{installation_id}",
            f"{keys.WRITE_LOCK_PREFIX}{installation_id}",
            f"{keys.WRITE_BLOCK_PREFIX}{installation_id}",
        ]
        self._wake = f"{keys.WRITE_WAKE_PREFIX}{installation_id}"
        self._limits = [v for count, window in limits for v in (count, int(window * 1000))]
        self._max_wait = max_wait
        self._lock_ms = int(lock_seconds * 1000)
        self._admit = redis.register_script(_ADMIT_LUA)
        self._release = redis.register_script(_RELEASE_LUA)

    async def turn(self, request: httpx.Request) -> str:
        """Wait until this write may go out, holding the installation's write lock; its token."""
        token = uuid.uuid4().hex
        waited = 0.0
        while True:
            answer = int(
                await self._admit(keys=self._keys, args=[token, self._lock_ms, *self._limits])
            )
            if answer == 0:
                return token
            if answer == LOCKED:
                # Redis takes a fractional timeout since 6.0; redis-py's stubs say int.
                await self._redis.blpop([self._wake], LOCK_RECHECK_SECONDS)  # type: ignore[arg-type,misc]
                continue
            delay = answer / 1000
            if waited + delay > self._max_wait:
                raise WritePaced(request, delay)
            await asyncio.sleep(delay)
            waited += delay

    async def done(self, token: str) -> None:
        try:
            await self._release(keys=[self._keys[1], self._wake], args=[token, self._lock_ms])
        except (RedisError, OSError) as exc:  # the lock runs out on its own
            log.warning("could not release the write lock: %s", type(exc).__name__)

    @contextmanager
    def acquire(self, request: httpx.Request) -> Generator[None, Any, Any]:
        yield  # the bot only uses the async client

    @asynccontextmanager
    async def async_acquire(self, request: httpx.Request) -> AsyncGenerator[None, Any]:
        if request.method not in WRITE_METHODS:
            yield
            return
        token = await self.turn(request)
        try:
            yield
        finally:
            await self.done(token)


def retry_after_of(response: httpx.Response) -> float | None:
    """How long GitHub asked us to hold off, when this answer is a rate limit (as githubkit
    tells them apart: a `Retry-After`, or `x-ratelimit-remaining: 0` with its reset)."""
    if response.status_code not in (403, 429):
        return None
    headers = response.headers
    if "retry-after" in headers:
        try:
            return max(float(headers["retry-after"]), 0.0)
        except ValueError:
            return 60.0
    if headers.get("x-ratelimit-remaining") == "0":
        try:
            return max(float(headers["x-ratelimit-reset"]) - time.time(), 0.0)
        except (KeyError, ValueError):
            return 60.0
    return None


class RateLimitBlocker:
    """An httpx response hook: a rate-limited answer holds every worker's writes of the
    installation for as long as GitHub asked (secondary limits punish retrying early)."""

    def __init__(self, redis: Redis, installation_id: int) -> None:
        self._key = f"{keys.WRITE_BLOCK_PREFIX}{installation_id}"
        self._block = redis.register_script(_BLOCK_LUA)

    async def __call__(self, response: httpx.Response) -> None:
        wait = retry_after_of(response)
        if wait is None or wait <= 0:
            return
        try:
            await self._block(keys=[self._key], args=[int(wait * 1000)])
        except (RedisError, OSError) as exc:  # githubkit still waits out this one
            log.warning("could not record a GitHub rate limit: %s", type(exc).__name__)
