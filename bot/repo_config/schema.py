"""`.openhands/config.yml`: a repository's own review settings and scheduled automations.

Read from the default branch and validated; an invalid version is reported once and the last
valid configuration keeps running. Nothing in the file can crash the bot.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Literal, cast

import yaml
from githubkit import GitHub
from githubkit.exception import GitHubException, RequestFailed
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from redis.asyncio import Redis

from bot import keys
from bot.errors import InvalidConfig
from bot.queue.tasks import RepoRef
from bot.repo_config.cron import CronError, Schedule

log = logging.getLogger(__name__)

CONFIG_PATH = ".openhands/config.yml"
MAX_CONFIG_BYTES = 64 * 1024
REPORT_MARKER = "<!-- openhands-config-report -->"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReviewConfig(_Strict):
    """Overrides of the bot's review settings for this repository."""

    enabled: bool = True
    on_open: bool | None = None  # default: the bot's REVIEW_ON_OPEN
    on_push: bool | None = None  # default: the bot's REVIEW_ON_PUSH
    instructions: str | None = Field(default=None, max_length=8000)
    max_changed_lines: int | None = Field(default=None, gt=0)
    max_files: int | None = Field(default=None, gt=0)


class Automation(_Strict):
    """One scheduled task: when, what to ask, and where its result goes."""

    name: str
    schedule: str
    timezone: str = "UTC"
    prompt: str = Field(min_length=1, max_length=20_000)
    output: Literal["pr", "issue", "comment", "none"] = "pr"
    issue: int | None = Field(default=None, gt=0)  # the issue a `comment` output goes to
    branch: str | None = None  # default: the repository's default branch
    max_iterations: int | None = Field(default=None, gt=0, le=1000)
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use 1-64 letters, digits, spaces, '.', '_' or '-'")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        try:
            Schedule.parse(value)
        except CronError as exc:
            raise ValueError(f"{value!r}: {exc}") from exc
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            Schedule.parse("@daily", value)
        except CronError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _check(self) -> Automation:
        if self.output == "comment" and self.issue is None:
            raise ValueError("output `comment` needs `issue: <number>` to comment on")
        return self

    def parsed_schedule(self) -> Schedule:
        return Schedule.parse(self.schedule, self.timezone)


class RepoConfig(_Strict):
    """The whole file."""

    review: ReviewConfig = Field(default_factory=ReviewConfig)
    automations: list[Automation] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _unique(self) -> RepoConfig:
        names = [a.name.lower() for a in self.automations]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"automation names must be unique: {', '.join(duplicates)}")
        return self

    def automation(self, name: str) -> Automation | None:
        for automation in self.automations:
            if automation.name.lower() == name.lower():
                return automation
        return None


def parse(text: str) -> RepoConfig:
    """Validate the file's text; raise InvalidConfig with every problem found."""
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise InvalidConfig([f"the file is larger than {MAX_CONFIG_BYTES // 1024} KiB"])
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidConfig([f"not valid YAML: {exc}"]) from exc
    except (RecursionError, MemoryError, ValueError, TypeError) as exc:  # e.g. nesting 5,000 deep
        raise InvalidConfig([f"not usable YAML: {type(exc).__name__}"]) from exc
    if data is None:
        return RepoConfig()
    if not isinstance(data, dict):
        raise InvalidConfig(["the file must be a mapping (keys such as `review:`, `automations:`)"])
    try:
        return RepoConfig.model_validate(data)
    except ValidationError as exc:
        raise InvalidConfig(_describe(exc, data)) from exc


def _describe(exc: ValidationError, data: dict[str, Any]) -> list[str]:
    errors = []
    for error in exc.errors():
        where = _location(error["loc"], data)
        message = str(error["msg"]).removeprefix("Value error, ")
        errors.append(f"{where}: {message}" if where else message)
    return errors


def _location(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    parts: list[str] = []
    node: Any = data
    for item in loc:
        if isinstance(item, int):
            entry = node[item] if isinstance(node, list) and item < len(node) else None
            name = entry.get("name") if isinstance(entry, dict) else None
            label = f"[{item}]" + (f" ({name})" if isinstance(name, str) else "")
            parts[-1:] = [(parts[-1] if parts else "") + label]
            node = node[item] if isinstance(node, list) and item < len(node) else None
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts)


@dataclass(frozen=True, slots=True)
class Stored:
    """The configuration in effect for a repository, and the file version it came from."""

    sha: str | None
    config: RepoConfig


async def load(redis: Redis, repo: str) -> Stored:
    """The last valid configuration (defaults when the repository has none)."""
    raw = await redis.get(keys.CONFIG_PREFIX + repo.lower())
    if raw is None:
        return Stored(None, RepoConfig())
    record = json.loads(raw)
    try:
        return Stored(record.get("sha"), RepoConfig.model_validate(record["config"]))
    except (ValidationError, KeyError):  # stored by an older version of the bot
        return Stored(None, RepoConfig())


