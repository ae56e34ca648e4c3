"""The agent as a job runs it: the read-only clone token is minted here, in the jobs layer, and
handed to the agent layer, which never holds a GitHub client."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from githubkit.exception import GitHubException

from bot import keys
from bot.agent.results import AgentResult, ProgressCallback
from bot.agent.run import AgentRun, Resume, RunSpec, failed, run_agent
from bot.github.auth import READ_ONLY
from bot.jobs.context import MAX_TRIES, Deps

log = logging.getLogger(__name__)


async def run(
    deps: Deps,
    spec: RunSpec,
    *,
    on_progress: ProgressCallback | None = None,
    check: Callable[[AgentResult], Awaitable[str | None]] | None = None,
    release_later: bool = False,
) -> AgentRun:
    """Run the agent on the repository; never raises for a failed run (only for cancellation).
    `release_later`: see `run_agent`."""
    try:
        token = await deps.github.installation_token(
            spec.installation_id, repositories=[spec.repo.name], permissions=READ_ONLY
        )
    except GitHubException as exc:
        extra = {"run_id": spec.run_id, "repo": spec.repo.full_name}
        log.warning("could not mint a clone token: %s", type(exc).__name__, extra=extra)
        return AgentRun(failed(spec, "github", "could not get a read-only token to clone"))
    provider = await deps.workspaces()
    key = keys.RUN_TRY_PREFIX + spec.run_id
    interrupted = await _interrupted_try(deps, key, spec)
    if interrupted is not None:
        spec = dataclasses.replace(spec, continue_from=interrupted)

    async def prepared(base_sha: str) -> None:
        record = {"try": spec.attempt, "base": base_sha}
        ttl = deps.settings.job_timeout_seconds * MAX_TRIES
        await deps.redis.set(key, json.dumps(record), ex=ttl)

    return await run_agent(
        deps.settings,
        provider,
        spec,
        gateway=deps.gateway,
        clone_token=token.token,
        on_progress=on_progress,
        check=check,
        on_prepared=prepared,
        release_later=release_later,
    )


@contextlib.asynccontextmanager
async def running(
    deps: Deps, spec: RunSpec, *, on_progress: ProgressCallback | None = None
) -> AsyncIterator[AgentRun]:
    """`run`, its workspace released while the block goes on with the result (publishing it):
    released for good once the block ends."""
    ran = await run(deps, spec, on_progress=on_progress, release_later=True)
    try:
        yield ran
    finally:
        await ran.settled()


async def _interrupted_try(deps: Deps, key: str, spec: RunSpec) -> Resume | None:
    """The earlier try of this run whose conversation a restart interrupted, if any."""
    raw = await deps.redis.get(key)
    if raw is None:
        return None
    record = json.loads(raw)
    if record.get("try") == spec.attempt:
        return None
    return Resume(spec.run_id, str(record["base"]), str(record["try"]))
