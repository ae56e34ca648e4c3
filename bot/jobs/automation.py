"""A scheduled automation or an API-started prompt: a workspace on the default branch, the prompt,
and the declared output (a pull request, an issue, a comment, or nothing)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from githubkit.exception import GitHubException

from bot.agent.prompts import automation_prompt
from bot.agent.run import AgentRun, RunSpec, run_agent
from bot.agent.workspace.base import WorkspaceProvider
from bot.config import Settings
from bot.errors import PublishError
from bot.github import failures, messages, publish
from bot.github.client import GitHubApp
from bot.queue.tasks import AutomationTask

log = logging.getLogger(__name__)

READ = {"contents": "read", "metadata": "read"}
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


async def run_automation_job(
    settings: Settings, github: GitHubApp, workspaces: WorkspaceProvider, task: AutomationTask
) -> dict[str, Any]:
    """Run it; never raises for a failed run, so the record and callback always say why."""
    installation = task.installation_id or 0
    try:
        gh = await github.installation_client(
            installation, repositories=[task.repo.name], permissions=READ
        )
        repo = (await gh.rest.repos.async_get(task.repo.owner, task.repo.name)).parsed_data
    except GitHubException as exc:
        return {
            "run_id": task.run_id,
            "status": "failed",
            "error": "github",
            "detail": failures.describe(exc),
        }
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
    )
    run = await run_agent(settings, workspaces, github, spec)
    result = run.result
    facts: dict[str, Any] = {
        "run_id": task.run_id,
        "cost": result.cost,
        "conversation_id": result.conversation_id,
    }
    if not result.succeeded:
        error = result.error
        headline, _ = messages.from_agent_error(error, settings.bot_handle)
        return {
            **facts,
            "status": "failed",
            "error": error.code if error else "internal",
            "detail": (error.detail if error else "") or headline,
        }
    try:
        return {**facts, **await _publish(settings, github, task, run, base)}
    except (GitHubException, PublishError) as exc:
        log.warning(
            "automation output failed: %s",
            failures.describe(exc),
            extra={"run_id": task.run_id, "repo": task.repo.full_name},
        )
        return {
            **facts,
            "status": "failed",
            "error": "publish",
            "detail": failures.describe(exc),
        }


async def _publish(
    settings: Settings, github: GitHubApp, task: AutomationTask, run: AgentRun, base: str
) -> dict[str, Any]:
    summary = run.result.final_response.strip() or "(the agent left no summary)"
    if task.output == "none":
        return {"status": "completed"}
    if task.output == "pr" and not run.result.changes:
        return {"status": "completed", "reason": "no changes to propose"}
    writer = await github.installation_client(
        task.installation_id or 0,
        repositories=[task.repo.name],
        permissions=publish.PUBLISH_PERMISSIONS,
    )
    owner, name = task.repo.owner, task.repo.name
    body = f"{summary[:60_000]}\n\n{_footer(settings, task)}"
    stamp = _when(task).strftime("%Y-%m-%d %H:%M UTC")
    if task.output == "issue":
        issue = await writer.rest.issues.async_create(
            owner, name, title=f"{_title(task)}: {stamp}"[:200], body=body
        )
        return {"status": "reported", "links": {"issue": issue.parsed_data.html_url}}
    if task.output == "comment":
        assert task.issue is not None  # the config and the API both require it
        comment = await writer.rest.issues.async_create_comment(owner, name, task.issue, body=body)
        return {"status": "commented", "links": {"comment": comment.parsed_data.html_url}}
    assert run.head_sha is not None
    title = f"{_title(task)}: {summary.splitlines()[0]}"[:120]
    sha = await publish.create_commit(
        writer,
        task.repo,
        base_sha=run.head_sha,
        changes=run.result.changes,
        message=f"{title}\n\n{summary[:2000]}",
        when=_when(task),
    )
    branch = f"openhands/{publish.slug(_title(task), 30)}-{_when(task).strftime('%Y%m%d-%H%M')}"
    if not task.slot:
        branch += f"-{task.run_id[-8:]}"
    await publish.ensure_branch(writer, task.repo, branch, sha)
    number, url, _ = await publish.ensure_pull_request(
        writer,
        task.repo,
        branch=branch,
        base=base,
        title=title,
        body=body,
        draft=not settings.open_pr_ready,
    )
    return {"status": "published", "links": {"pull_request": url}, "pr": number}
