"""`.openhands/config.yml`: a repository's own review settings and scheduled automations.

Read from the default branch and validated; an invalid version is reported once and the last
valid configuration keeps running. Nothing in the file can crash the bot.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot.errors import InvalidConfig
from bot.queue.tasks import MAX_ID, AutomationTask
from bot.repo_config.cron import CronError, Schedule

log = logging.getLogger(__name__)

CONFIG_PATH = ".openhands/config.yml"
MAX_CONFIG_BYTES = 64 * 1024
REPORT_MARKER = "<!-- openhands-config-report -->"
# What the report issue says: each problem in the file, and what happens meanwhile.
FILE_TOO_LARGE = "the file is larger than {kib} KiB"
NOT_VALID_YAML = "not valid YAML: {error}"
NOT_USABLE_YAML = "not usable YAML: {error}"
NOT_A_MAPPING = "the file must be a mapping (keys such as `review:`, `automations:`)"
BAD_NAME = "use 1-64 letters, digits, spaces, '.', '_' or '-'"
COMMENT_NEEDS_ISSUE = "output `comment` needs `issue: <number>` to comment on"
NAMES_NOT_UNIQUE = "automation names must be unique: {names}"
REPORT_HEADLINE = "`{path}` on {where} is not valid, so OpenHands ignores this version of it:"
KEEPS_RUNNING = "The previous valid configuration keeps running."
DEFAULTS_APPLY = "No earlier valid configuration exists: the bot's defaults apply."
FIX_HINT = "Fix the file on the default branch; this issue is closed once a valid version is read."
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
    # The noise budget: findings below this severity, or past this many, are folded into the
    # summary instead of posted on the lines.
    min_inline_severity: Literal["critical", "important", "suggestion"] = "important"
    max_inline_comments: int = Field(default=7, ge=0, le=50)


class Automation(_Strict):
    """One scheduled task: when, what to ask, and where its result goes."""

    name: str
    schedule: str
    timezone: str = "UTC"
    prompt: str = Field(min_length=1, max_length=20_000)
    output: Literal["pr", "issue", "comment", "none"] = "pr"
    issue: int | None = Field(default=None, gt=0, le=MAX_ID)  # the issue a `comment` output goes to
    branch: str | None = None  # default: the repository's default branch
    max_iterations: int | None = Field(default=None, gt=0, le=1000)
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(BAD_NAME)
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
            raise ValueError(COMMENT_NEEDS_ISSUE)
        return self

    def parsed_schedule(self) -> Schedule:
        return Schedule.parse(self.schedule, self.timezone)

    def as_task(self, **fields: Any) -> AutomationTask:
        """This automation as a task to queue (the scheduler's and the run API's): `fields` name
        the run, and any that are not None override the file's output, issue, branch, limit."""
        values: dict[str, Any] = {
            "automation": self.name,
            "prompt": self.prompt,
            "output": self.output,
            "issue": self.issue,
            "branch": self.branch,
            "max_iterations": self.max_iterations,
        }
        values.update({k: v for k, v in fields.items() if v is not None})
        return AutomationTask(**values)


class RepoConfig(_Strict):
    """The whole file."""

    review: ReviewConfig = Field(default_factory=ReviewConfig)
    automations: list[Automation] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _unique(self) -> RepoConfig:
        names = [a.name.lower() for a in self.automations]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(NAMES_NOT_UNIQUE.format(names=", ".join(duplicates)))
        return self

    def automation(self, name: str) -> Automation | None:
        for automation in self.automations:
            if automation.name.lower() == name.lower():
                return automation
        return None


def parse(text: str) -> RepoConfig:
    """Validate the file's text; raise InvalidConfig with every problem found."""
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise InvalidConfig([FILE_TOO_LARGE.format(kib=MAX_CONFIG_BYTES // 1024)])
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidConfig([NOT_VALID_YAML.format(error=exc)]) from exc
    except (RecursionError, MemoryError, ValueError, TypeError) as exc:  # e.g. nesting 5,000 deep
        raise InvalidConfig([NOT_USABLE_YAML.format(error=type(exc).__name__)]) from exc
    if data is None:
        return RepoConfig()
    if not isinstance(data, dict):
        raise InvalidConfig([NOT_A_MAPPING])
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


def report_body(sha: str, errors: list[str], commit: str | None, previous: str | None) -> str:
    where = f"commit {commit}" if commit else f"the default branch (file version {sha[:7]})"
    lines = [
        REPORT_MARKER,
        REPORT_HEADLINE.format(path=CONFIG_PATH, where=where),
        "",
        *[f"- {error}" for error in errors[:50]],
        "",
        KEEPS_RUNNING if previous else DEFAULTS_APPLY,
        FIX_HINT,
    ]
    return "\n".join(lines)
