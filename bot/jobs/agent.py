"""The agent as a job runs it: the read-only clone token is minted here, in the jobs layer, and
handed to the agent layer, which never holds a GitHub client."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from githubkit.exception import GitHubException

from bot.agent.results import AgentResult, ProgressCallback
from bot.agent.run import AgentRun, RunSpec, failed, run_agent
from bot.github.auth import READ_ONLY
from bot.jobs.context import Deps

log = logging.getLogger(__name__)


async def run(
    deps: Deps,
    spec: RunSpec,
    *,
    on_progress: ProgressCallback | None = None,
    check: Callable[[AgentResult], Awaitable[str | None]] | None = None,
) -> AgentRun:
    """Run the agent on the repository; never raises for a failed run (only for cancellation)."""
    try:
        token = await deps.github.installation_token(
            spec.installation_id, repositories=[spec.repo.name], permissions=READ_ONLY
        )
    except GitHubException as exc:
        extra = {"run_id": spec.run_id, "repo": spec.repo.full_name}
        log.warning("could not mint a clone token: %s", type(exc).__name__, extra=extra)
        return AgentRun(failed(spec, "github", "could not get a read-only token to clone"))
    provider = await deps.workspaces()
    return await run_agent(
        deps.settings,
        provider,
        spec,
        clone_token=token.token,
        on_progress=on_progress,
        check=check,
    )
