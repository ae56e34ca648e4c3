"""Jobs and results on the queue as JSON, never pickle, and signed: whatever can write to Redis (in
`local` mode that may include the agent's own host) must not be able to make a worker run code,
nor run a job the bot did not queue."""

from __future__ import annotations

import asyncio
import logging
import time
from contextvars import ContextVar
from typing import Any

import orjson
from arq.jobs import serialize_job

from bot import logs
from bot.queue import signing

log = logging.getLogger(__name__)
REFUSED = "refused a job that is not signed by this bot"
EXPIRED = "refused a signed job queued too long ago to be a live one"
# The MAC of the job this task loaded (arq loads and runs each job in one task of its own): the
# job remembers it as used, so a copy under another job id is refused (`jobs.context`).
loaded_mac: ContextVar[str | None] = ContextVar("loaded_mac", default=None)
# A job older than this is no live one (arq drops unstarted jobs after a day; retries and turns
# keep a job for hours at most): its MAC need not be remembered longer.
REPLAY_WINDOW_SECONDS = 7 * 24 * 3600

_EXCEPTION = "__exception__"


def _other(value: Any) -> Any:
    # arq stores a failed job's exception as its result; keep its type name and message only.
    if isinstance(value, BaseException):
        return {_EXCEPTION: type(value).__name__, "message": str(value)}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> bytes:
    """arq's serializer: a job or a result as JSON."""
    return orjson.dumps(value, default=_other)


def _exception(data: dict[str, Any]) -> BaseException:
    if data.get(_EXCEPTION) == "CancelledError":
        return asyncio.CancelledError(data.get("message", ""))  # arq reads it as "aborted"
    return RuntimeError(f"{data.get(_EXCEPTION)}: {data.get('message', '')}")


def loads(raw: bytes) -> Any:
    """Plain data only, exceptions come back as safe stand-ins. A signed value is read without
    checking its signature: for showing a job or a result, never for deciding what runs."""
    data = orjson.loads(signing.strip(raw))
    if isinstance(data, dict):
        result = data.get("r")
        if isinstance(result, dict) and _EXCEPTION in result:
            data["r"] = _exception(result)
    return data


def job(function: str, *args: Any, enqueue_ms: int | None = None) -> bytes:
    """A serialized arq job, ready for `Enqueuer.enqueue_raw`."""
    when = int(time.time() * 1000) if enqueue_ms is None else enqueue_ms
    return serialize_job(function, args, {}, None, when, serializer=dumps)


class Signed:
    """The worker's codec (arq's `job_serializer` / `job_deserializer`): everything arq writes is
    signed (results, and the cron jobs it queues itself), and a job whose signature is missing or
    wrong fails to load, so arq fails it without looking up, let alone running, its function."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def dumps(self, value: Any) -> bytes:
        return signing.sign(self._key, dumps(value))

    def loads(self, raw: bytes) -> Any:
        job_id = logs.context().get("job_id", "?")
        try:
            payload = signing.verified(self._key, raw)
        except signing.Unsigned:
            # arq runs each job in a task of its own, with the job id bound (LeasedWorker).
            log.error("%s (job %s)", REFUSED, job_id)
            raise
        data = loads(payload)
        if isinstance(data, dict) and "f" in data and "et" in data:  # a job, not a result
            queued = data.get("et")
            age = time.time() - (queued / 1000 if isinstance(queued, int) else 0)
            if age > REPLAY_WINDOW_SECONDS:
                log.error("%s (job %s)", EXPIRED, job_id)
                raise signing.Unsigned("queued too long ago")
            loaded_mac.set(signing.strip_mac(raw))
        return data
