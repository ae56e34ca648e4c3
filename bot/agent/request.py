"""The agent-server request that starts a conversation, built purely from settings and the run:
the LLM block (the only place the key appears), tools, skills, hooks, limits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from bot.config import Settings

RUN_NAMESPACE = uuid.UUID("5b0e3a4e-57d8-4c1e-9d0c-0c6b1f1f0a11")


def conversation_id_for(run_id: str, attempt: str = "") -> str:
    """A stable conversation id per run, so a retried job finds its conversation again."""
    return str(uuid.uuid5(RUN_NAMESPACE, f"{run_id}:{attempt}"))


@dataclass(frozen=True, slots=True)
class AgentRequest:
    run_id: str
    prompt: str
    working_dir: str
    hook_config: dict[str, Any] | None = None
    tools: list[str] | None = None  # None: the agent-server's default tool set
    max_iterations: int | None = None
    attempt: str = ""
    load_project_skills: bool = True  # off for untrusted checkouts (a PR's head under review)


RETRY_MULTIPLIER = 2

# How long a dead LLM takes to be reported. The agent-server (openhands-sdk 1.58) has no
# first-token timeout: `timeout` is both litellm's HTTP timeout (so it covers the wait for the
# response's first byte) and a hard limit on each whole attempt, streamed or not, and
# `stream_idle_timeout` only bounds the gaps between chunks once a stream has begun. A hung
# provider therefore costs attempts x timeout plus the waits between attempts, and the only way
# to report it sooner is to bound that total (LLM_TIMEOUT_SECONDS x LLM_NUM_RETRIES); the
# defaults keep it under two minutes (`worst_case_llm_seconds`).


def worst_case_llm_seconds(settings: Settings) -> float:
    """The longest one LLM call can take before the run is told it failed: every attempt timing
    out, with the agent-server's exponential waits (tenacity's: multiplier x 2^n, clamped)."""
    attempts = max(settings.llm_num_retries, 1)
    waits = sum(
        min(
            max(RETRY_MULTIPLIER * 2.0**n, settings.llm_retry_min_wait), settings.llm_retry_max_wait
        )
        for n in range(attempts - 1)
    )
    return attempts * settings.llm_timeout_seconds + waits


def llm_settings(settings: Settings) -> dict[str, Any]:
    """The `llm` block in litellm's naming; the key appears here and nowhere else."""
    llm: dict[str, Any] = {
        "usage_id": "agent",
        "model": settings.llm_model,
        "num_retries": settings.llm_num_retries,
        "retry_min_wait": settings.llm_retry_min_wait,
        "retry_max_wait": settings.llm_retry_max_wait,
        "retry_multiplier": RETRY_MULTIPLIER,
        "timeout": settings.llm_timeout_seconds,
    }
    if settings.llm_api_key is not None:
        llm["api_key"] = settings.llm_api_key.get_secret_value()
    if settings.llm_base_url:
        llm["base_url"] = settings.llm_base_url
    if settings.llm_input_cost_per_token is not None:
        llm["input_cost_per_token"] = settings.llm_input_cost_per_token
    if settings.llm_output_cost_per_token is not None:
        llm["output_cost_per_token"] = settings.llm_output_cost_per_token
    return llm


def create_request(
    settings: Settings, request: AgentRequest, conversation_id: str
) -> dict[str, Any]:
    agent: dict[str, Any] = {
        "llm": llm_settings(settings),
        # Off by default on the server: AGENTS.md, .agents/skills, .openhands/{skills,microagents}.
        "agent_context": {
            "load_project_skills": request.load_project_skills,
            "load_public_skills": False,
        },
    }
    if request.tools is not None:
        agent["tools"] = [{"name": name} for name in request.tools]
    body: dict[str, Any] = {
        "conversation_id": conversation_id,
        "agent_settings": agent,
        "workspace": {"kind": "LocalWorkspace", "working_dir": request.working_dir},
        "initial_message": {
            "role": "user",
            "content": [{"type": "text", "text": request.prompt}],
            "run": True,
        },
        "max_iterations": request.max_iterations or settings.max_iterations,
        "autotitle": False,  # no extra LLM call, no spurious error event after `finished`
        "confirmation_policy": {"kind": "NeverConfirm"},
    }
    if request.hook_config:
        body["hook_config"] = request.hook_config
    return body
