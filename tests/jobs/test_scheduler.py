"""The automation scheduler with a controllable clock and real arq workers: one run per slot
however many workers tick, and one catch-up run after downtime, not one per missed slot."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from arq import cron
from arq.worker import Worker
from redis.asyncio import Redis

from bot import keys
from bot.agent.workspace.server import ServerProvider
from bot.config import Settings
from bot.jobs.scheduler import job_id, run_id_for
from bot.jobs.worker import Clock, automation_tick, worker_options
from bot.runs.store import RunStore
from tests.conftest import Deliverer, run_worker
from tests.fakes.git_host import FakeGitHost
from tests.fakes.github import FakeGitHub
from tests.repo_config.test_repo_config import CONFIG_PATH, INSTALLATION, OWNER, REPO, push

EVERY_5 = """\
automations:
  - name: tidy
    schedule: "*/5 * * * *"
    prompt: Tidy up the README.
    output: none
  - name: paused
    schedule: "* * * * *"
    prompt: Never runs.
    enabled: false
"""


def at(hour: int, minute: int, second: int = 0) -> Clock:
    return lambda: datetime(2026, 11, 23, hour, minute, second, tzinfo=UTC)


async def tick_workers(settings: Settings, *clocks: Clock) -> None:
    """Start one burst worker per clock, at once; each ticks the scheduler as it starts (as
    arq's cron does at second 0 of every minute), then runs whatever was queued."""
    workers = [
        Worker(
            **{
                **worker_options(
                    settings,
                    workspaces=ServerProvider("http://127.0.0.1:9", None, "/nonexistent"),
                    clock=clock,
                    scheduled=False,
                ),
                "cron_jobs": [cron(automation_tick, second=0, run_at_startup=True)],
            },
            burst=True,
            poll_delay=0,
            handle_signals=False,
        )
        for clock in clocks
    ]
    try:
        await asyncio.gather(*(w.main() for w in workers))
    finally:
        for worker in workers:
            await worker.close()


async def automation_runs(redis: Redis) -> list[str]:
    records = await RunStore(redis, 3600).recent(kind="automation")
    return sorted(r.run_id for r in records)


@pytest.fixture
async def scheduled(
    fake_github: FakeGitHub,
    git_host: FakeGitHost,
    deliver: Deliverer,
    settings: Settings,
    redis: Redis,
) -> Settings:
    git_host.create_repo(REPO, {"README.md": "# app\n", CONFIG_PATH: EVERY_5})
    fake_github.add_installation(INSTALLATION, OWNER, [REPO])
    # The file is read at 10:01:30 and the scheduler first ticks at 10:02: earlier slots are not
    # owed.
    await push(deliver, settings, git_host.rev_parse(REPO, "refs/heads/main"), at(10, 1, 30))
    await redis.hset(keys.REPO_INSTALLATION, REPO.lower(), INSTALLATION)
    await tick_workers(settings, at(10, 2))
    assert await automation_runs(redis) == []
    return settings


async def test_two_workers_crossing_one_slot_make_one_run(
    scheduled: Settings, redis: Redis
) -> None:
    await tick_workers(scheduled, at(10, 5, 1), at(10, 5, 40))
    slot = datetime(2026, 11, 23, 10, 5, tzinfo=UTC)
    assert await automation_runs(redis) == [run_id_for(job_id(REPO, "tidy", slot))]

    # A third worker later in the same slot: still one.
    await tick_workers(scheduled, at(10, 9, 59))
    assert len(await automation_runs(redis)) == 1


async def test_downtime_across_five_slots_makes_one_catch_up_run(
    scheduled: Settings, redis: Redis
) -> None:
    # Down from 10:02 to 10:27: slots 10:05, 10:10, 10:15, 10:20 and 10:25 were missed.
    await tick_workers(scheduled, at(10, 27))
    latest = datetime(2026, 11, 23, 10, 25, tzinfo=UTC)
    assert await automation_runs(redis) == [run_id_for(job_id(REPO, "tidy", latest))]
    # Then back on schedule: nothing until 10:30, which runs once.
    await tick_workers(scheduled, at(10, 28))
    assert len(await automation_runs(redis)) == 1
    await tick_workers(scheduled, at(10, 30))
    assert len(await automation_runs(redis)) == 2


async def test_a_scheduled_run_is_recorded_with_its_slot_and_outcome(
    scheduled: Settings, redis: Redis, fake_github: FakeGitHub
) -> None:
    await tick_workers(scheduled, at(10, 5))
    (record,) = await RunStore(redis, 3600).recent(kind="automation")
    assert record.trigger == "schedule"
    assert record.automation == "tidy"
    assert record.job_id == f"{REPO.lower()}:tidy:20261123T1005Z"
    # This worker's workspace answers nowhere: the run fails clearly, it is not lost.
    assert record.status.value == "FAILED"
    assert record.error is not None
    assert record.error.code == "workspace"
    await run_worker(scheduled)  # nothing else was queued
    assert len(await automation_runs(redis)) == 1


async def test_an_automation_switched_off_and_on_again_does_not_catch_up(
    scheduled: Settings, git_host: FakeGitHost, deliver: Deliverer, redis: Redis
) -> None:
    async def configure(text: str, clock: Clock) -> None:
        git_host.commit(REPO, {CONFIG_PATH: text}, message="Reconfigure")
        await push(deliver, scheduled, git_host.rev_parse(REPO, "refs/heads/main"), clock)

    await configure(
        EVERY_5.replace("output: none", "output: none\n    enabled: false", 1), at(10, 3)
    )
    await tick_workers(scheduled, at(10, 6))
    assert await automation_runs(redis) == []
    # Back on at 10:31: the slots it was off for are not owed; the next one is.
    await configure(EVERY_5, at(10, 31))
    await tick_workers(scheduled, at(10, 31))
    assert await automation_runs(redis) == []
    await tick_workers(scheduled, at(10, 35))
    assert len(await automation_runs(redis)) == 1

    # Removed from the file and added back later: the same.
    await configure("automations: []\n", at(10, 40))
    await configure(EVERY_5, at(11, 1))
    await tick_workers(scheduled, at(11, 2))
    assert len(await automation_runs(redis)) == 1


async def test_the_first_slot_after_the_file_is_read_runs(
    fake_github: FakeGitHub,
    git_host: FakeGitHost,
    deliver: Deliverer,
    settings: Settings,
    redis: Redis,
) -> None:
    # Read at 19:29:25; the scheduler's next tick is 19:30:00. That slot is owed (it used to
    # count from its first tick and wait for 19:31).
    every_minute = EVERY_5.replace("*/5 * * * *", "* * * * *")
    git_host.create_repo(REPO, {"README.md": "# app\n", CONFIG_PATH: every_minute})
    fake_github.add_installation(INSTALLATION, OWNER, [REPO])
    await push(deliver, settings, git_host.rev_parse(REPO, "refs/heads/main"), at(19, 29, 25))
    await redis.hset(keys.REPO_INSTALLATION, REPO.lower(), INSTALLATION)

    await tick_workers(settings, at(19, 30))

    slot = datetime(2026, 11, 23, 19, 30, tzinfo=UTC)
    assert await automation_runs(redis) == [run_id_for(job_id(REPO, "tidy", slot))]
    # A file read again later (a resync, unchanged) does not move the count.
    await push(deliver, settings, git_host.rev_parse(REPO, "refs/heads/main"), at(19, 30, 30))
    await tick_workers(settings, at(19, 30, 50))
    assert len(await automation_runs(redis)) == 1
    await tick_workers(settings, at(19, 31))
    assert len(await automation_runs(redis)) == 2
