"""One record per run, whatever started it, kept in Redis for the retention: the run API, the
runs page and the completion callback all read it."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable
from enum import StrEnum
from typing import Any, cast

from arq.constants import job_key_prefix
from pydantic import BaseModel, Field, ValidationError
from redis.asyncio import Redis

from bot import keys
from bot.queue import codec

log = logging.getLogger(__name__)

MAX_LOG_LINES = 500
HIDDEN = ("callback_api_key",)  # stored for the callback, never shown


class RunStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


FINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class UnreadableRecord(ValueError):
    """A stored run hash that is not a record (hand-edited, truncated, or an older format)."""


class RunError(BaseModel):
    code: str
    detail: str = ""


class RunRecord(BaseModel):
    """What the API and the runs page show about a run."""

    run_id: str
    kind: str  # mention, review, automation
    trigger: str  # issue_comment, review_comment, label, pull_request, schedule, api
    repo: str
    number: int | None = None
    automation: str | None = None
    sender: str | None = None
    job_id: str | None = None  # the arq job, when not the run id
    status: RunStatus = RunStatus.PENDING
    outcome: str | None = None  # what it did: published, answered, reviewed, skipped: draft, ...
    created_at: float = Field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    cost: float = 0.0
    conversation_id: str | None = None
    error: RunError | None = None
    links: dict[str, str] = Field(default_factory=dict)
    callback_url: str | None = None
    callback_run_id: str | None = None  # the id the callback reports, when not `run_id`
    callback_status: str | None = None  # delivered, rejected (4xx), gave up

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.finished_at or time.time()) - self.started_at

    def public(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude={"callback_url", "callback_run_id"})
        data["duration"] = self.duration
        data["has_callback"] = self.callback_url is not None
        return data


# Move a run to a new status only from the statuses given; store its fields at the same time.
# KEYS: run hash. ARGV: new status, comma-separated allowed statuses, then field/value pairs.
_TRANSITION_LUA = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return false end
local allowed = ',' .. ARGV[2] .. ','
if not string.find(allowed, ',' .. current .. ',', 1, true) then return current end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 'OK'
"""


def _encode(value: Any) -> str:
    return json.dumps(value)


def _fields(values: dict[str, Any]) -> list[str]:
    flat: list[str] = []
    for key, value in values.items():
        flat += [key, _encode(value)]
    return flat


