"""`@handle stop` from a writer: abort the run in progress on that thread, at once."""

from __future__ import annotations

import logging
from typing import Any

from bot.jobs import threads
from bot.jobs.context import Attempt, Deps, job
from bot.jobs.gate import admit
from bot.queue.tasks import CancelTask
from bot.runs import stop
from bot.runs.outcome import Done, RunOutcome

log = logging.getLogger(__name__)


@job
async def run_cancel(deps: Deps, now: Attempt, data: dict[str, Any]) -> RunOutcome:
    task = CancelTask.model_validate(data)
    admitted = await admit(deps, now, task)
    if isinstance(admitted, RunOutcome):
        return admitted
    active = await threads.active_run(deps.redis, threads.key(task.repo.full_name, task.number))
    if active is None:
        log.info("stop on %s#%d: nothing is running", task.repo.full_name, task.number)
        return RunOutcome(task.run_id, Done.NOTHING_RUNNING)
    run_id, job_id = active
    await stop.request(deps.redis, run_id, task.sender)
    # arq cancels the job's task: the run interrupts its conversation and finalizes its comment.
    aborted = await stop.abort(deps.redis, job_id, wait=30)
    log.info(
        "stop on %s#%d: run %s aborted=%s",
        task.repo.full_name,
        task.number,
        run_id,
        aborted,
        extra={"run_id": run_id},
    )
    return RunOutcome(task.run_id, Done.STOPPED, facts={"stopped_run": run_id})
