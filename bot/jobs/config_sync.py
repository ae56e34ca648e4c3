"""Keep each repository's `.openhands/config.yml` current: read it on a push or an installation,
resync every installation hourly, store the valid version, report an invalid one once."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from githubkit import GitHub
from githubkit.exception import GitHubException, RequestFailed
from redis.asyncio import Redis

from bot import installations, keys
from bot.errors import InvalidConfig
from bot.github import publish, reads
from bot.jobs import context
from bot.jobs.context import Attempt, Deps, job
from bot.jobs.gate import installation_for
from bot.queue.tasks import ConfigTask, RepoRef
from bot.repo_config import store
from bot.repo_config.schema import CONFIG_PATH, REPORT_MARKER, RepoConfig, parse, report_body
from bot.runs.outcome import Done, RunOutcome

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Refreshed:
    status: Literal["valid", "invalid", "absent", "unchanged"]
    sha: str | None = None
    errors: tuple[str, ...] = ()
    reported: bool = False


async def refresh(
    gh: GitHub[Any],
    redis: Redis,
    repo: RepoRef,
    *,
    commit: str | None = None,
    now: datetime | None = None,
) -> Refreshed:
    """Read the file from the default branch and store it when valid; report it when not.
    `now`: when it is read (the scheduler counts new automations' slots from then)."""
    read_at = now or datetime.now(UTC)
    found = await reads.file_with_sha(gh, repo, CONFIG_PATH, None)
    if found is None:
        await store.store(redis, repo.full_name, None, RepoConfig(), read_at=read_at)
        await _resolve_report(gh, redis, repo, None)
        return Refreshed("absent")
    sha, text = found
    current = await store.load(redis, repo.full_name)
    try:
        config = parse(text)
    except InvalidConfig as exc:
        log.warning(
            "%s: %s is invalid: %s",
            repo.full_name,
            CONFIG_PATH,
            exc,
            extra={"repo": repo.full_name},
        )
        reported = await _report(gh, redis, repo, sha, exc.errors, commit)
        return Refreshed("invalid", sha, tuple(exc.errors), reported)
    if current.sha == sha:  # e.g. a broken version reverted to the last valid one
        await _resolve_report(gh, redis, repo, sha)
        return Refreshed("unchanged", sha)
    await store.store(redis, repo.full_name, sha, config, read_at=read_at)
    await _resolve_report(gh, redis, repo, sha)
    return Refreshed("valid", sha)


async def _report(
    gh: GitHub[Any],
    redis: Redis,
    repo: RepoRef,
    sha: str,
    errors: list[str],
    commit: str | None,
) -> bool:
    """Tell the repository once per file version: one issue, commented on for later versions."""
    key = f"{keys.CONFIG_REPORTED_PREFIX}{repo.full_name.lower()}:{sha}"
    if not await redis.set(key, "1", nx=True, ex=90 * 24 * 3600):
        return False
    previous = (await store.load(redis, repo.full_name)).sha
    body = report_body(sha, errors, commit, previous)
    # This report's own key: a lost answer is found by it, and a report of the same version
    # months later (the Redis key above expired) is a new one, not an old closed issue.
    report_key = f"config-report:{sha}:{int(time.time())}"
    try:
        number = await redis.get(keys.CONFIG_ISSUE_PREFIX + repo.full_name.lower())
        if number is not None and await _still_open(gh, repo, int(number)):
            await publish.comment(gh, repo, int(number), body, key=report_key)
            return True
        created, _ = await publish.open_issue(
            gh, repo, f"OpenHands: {CONFIG_PATH} is invalid", body, key=report_key
        )
        await redis.set(keys.CONFIG_ISSUE_PREFIX + repo.full_name.lower(), created)
    except GitHubException:
        await redis.delete(key)  # not reported: the next refresh tries again
        raise
    return True


async def _still_open(gh: GitHub[Any], repo: RepoRef, number: int) -> bool:
    try:
        issue = (await gh.rest.issues.async_get(repo.owner, repo.name, number)).parsed_data
    except RequestFailed as exc:
        if exc.response.status_code in (404, 410):  # deleted or transferred: report anew
            return False
        raise
    return issue.state == "open"


async def _resolve_report(gh: GitHub[Any], redis: Redis, repo: RepoRef, sha: str | None) -> None:
    """A valid version is in effect (or the file is gone): close the report issue, if open."""
    key = keys.CONFIG_ISSUE_PREFIX + repo.full_name.lower()
    number = await redis.get(key)
    if number is None:
        return
    if await _still_open(gh, repo, int(number)):
        note = (
            f"`{CONFIG_PATH}` version {sha[:7]} is valid and now in effect."
            if sha
            else f"`{CONFIG_PATH}` was removed: the bot's defaults apply."
        )
        await publish.comment(
            gh,
            repo,
            int(number),
            f"{REPORT_MARKER}\n{note}",
            key=f"config-resolved:{int(number)}:{sha or 'removed'}",
        )
        await publish.close_issue(gh, repo, int(number))
    await redis.delete(key)


# The bot's token for reading the config file and reporting it when it is invalid.
CONFIG_PERMISSIONS = {"contents": "read", "issues": "write", "metadata": "read"}
RESYNC_MAX_AGE_SECONDS = 23 * 3600


async def refresh_quietly(
    deps: Deps, installation_id: int, full_name: str, commit: str | None
) -> Refreshed | None:
    """Read one repository's config; a failure is logged and left for the next resync."""
    if "/" not in full_name:
        return None
    owner, name = full_name.split("/", 1)
    try:
        gh = await deps.github.installation_client(
            installation_id, repositories=[name], permissions=CONFIG_PERMISSIONS
        )
        repo = RepoRef(owner=owner, name=name)
        refreshed = await refresh(gh, deps.redis, repo, commit=commit, now=deps.clock())
    except GitHubException as exc:
        log.warning(
            "could not read the config of %s: %s",
            full_name,
            type(exc).__name__,
            extra={"repo": full_name},
        )
        return None
    except Exception:  # a bug of ours must not stop the other repositories' refresh
        log.exception("reading the config of %s failed", full_name, extra={"repo": full_name})
        return None
    await deps.redis.set(
        keys.CONFIG_CHECKED_PREFIX + full_name.lower(),
        int(time.time()),
        ex=RESYNC_MAX_AGE_SECONDS,
    )
    return refreshed


@job
async def refresh_config(deps: Deps, now: Attempt, data: dict[str, Any]) -> RunOutcome:
    """A push touched `.openhands/config.yml` on the default branch: read it again."""
    task = ConfigTask.model_validate(data)
    installation_id = await installation_for(deps, task.repo, task.installation_id)
    refreshed = await refresh_quietly(deps, installation_id, task.repo.full_name, task.commit)
    if refreshed is None:
        return RunOutcome.failed(task.run_id, "config", "could not read the config")
    facts = {"config": refreshed.status, "errors": list(refreshed.errors)}
    return RunOutcome(task.run_id, Done.RECORDED, facts={**facts, "reported": refreshed.reported})


async def resync_configs(ctx: dict[str, Any]) -> dict[str, Any]:
    """Hourly: every installation's repositories and their configs, in case a delivery was lost
    (or the bot was deployed after the App was installed)."""
    deps = context.deps(ctx)
    app = deps.github.app_client()
    seen = 0
    try:
        found = [
            i async for i in app.rest.paginate(app.rest.apps.async_list_installations, per_page=100)
        ]
    except GitHubException as exc:
        log.warning("resync: could not list installations: %s", type(exc).__name__)
        return RunOutcome.failed("resync", "github", type(exc).__name__).as_result()
    for installation in found:
        try:
            gh = await deps.github.installation_client(installation.id)
            repos = [
                r
                async for r in gh.rest.paginate(
                    gh.rest.apps.async_list_repos_accessible_to_installation,
                    map_func=lambda response: response.parsed_data.repositories,
                    per_page=100,
                )
            ]
        except GitHubException as exc:
            log.warning("resync: installation %d: %s", installation.id, type(exc).__name__)
            continue
        names = [r.full_name for r in repos]
        await installations.record(deps.redis, installation.id, names)
        for full_name in names:
            # Pushes keep configs current; the resync only catches what a lost delivery missed,
            # so a repository read within the last day is left alone (GitHub's rate limits).
            if await deps.redis.exists(keys.CONFIG_CHECKED_PREFIX + full_name.lower()):
                continue
            await refresh_quietly(deps, installation.id, full_name, None)
            seen += 1
    return RunOutcome("resync", Done.RECORDED, facts={"repos": seen}).as_result()
