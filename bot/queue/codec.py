"""Jobs and results on the queue as JSON, never pickle: whatever can write to Redis (in `local`
mode that may include the agent's own host) must not be able to make a worker run code."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from arq.jobs import serialize_job

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
    """arq's deserializer: plain data only, exceptions come back as safe stand-ins."""
    data = orjson.loads(raw)
    if isinstance(data, dict):
        result = data.get("r")
        if isinstance(result, dict) and _EXCEPTION in result:
            data["r"] = _exception(result)
    return data


def job(function: str, *args: Any) -> bytes:
    """A serialized arq job, ready for `Enqueuer.enqueue_raw`."""
    return serialize_job(function, args, {}, None, int(time.time() * 1000), serializer=dumps)
