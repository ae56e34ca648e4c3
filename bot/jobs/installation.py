"""An installation added, changed or removed: remember which repositories it covers (so jobs
find their installation) and read the configs of the ones it newly covers."""

from __future__ import annotations

from typing import Any

from bot import installations
from bot.jobs.config_sync import refresh_quietly
from bot.jobs.context import Attempt, Deps, job
from bot.queue.tasks import InstallationTask
from bot.repo_config import store
from bot.runs.outcome import Done, RunOutcome


@job
async def sync_installation(deps: Deps, now: Attempt, data: dict[str, Any]) -> RunOutcome:
    task = InstallationTask.model_validate(data)
    assert task.installation_id is not None
    redis = deps.redis
    if task.action == "deleted":
        names = await installations.forget(redis, task.installation_id, task.repos_removed)
        for name in names:
            await store.forget(redis, name)
        deps.github.tokens.forget(task.installation_id)
        return RunOutcome(task.run_id, Done.REMOVED, facts={"repos": len(names)})
    await installations.record(redis, task.installation_id, task.repos_added)
    await installations.remove(redis, task.installation_id, task.repos_removed)
    for name in task.repos_removed:
        await store.forget(redis, name)
    # Newly covered repositories may declare automations: read their config now.
    for full_name in task.repos_added:
        await refresh_quietly(deps, task.installation_id, full_name, None)
    facts = {"added": len(task.repos_added), "removed": len(task.repos_removed)}
    return RunOutcome(task.run_id, Done.RECORDED, facts=facts)
