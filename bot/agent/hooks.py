"""Validate a repository's `.openhands/hooks.json` before handing it to the agent-server.

The server never runs a repo's hooks by itself and silently drops an invalid file, so we read and
check it ourselves: a valid file becomes the conversation's `hook_config`, an invalid one is
reported to the user (not fatal). The schema mirrors the agent-server's `HookConfig`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.errors import InvalidHooks

EVENTS = (
    "pre_tool_use",
    "post_tool_use",
    "user_prompt_submit",
    "session_start",
    "session_end",
    "stop",
)


class HookDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["command", "prompt", "agent"] = "command"
    command: str | None = None
    name: str | None = None
    prompt: str | None = None
    system_prompt: str | None = None
    tools: list[str] | None = None
    timeout: int = Field(default=60, ge=1, le=3600)
    max_iterations: int = Field(default=3, ge=1)
    async_: bool = Field(default=False, alias="async")


class HookMatcher(BaseModel):
    model_config = ConfigDict(extra="forbid")

    matcher: str = "*"
    hooks: list[HookDefinition] = Field(default_factory=list)


class HookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pre_tool_use: list[HookMatcher] = Field(default_factory=list)
    post_tool_use: list[HookMatcher] = Field(default_factory=list)
    user_prompt_submit: list[HookMatcher] = Field(default_factory=list)
    session_start: list[HookMatcher] = Field(default_factory=list)
    session_end: list[HookMatcher] = Field(default_factory=list)
    stop: list[HookMatcher] = Field(default_factory=list)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def parse_hooks(text: str) -> dict[str, Any] | None:
    """The validated `hook_config` for a hooks.json text, None when it declares no hooks."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidHooks(f"not valid JSON: {exc}") from exc
    if isinstance(data, dict) and set(data) == {"hooks"} and isinstance(data["hooks"], dict):
        data = data["hooks"]
    if not isinstance(data, dict):
        raise InvalidHooks("the top level must be an object of hook events")
    normalised = {_snake(key): value for key, value in data.items()}
    try:
        config = HookConfig.model_validate(normalised)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise InvalidHooks(problems) from exc
    for event in EVENTS:
        for matcher in getattr(config, event):
            for hook in matcher.hooks:
                if hook.type == "command" and not (hook.command or "").strip():
                    raise InvalidHooks(f"{event}: a command hook needs a command")
    dumped = config.model_dump(by_alias=True, exclude_none=True)
    hooks = {event: value for event, value in dumped.items() if value}
    return hooks or None


def has_stop_hooks(hook_config: dict[str, Any] | None) -> bool:
    return bool(hook_config and hook_config.get("stop"))
