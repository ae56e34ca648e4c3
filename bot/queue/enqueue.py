"""Put tasks on the arq queue, batching concurrent enqueues into one atomic Redis script call.

A delivery is acknowledged only after Redis has executed the script that stored its job, so a 202
always means "queued". Batching keeps that promise while paying one round trip for many requests.
Every job is signed on its way in (`signing`): the worker refuses any it cannot verify.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import orjson
from arq.constants import default_queue_name, job_key_prefix, result_key_prefix
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import NoScriptError, RedisError

from bot import keys
from bot.errors import QueueUnavailable
from bot.queue import codec, signing
from bot.queue.tasks import Task, job_function, lines

EXPIRES_MS = 24 * 3600 * 1000  # as arq: a job not started within a day is dropped

# KEYS: the queue, and the workers' wake-up channel (published to, not a key).
# ARGV: now_ms, expires_ms, dedup_seconds, the job, result and delivery key prefixes, the
# turnstiles' line, seen and jobs key prefixes, then the batch as one JSON array of
# [job id, serialized job, run id, arrival ms, line names joined by newlines]: one argument for
# the client to encode and send, however many jobs (at a burst's rate, encoding five per job was
# a good part of the web process's time). The per-job keys are built here (one Redis, not a
# cluster). Mirrors arq's enqueue_job (skip when the job or its result exists) plus a long-lived
# delivery marker, so a redelivery days later is still a no-op. A queued run joins the lines of
# the turnstiles it will wait at (`turnstile`), by its arrival: a run queued later cannot take a
# place first because its worker happened to look first. A line's keys are given their expiry
# once per batch, however many of its runs the batch holds.
_ENQUEUE_LUA = """
local now = tonumber(ARGV[1])
local expires = tonumber(ARGV[2])
local dedup = tonumber(ARGV[3])
local job_prefix, result_prefix, delivery_prefix = ARGV[4], ARGV[5], ARGV[6]
local line_prefix, seen_prefix, jobs_prefix = ARGV[7], ARGV[8], ARGV[9]
local batch = cjson.decode(ARGV[10])
local out = {}
local touched = {}
local queued = false
for i, item in ipairs(batch) do
  local id, job, run, arrival, names = item[1], item[2], item[3], tonumber(item[4]), item[5]
  local jk, rk, dk = job_prefix .. id, result_prefix .. id, delivery_prefix .. id
  if redis.call('EXISTS', jk, rk, dk) > 0 then
    out[i] = 0
  else
    redis.call('SET', dk, now, 'EX', dedup)
    redis.call('PSETEX', jk, expires, job)
    redis.call('ZADD', KEYS[1], now, id)
    for name in string.gmatch(names, '[^\\n]+') do
      redis.call('ZADD', line_prefix .. name, 'NX', arrival, run)
      redis.call('ZADD', seen_prefix .. name, now, run)
      redis.call('HSET', jobs_prefix .. name, run, id)
      touched[name] = true
    end
    out[i] = 1
    queued = true
  end
end
for name in pairs(touched) do
  for _, prefix in ipairs({line_prefix, seen_prefix, jobs_prefix}) do
    redis.call('PEXPIRE', prefix .. name, expires)
  end
