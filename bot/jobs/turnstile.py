"""A first-come-first-served semaphore in Redis, shared by every worker: at most `capacity` runs
hold a place, the others wait in a line ordered by arrival, and a run that leaves wakes the next.

A waiting run holds no worker slot: its job is deferred and enters again later. A place is held
until it is left or `hold_ms` passes (a crashed worker's place frees itself); a waiter not seen
for `stale_ms` (its job lost, cancelled or starved of a worker) is passed over, and takes its
place in the line again by its arrival when it comes back."""

from __future__ import annotations

from dataclasses import dataclass

from arq.constants import default_queue_name
from redis.asyncio import Redis

from bot import keys

# KEYS: holders (run → hold expiry ms), line (run → arrival ms), seen (run → last seen ms),
# jobs (run → its arq job id). ARGV: run, job, capacity, now ms, hold ms, arrival ms, stale ms.
# Returns {1} when the run holds a place, else {0, holders...}.
_ENTER_LUA = """
local holders, line, seen, jobs = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local run, job = ARGV[1], ARGV[2]
local capacity, now, hold = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local arrival, stale = tonumber(ARGV[6]), tonumber(ARGV[7])
local function forget(member)
  redis.call('ZREM', line, member)
  redis.call('ZREM', seen, member)
  redis.call('HDEL', jobs, member)
end
local function take()
  redis.call('ZADD', holders, now + hold, run)
  redis.call('PEXPIRE', holders, hold)
  forget(run)
  return {1}
end
redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
if redis.call('ZSCORE', holders, run) then return take() end
redis.call('ZADD', line, 'NX', arrival, run)
redis.call('ZADD', seen, now, run)
redis.call('HSET', jobs, run, job)
for _, key in ipairs({line, seen, jobs}) do redis.call('PEXPIRE', key, hold) end
local free = capacity - redis.call('ZCARD', holders)
if free > 0 then
  local ahead = 0
  for _, other in ipairs(redis.call('ZRANGE', line, 0, -1)) do
    if other == run then break end
    local last = redis.call('ZSCORE', seen, other)
    if (not last) or tonumber(last) < now - stale then
      forget(other)
    else
      ahead = ahead + 1
      if ahead >= free then break end
    end
  end
  if ahead < free then return take() end
end
local out = {0}
for _, holder in ipairs(redis.call('ZRANGE', holders, 0, -1)) do out[#out + 1] = holder end
return out
"""

# KEYS: holders, line, seen, jobs, arq's queue. ARGV: run, capacity, now ms, stale ms.
# Leaves the place or the line, then moves the jobs of the waiters now first in line to the
# front of arq's queue (only if they are in it), so they enter at once instead of at their
# next poll.
_LEAVE_LUA = """
local holders, line, seen, jobs, queue = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local run = ARGV[1]
local capacity, now, stale = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREM', holders, run)
redis.call('ZREM', line, run)
redis.call('ZREM', seen, run)
redis.call('HDEL', jobs, run)
redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
local free = capacity - redis.call('ZCARD', holders)
local woken = 0
for _, other in ipairs(redis.call('ZRANGE', line, 0, -1)) do
  if woken >= free then break end
  local last = redis.call('ZSCORE', seen, other)
  if last and tonumber(last) >= now - stale then
    local job = redis.call('HGET', jobs, other)
    if job then redis.call('ZADD', queue, 'XX', now, job) end
    woken = woken + 1
  end
end
if woken > 0 then redis.call('PUBLISH', ARGV[5], '1') end
return woken
"""


@dataclass(frozen=True, slots=True)
class Turnstile:
    """One semaphore: `name` (e.g. `thread:owner/repo#7`) and how many runs it lets in."""

    name: str
    capacity: int
    hold_ms: int
    stale_ms: int

    def keys(self) -> list[str]:
        return [
            keys.TURN_HOLDERS_PREFIX + self.name,
            keys.TURN_LINE_PREFIX + self.name,
            keys.TURN_SEEN_PREFIX + self.name,
            keys.TURN_JOBS_PREFIX + self.name,
        ]


async def enter(
    redis: Redis, gate: Turnstile, run_id: str, job_id: str, *, arrival_ms: int, now_ms: int
) -> list[str] | None:
    """Take a place (None), or join the line and get the runs holding the places (to wait)."""
    script = redis.register_script(_ENTER_LUA)
    args: list[str | int] = [
        run_id,
        job_id,
        gate.capacity,
        now_ms,
        gate.hold_ms,
        arrival_ms,
        gate.stale_ms,
    ]
    result = await script(keys=gate.keys(), args=args)
    if int(result[0]) == 1:
        return None
    return [h.decode() if isinstance(h, bytes) else str(h) for h in result[1:]]


async def leave(
    redis: Redis, gate: Turnstile, run_id: str, *, now_ms: int, queue: str = default_queue_name
) -> int:
    """Give up the place (or the place in line); wake the waiters now first. Returns how many."""
    script = redis.register_script(_LEAVE_LUA)
    args: list[str | int] = [run_id, gate.capacity, now_ms, gate.stale_ms, keys.QUEUE_WAKE]
    woken = await script(keys=[*gate.keys(), queue], args=args)
    return int(woken)


async def holders(redis: Redis, gate: Turnstile) -> list[str]:
    """The runs holding a place now (expired holds included until the next enter or leave)."""
    raw: list[bytes] = await redis.zrange(keys.TURN_HOLDERS_PREFIX + gate.name, 0, -1)
    return [h.decode() for h in raw]