def last_slot_key(repo: str, name: str) -> str:
    return f"{keys.AUTOMATION_LAST_PREFIX}{repo.lower()}:{name.lower()}"


async def _store(redis: Redis, repo: str, sha: str | None, config: RepoConfig) -> None:
    key = repo.lower()
    # An automation that leaves the file forgets its schedule: added back, it waits for its
    # next slot like a new one instead of catching up on the time it was gone.
    kept = {a.name.lower() for a in config.automations}
    gone = [
        a.name for a in (await load(redis, repo)).config.automations if a.name.lower() not in kept
    ]
    if gone:
        await redis.delete(*[last_slot_key(repo, name) for name in gone])
    record = {"sha": sha, "config": config.model_dump(mode="json")}
    await redis.set(keys.CONFIG_PREFIX + key, json.dumps(record))
    if config.automations:
        await cast(Awaitable[int], redis.sadd(keys.CONFIG_REPOS, key))
    else:
        await cast(Awaitable[int], redis.srem(keys.CONFIG_REPOS, key))


async def forget(redis: Redis, repo: str) -> None:
    """The App no longer covers the repository."""
    await redis.delete(keys.CONFIG_PREFIX + repo.lower())
    await cast(Awaitable[int], redis.srem(keys.CONFIG_REPOS, repo.lower()))


@dataclass(frozen=True, slots=True)
class Refreshed:
    status: Literal["valid", "invalid", "absent", "unchanged"]
    sha: str | None = None
    errors: tuple[str, ...] = ()
    reported: bool = False


async def fetch(gh: GitHub[Any], repo: RepoRef, ref: str | None) -> tuple[str, str] | None:
    """(blob sha, text) of the file on `ref` (the default branch when None), or None."""
    try:
        if ref is None:
            response = await gh.rest.repos.async_get_content(repo.owner, repo.name, CONFIG_PATH)
        else:
            response = await gh.rest.repos.async_get_content(
                repo.owner, repo.name, CONFIG_PATH, ref=ref
            )
    except RequestFailed as exc:
        if exc.response.status_code == 404:
            return None
        raise
    content = response.parsed_data
    if isinstance(content, list) or getattr(content, "type", None) != "file":
        return None
    encoded = getattr(content, "content", "") or ""
    text = base64.b64decode(encoded).decode("utf-8", errors="replace")
    return content.sha, text


async def refresh(
    gh: GitHub[Any], redis: Redis, repo: RepoRef, *, commit: str | None = None
) -> Refreshed:
    """Read the file from the default branch and store it when valid; report it when not."""
    found = await fetch(gh, repo, None)
    if found is None:
        await _store(redis, repo.full_name, None, RepoConfig())
        await _resolve_report(gh, redis, repo, None)
        return Refreshed("absent")
    sha, text = found
    current = await load(redis, repo.full_name)
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
    await _store(redis, repo.full_name, sha, config)
    await _resolve_report(gh, redis, repo, sha)
    return Refreshed("valid", sha)


def report_body(sha: str, errors: list[str], commit: str | None, previous: str | None) -> str:
    where = f"commit {commit}" if commit else f"the default branch (file version {sha[:7]})"
    lines = [
        REPORT_MARKER,
        f"`{CONFIG_PATH}` on {where} is not valid, so OpenHands ignores this version of it:",
        "",
        *[f"- {error}" for error in errors[:50]],
        "",
        "The previous valid configuration keeps running."
        if previous
        else "No earlier valid configuration exists: the bot's defaults apply.",
        "Fix the file on the default branch; this issue is closed once a valid version is read.",
    ]
    return "\n".join(lines)


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
    previous = (await load(redis, repo.full_name)).sha
    body = report_body(sha, errors, commit, previous)
    try:
        number = await redis.get(keys.CONFIG_ISSUE_PREFIX + repo.full_name.lower())
        if number is not None and await _still_open(gh, repo, int(number)):
            await gh.rest.issues.async_create_comment(repo.owner, repo.name, int(number), body=body)
            return True
        created = await gh.rest.issues.async_create(
            repo.owner,
            repo.name,
            title=f"OpenHands: {CONFIG_PATH} is invalid",
            body=body,
        )
        await redis.set(
            keys.CONFIG_ISSUE_PREFIX + repo.full_name.lower(), created.parsed_data.number
        )
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
        await gh.rest.issues.async_create_comment(
            repo.owner, repo.name, int(number), body=f"{REPORT_MARKER}\n{note}"
        )
        await gh.rest.issues.async_update(repo.owner, repo.name, int(number), state="closed")
    await redis.delete(key)
