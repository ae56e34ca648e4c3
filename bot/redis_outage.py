"""The one way a long-lived Redis client rides out an outage (the worker's arq pool, the gateway
process): a command that meets a dropped or refused connection retries with back-off capped at
5 s for about REDIS_OUTAGE_SECONDS, then fails."""

from __future__ import annotations

import math

from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.config import Settings

CAP_SECONDS = 5.0
# OSError: a refused connect, which redis-py raises outside its command retry.
RETRY_ON = [RedisConnectionError, RedisTimeoutError, OSError]


def tries(settings: Settings) -> int:
    return math.ceil(settings.redis_outage_seconds / CAP_SECONDS) + 4  # +4: the short first waits


def retry(settings: Settings) -> Retry:
    return Retry(ExponentialBackoff(cap=CAP_SECONDS, base=0.25), tries(settings))