end
if queued then redis.call('PUBLISH', KEYS[2], '1') end
return out
"""
_ENQUEUE_SHA = hashlib.sha1(_ENQUEUE_LUA.encode()).hexdigest()  # what EVALSHA names it by

Outcome = Literal["queued", "duplicate"]


@dataclass(slots=True)
class _Pending:
    job_id: str
    payload: str  # the signed job (JSON after its MAC: ASCII and UTF-8 text)
    future: asyncio.Future[Outcome]
    run_id: str
    arrival_ms: int
    lines: str  # the turnstiles' names, one per line


class Enqueuer:
    """Coalesces concurrent enqueues into script calls, up to `max_in_flight` at once, so Redis
    and this process work at the same time rather than each waiting on the other: a burst sends
    every `eager_batch` requests as they are decided, and what gathers while every call is out
    goes in the next one (halved when another call could go out too)."""

    def __init__(
        self,
        redis: Redis,
        *,
        key: bytes,
        queue_name: str = default_queue_name,
        dedup_seconds: int = 7 * 24 * 3600,
        timeout: float = 5.0,
        max_batch: int = 256,
        max_in_flight: int = 4,
        eager_batch: int = 16,
    ) -> None:
        self._redis = redis
        self._key = key  # signing.Keys.queue
        self._queue = queue_name
        self._dedup = dedup_seconds
        self._timeout = timeout
        self._max_batch = max_batch
        self._eager_batch = eager_batch
        self._pending: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(max_in_flight)
        self._flushing: set[asyncio.Task[None]] = set()
        # Connections held for the script calls, one per call in flight: taking one from the
        # pool for each call costs a probe read with a zero timeout (a cancelled read and a
        # loop turn before the call is even sent), which dominated small batches.
        self._connections: list[Connection] = []

    async def enqueue(self, task: Task) -> Outcome:
        """Store the task's job with the run id as job id; "duplicate" when it already exists."""
        return await self.enqueue_job(task.run_id, task)

    async def enqueue_job(self, job_id: str, task: Task) -> Outcome:
        """Store the task's job under `job_id`; "duplicate" when it already exists."""
        arrival = int(time.time() * 1000)
        job = codec.job(job_function(task), task.model_dump(mode="json"), enqueue_ms=arrival)
        return await self.enqueue_raw(
            job_id, job, run_id=task.run_id, lines=lines(task), arrival_ms=arrival
        )

    async def enqueue_raw(
        self,
        job_id: str,
        payload: bytes,
        *,
        run_id: str | None = None,
        lines: Sequence[str] = (),
        arrival_ms: int = 0,
    ) -> Outcome:
        """Queue a serialized job (`codec.job`), signed here; resolves once Redis ran the script
        holding it. Its run (`run_id`, the job id by default) joins the turnstiles' `lines` by
        `arrival_ms` (the job's enqueue time, which the worker enters them by).

        No timer per request: the flusher bounds every script call, so each waiter is answered
        (stored, duplicate, or QueueUnavailable) within the queue's timeout per batch ahead.
        """
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush_forever(), name="enqueue-flusher")
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        pending = _Pending(
            job_id,
            signing.sign(self._key, payload).decode(),
            future,
            run_id or job_id,
            arrival_ms or int(time.time() * 1000),
            "\n".join(lines),
        )
        self._pending.append(pending)
        if len(self._pending) >= self._eager_batch and not self._slots.locked():
            # A burst: this many already make a batch worth a call, and the requests decided
            # in this same loop turn would otherwise all wait for the turn's end to be sent.
            # The call starts now (an eager task writes it before it first waits), so Redis
            # stores these while this process decides the rest of the burst.
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            if self._pending:
                self._wakeup.set()
            self._launch(self._send_now(batch), eager=True)
        else:
            self._wakeup.set()
        return await future

    async def _send_now(self, batch: list[_Pending]) -> None:
        await self._slots.acquire()  # free: taken at once
        await self._flush_then_release(batch)

    async def _flush_forever(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                await self._slots.acquire()  # meanwhile, more requests join the next batch
                size = self._max_batch
                if not self._slots.locked():
                    # another call can go out now too: send half of what gathered
                    size = min(size, max((len(self._pending) + 1) // 2, 8))
                batch = self._pending[:size]
                del self._pending[:size]
                self._launch(self._flush_then_release(batch))

    def _launch(self, call: Coroutine[Any, Any, None], *, eager: bool = False) -> None:
        """Run a batch's call as a task `close` can wait for (eager: up to its first wait now)."""
        flush = asyncio.Task(call, loop=asyncio.get_running_loop(), eager_start=eager)
        self._flushing.add(flush)
        flush.add_done_callback(self._flushing.discard)

    async def _flush_then_release(self, batch: list[_Pending]) -> None:
        try:
            await self._flush(batch)
        finally:
            self._slots.release()
            if self._pending:
                self._wakeup.set()

    async def _flush(self, batch: list[_Pending]) -> None:
        script_keys = [self._queue, keys.QUEUE_WAKE]
        args: list[Any] = [
            int(time.time() * 1000),
            EXPIRES_MS,
            self._dedup,
            job_key_prefix,
            result_key_prefix,
            keys.DELIVERY_PREFIX,
            keys.TURN_LINE_PREFIX,
            keys.TURN_SEEN_PREFIX,
            keys.TURN_JOBS_PREFIX,
        ]
        args.append(
            orjson.dumps(
                [(i.job_id, i.payload, i.run_id, str(i.arrival_ms), i.lines) for i in batch]
            )
        )
        try:
            results = await asyncio.wait_for(self._call(script_keys, args), self._timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(QueueUnavailable(f"Redis unavailable: {exc}"))
            return
        for item, stored in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result("queued" if stored else "duplicate")

    async def _call(self, script_keys: list[str], args: list[Any]) -> list[int]:
        """Run the script on a held connection (EVALSHA, then EVAL once Redis lacks it)."""
        pool = self._redis.connection_pool
        connection = self._connections.pop() if self._connections else await pool.get_connection()
        try:
            try:
                await connection.send_command("EVALSHA", _ENQUEUE_SHA, 2, *script_keys, *args)
                reply = await connection.read_response()
            except NoScriptError:
                await connection.send_command("EVAL", _ENQUEUE_LUA, 2, *script_keys, *args)
                reply = await connection.read_response()
        except BaseException:
            # A call cut short leaves its reply unread: start the next one on a fresh socket.
            await connection.disconnect()
            raise
        finally:
            self._connections.append(connection)
        return cast(list[int], reply)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for flush in list(self._flushing):  # batches already sent are answered, or failed
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(flush, self._timeout)
        for item in self._pending:
            if not item.future.done():
                item.future.set_exception(QueueUnavailable("the web process is shutting down"))
        self._pending.clear()
        while self._connections:
            await self._redis.connection_pool.release(self._connections.pop())