class RunStore:
    """Run records: a hash per run (JSON-encoded fields) and an index by creation time."""

    def __init__(self, redis: Redis, retention_seconds: int) -> None:
        self._redis = redis
        self._retention = retention_seconds
        self._transition = redis.register_script(_TRANSITION_LUA)

    @property
    def redis(self) -> Redis:
        return self._redis

    async def create(self, record: RunRecord, *, secret: str | None = None) -> bool:
        """Store a new record; False when the run id already has one (a re-executed job)."""
        key = keys.RUN_PREFIX + record.run_id
        data = record.model_dump(mode="json")
        mapping = {k: _encode(v) for k, v in data.items() if k != "status"}
        mapping["status"] = record.status.value
        if secret:
            mapping["callback_api_key"] = _encode(secret)
        if not await cast(Awaitable[int], self._redis.hsetnx(key, "status", record.status.value)):
            return False
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=mapping)
            pipe.expire(key, self._retention)
            pipe.zadd(keys.RUN_INDEX, {record.run_id: record.created_at})
            pipe.zremrangebyscore(keys.RUN_INDEX, "-inf", time.time() - self._retention)
            await pipe.execute()
        return True

    async def delete(self, run_id: str) -> None:
        """Forget a record that never became a run (its job could not be queued)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.RUN_PREFIX + run_id, keys.RUN_LOG_PREFIX + run_id)
            pipe.zrem(keys.RUN_INDEX, run_id)
            await pipe.execute()

    async def get(self, run_id: str) -> RunRecord | None:
        raw = await cast(
            Awaitable[dict[bytes, bytes]], self._redis.hgetall(keys.RUN_PREFIX + run_id)
        )
        return _decode(raw)

    async def get_or_queued(self, run_id: str) -> RunRecord | None:
        """The run's record or, for a delivery still waiting in the queue (its record is written
        when a worker picks it up), a PENDING record read from the queued job."""
        record = await self.get(run_id)
        if record is not None:
            return record
        raw = await cast(Awaitable[bytes | None], self._redis.get(job_key_prefix + run_id))
        if raw is None:
            return None
        try:
            job = codec.loads(raw)
            task = job["a"][0]
            repo = f"{task['repo']['owner']}/{task['repo']['name']}"
            kind = task["kind"]
        except (ValueError, KeyError, IndexError, TypeError):
            return None  # not a run's job (a callback, a cron tick) or not ours
        if kind not in ("mention", "review", "automation"):
            return None
        return RunRecord(
            run_id=run_id,
            kind=kind,
            trigger=task.get("trigger") or "pull_request",
            repo=repo,
            number=task.get("number") or task.get("issue"),
            automation=task.get("automation"),
            sender=task.get("sender"),
            created_at=job.get("et", 0) / 1000,
        )

    async def callback_key(self, run_id: str) -> str | None:
        raw = await cast(
            Awaitable[bytes | None], self._redis.hget(keys.RUN_PREFIX + run_id, "callback_api_key")
        )
        return json.loads(raw) if raw else None

    async def transition(
        self, run_id: str, to: RunStatus, allowed: set[RunStatus], **values: Any
    ) -> bool:
        """Move `run_id` to `to` if its status is one of `allowed`; True when it moved."""
        args = [to.value, ",".join(s.value for s in allowed), *_fields(values)]
        result = await self._transition(keys=[keys.RUN_PREFIX + run_id], args=args)
        return result in (b"OK", "OK")

    async def update(self, run_id: str, **values: Any) -> None:
        if values:
            await cast(
                Awaitable[int],
                self._redis.hset(
                    keys.RUN_PREFIX + run_id, mapping={k: _encode(v) for k, v in values.items()}
                ),
            )

    async def log(self, run_id: str, message: str) -> None:
        """Append a line to the run's log (phases, progress, the outcome)."""
        key = keys.RUN_LOG_PREFIX + run_id
        line = json.dumps({"t": time.time(), "m": message[:2000]})
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.rpush(key, line)
            pipe.ltrim(key, -MAX_LOG_LINES, -1)
            pipe.expire(key, self._retention)
            await pipe.execute()

    async def read_log(self, run_id: str) -> list[dict[str, Any]]:
        lines = await cast(
            Awaitable[list[bytes]], self._redis.lrange(keys.RUN_LOG_PREFIX + run_id, 0, -1)
        )
        return [entry for line in lines if (entry := _log_line(line)) is not None]

    async def recent(
        self,
        *,
        repo: str | None = None,
        status: str | None = None,
        kind: str | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:
        """Newest first, filtered; looks through at most the last 2,000 runs."""
        ids: list[bytes] = await self._redis.zrevrange(keys.RUN_INDEX, 0, 1999)
        found: list[RunRecord] = []
        for start in range(0, len(ids), 100):  # one round trip per hundred runs
            async with self._redis.pipeline(transaction=False) as pipe:
                for raw_id in ids[start : start + 100]:
                    pipe.hgetall(keys.RUN_PREFIX + raw_id.decode())
                rows: list[dict[bytes, bytes]] = await pipe.execute()
            for raw_id, row in zip(ids[start : start + 100], rows, strict=True):
                try:
                    record = _decode(row)
                except UnreadableRecord as exc:  # one bad record must not hide all the others
                    log.warning("skipped unreadable run record %r: %s", raw_id, exc)
                    continue
                if record is None:
                    continue  # expired: its index entry goes with the next prune
                if repo and record.repo.lower() != repo.lower():
                    continue
                if status and record.status.value != status.upper():
                    continue
                if kind and record.kind != kind:
                    continue
                found.append(record)
                if len(found) >= limit:
                    return found
        return found


def _decode(raw: dict[bytes, bytes]) -> RunRecord | None:
    """A run hash as stored (JSON-encoded fields, `status` plain) → its record; secrets left out.
    None when there is no record; UnreadableRecord when there is one that cannot be read."""
    if not raw or b"run_id" not in raw:
        return None
    data: dict[str, Any] = {}
    try:
        for key, value in raw.items():
            name = key.decode()
            if name in HIDDEN:
                continue
            data[name] = value.decode() if name == "status" else json.loads(value)
        return RunRecord.model_validate(data)
    except (UnicodeDecodeError, json.JSONDecodeError, ValidationError) as exc:
        raise UnreadableRecord(str(exc).splitlines()[0][:200]) from exc


def _log_line(raw: bytes) -> dict[str, Any] | None:
    """One stored log line, or None (logged) when it is not one."""
    try:
        entry = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        entry = None
    if (
        isinstance(entry, dict)
        and isinstance(entry.get("t"), int | float)
        and isinstance(entry.get("m"), str)
    ):
        return entry
    log.warning("skipped unreadable run log line %r", raw[:200])
    return None
