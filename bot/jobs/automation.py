"""A scheduled automation or an API-started prompt: a workspace on the default branch, the prompt,
and the declared output (a pull request, an issue, a comment, or nothing)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from githubkit.exception import GitHubException

from bot.agent.prompts import automation_prompt
from bot.agent.run import AgentRun, RunSpec
from bot.config import Settings
from bot.errors import BotError, PublishError
from bot.github import failures, messages, outbound, publish
from bot.github.auth import READ_ONLY
from bot.jobs import agent
from bot.jobs.context import Attempt, Deps, job
from bot.jobs.gate import with_installation
from bot.jobs.turns import Turn
from bot.queue.tasks import AutomationTask
from bot.runs import lifecycle
from bot.runs.outcome import Done, RunOutcome
from bot.runs.store import RunError, RunRecord

log = logging.getLogger(__name__)

WORKDIR = "the repository root (your working directory)"


def _title(task: AutomationTask) -> str:
    return task.automation or "API run"


def _when(task: AutomationTask) -> datetime:
    """The slot's time, so a re-executed job makes the same commit."""
    if task.slot:
        return datetime.strptime(task.slot, "%Y%m%dT%H%MZ").replace(tzinfo=UTC)
    return datetime.now(UTC).replace(second=0, microsecond=0)


def _footer(settings: Settings, task: AutomationTask) -> str:
    url = settings.run_url(task.run_id)
    run = f"[run `{task.run_id}`]({url})" if url else f"run `{task.run_id}`"
    origin = f"automation `{task.automation}`" if task.automation else "the bot's API"
    return f"<sub>By OpenHands, from {origin} ({run}).</sub>"


@job
async def run_automation(deps: Deps, now: Attempt, data: dict[str, Any]) -> RunOutcome:
    """A scheduled automation or an API-started prompt."""
    task = AutomationTask.model_validate(data)
    record = RunRecord(
        run_id=task.run_id,
        kind="automation",
        trigger=task.trigger,
        repo=task.repo.full_name,
        number=task.issue,
        automation=task.automation,
        sender=task.sender,
        job_id=now.job_id,
    )

    async def body() -> RunOutcome:
        try:
            filled = await with_installation(deps, task)
        except BotError as exc:
            return RunOutcome.failed(task.run_id, "github", exc.user_message)
        return await _automation(deps, filled, now)

    return await lifecycle.tracked(
        deps.settings,
        deps.runs,
        deps.enqueuer,
        deps.redis,
        record,
        body,
        may_rerun=now.may_rerun,
        turn=Turn(deps, now, task.run_id, task.repo, installation=task.installation_id),
    )


async def _automation(deps: Deps, task: AutomationTask, now: Attempt) -> RunOutcome:
    """Run it; never raises for a failed run, so the record and callback always say why."""
    settings = deps.settings
    installation = task.installation_id or 0
    try:
        gh = await deps.github.installation_client(
            installation, repositories=[task.repo.name], permissions=READ_ONLY
        )
        repo = (await gh.rest.repos.async_get(task.repo.owner, task.repo.name)).parsed_data
    except GitHubException as exc:
        return RunOutcome.failed(task.run_id, "github", failures.describe(exc))
    base = task.branch or repo.default_branch
    spec = RunSpec(
        run_id=task.run_id,
        installation_id=installation,
        repo=task.repo,
        clone_url=repo.clone_url,
        prompt=automation_prompt(
            task.repo.full_name, WORKDIR, task.automation, task.prompt, task.output, task.issue
        ),
        branch=base,
        max_iterations=task.max_iterations,
        attempt=now.label,
        earlier_attempts=now.earlier,
    )
    run = await agent.run(deps, spec)
    result = run.result
    spent = RunOutcome(
        task.run_id, Done.COMPLETED, cost=result.cost, conversation_id=result.conversation_id
    )
    if not result.succeeded:
        error = result.error
        headline, _ = messages.from_agent_error(error, settings.bot_handle)
        code = error.code if error else "internal"
        detail = (error.detail if error else "") or headline
        return spent.but(status=Done.FAILED, error=RunError(code=code, detail=detail))
    try:
        return await _publish(deps, task, run, base, spent)
    except (GitHubException, PublishError) as exc:
        log.warning(
            "automation output failed: %s",
            failures.describe(exc),
            extra={"run_id": task.run_id, "repo": task.repo.full_name},
        )
        why = RunError(code="publish", detail=failures.describe(exc))
        return spent.but(status=Done.FAILED, error=why)


async def _publish(
    deps: Deps, task: AutomationTask, run: AgentRun, base: str, spent: RunOutcome
) -> RunOutcome:
    settings = deps.settings
    cleaner = outbound.for_api(settings.github_api_url)  # the agent's text, safe to post
    said = run.result.final_response.strip()[:60_000] or "(the agent left no summary)"
    summary = cleaner.clean(said)
    if task.output == "none":
        return spent
    if task.output == "pr" and not run.result.changes:
        return spent.but(reason="no changes to propose")
    writer = await deps.github.installation_client(
        task.installation_id or 0,
        repositories=[task.repo.name],
        permissions=publish.PUBLISH_PERMISSIONS,
    )
    body = f"{summary}\n\n{_footer(settings, task)}"
    stamp = _when(task).strftime("%Y-%m-%d %H:%M UTC")
    if task.output == "issue":
        title = f"{_title(task)}: {stamp}"[:200]
        _, url = await publish.open_issue(
            writer, task.repo, title, body, key=f"{task.run_id}:issue"
        )
        return spent.but(status=Done.REPORTED, links={"issue": url})
    if task.output == "comment":
        assert task.issue is not None  # the config and the API both require it
        url = await publish.comment(
            writer, task.repo, task.issue, body, key=f"{task.run_id}:comment"
        )
        return spent.but(status=Done.COMMENTED, links={"comment": url})
    assert run.head_sha is not None
    title = f"{_title(task)}: {cleaner.clean(said.splitlines()[0], mid_line=True)}"[:120]
    branch = f"openhands/{publish.slug(_title(task), 30)}-{_when(task).strftime('%Y%m%d-%H%M')}"
    if not task.slot:
        branch += f"-{task.run_id[-8:]}"
    number, url = await publish.propose(
        writer,
        task.repo,
        base_sha=run.head_sha,
        changes=run.result.changes,
        message=f"{title}\n\n{cleaner.clean(said[:2000])}",
        when=_when(task),
        branch=branch,
        base=base,
        title=title,
        body=body,
        draft=not settings.open_pr_ready,
    )
    return spent.but(status=Done.PUBLISHED, links={"pull_request": url}, facts={"pr": number})
