"""Which automations are due: run every minute by each worker's cron, and safe to run in many
workers at once (one job id per repository, automation and slot; one catch-up after downtime)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from redis.asyncio import Redis

from bot import installations, keys
from bot.jobs import context
from bot.queue.enqueue import Enqueuer
from bot.queue.tasks import AutomationTask, RepoRef
from bot.repo_config import store
from bot.runs.outcome import Done, RunOutcome

log = logging.getLogger(__name__)

SLOT_FORMAT = "%Y%m%dT%H%MZ"

# Advance the last slot only forwards; 1 when this caller moved it.
# KEYS: the automation's last-slot key. ARGV: the slot (epoch seconds).
_ADVANCE_LUA = """
local current = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Due:
    job_id: str
    task: AutomationTask
    queued: bool


def job_id(repo: str, name: str, slot: datetime) -> str:
    """`repo:automation:slot`: every worker computes the same id for the same run."""
    return f"{repo.lower()}:{name}:{slot.strftime(SLOT_FORMAT)}"


def run_id_for(job: str) -> str:
    return "sched-" + hashlib.sha256(job.encode()).hexdigest()[:20]


async def tick(
    redis: Redis,
    enqueuer: Enqueuer,
    covered: dict[str, int],
    now: datetime,
) -> list[Due]:
    """Queue every automation whose latest slot (at or before `now`) has not been claimed.

    A new automation counts from when its file was read (`store.store` marks it then), so the
    first slot after that runs, however late this tick comes; a schedule that was due before the
    bot knew of it does not run at once. One stored by an older version of the bot, unmarked,
    counts from `now`. After downtime, only the latest missed slot runs (the catch-up), not one
    run per missed slot."""
    now = now.astimezone(UTC)
    advance = redis.register_script(_ADVANCE_LUA)
    due: list[Due] = []
    members = await cast(Awaitable[set[bytes]], redis.smembers(keys.CONFIG_REPOS))
    for raw in sorted(members):
        repo = raw.decode() if isinstance(raw, bytes) else str(raw)
        stored = await store.load(redis, repo)
        for automation in stored.config.automations:
            key = store.last_slot_key(repo, automation.name)
            if not automation.enabled:  # re-enabled later, it starts afresh (no catch-up)
                await redis.delete(key)
                continue
            last_raw = await redis.get(key)
            if last_raw is None:
                await redis.set(key, int(now.timestamp()), nx=True)
                continue
            last = datetime.fromtimestamp(int(last_raw), UTC)
            slot = automation.parsed_schedule().latest(now, after=last)
            if slot is None:
                continue
            owner, name = repo.split("/", 1)
            job = job_id(repo, automation.name, slot)
            task = automation.as_task(
                run_id=run_id_for(job),
                delivery_id=job,
                event="schedule",
                installation_id=covered.get(repo),
                repo=RepoRef(owner=owner, name=name),
                sender="schedule",
                trigger="schedule",
                slot=slot.strftime(SLOT_FORMAT),
            )
            # The job id makes a second worker's enqueue of the same slot a no-op; the last
            # slot moving forward keeps it from being queued again once that job is gone.
            outcome = await enqueuer.enqueue_job(job, task)
            await advance(keys=[key], args=[int(slot.timestamp())])
            due.append(Due(job, task, outcome == "queued"))
            log.info(
                "automation %s on %s: slot %s %s",
                automation.name,
                repo,
                task.slot,
                outcome,
                extra={"repo": repo, "run_id": task.run_id},
            )
    return due


async def automation_tick(ctx: dict[str, Any]) -> dict[str, Any]:
    """Each minute: queue the automations that are due."""
    deps = context.deps(ctx)
    covered = await installations.every(deps.redis)
    due = await tick(deps.redis, deps.enqueuer, covered, deps.clock())
    queued = [d.job_id for d in due if d.queued]
    facts = {"queued": queued, "due": len(due)}
    return RunOutcome("tick", Done.RECORDED, facts=facts).as_result()
