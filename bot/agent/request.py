"""The agent-server request that starts a conversation, built purely from settings and the run:
the LLM block (the gateway's URL and the run's credential, never the provider key), tools,
skills, hooks, limits."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Any

from bot.agent.gateway import LLMAccess
from bot.agent.gateway.access import PROXY_PREFIX
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
    llm: LLMAccess  # the gateway and this run's credential
    hook_config: dict[str, Any] | None = None
    tools: list[str] | None = None  # None: the agent-server's default tool set
    max_iterations: int | None = None
    attempt: str = ""
    load_project_skills: bool = True  # off for untrusted checkouts (a PR's head under review)


RETRY_MULTIPLIER = 2

# How long a dead LLM takes to be reported. The agent-server (openhands-sdk 1.58) has no
# first-token timeout: its `timeout` is a hard limit on each whole attempt. The bot's LLM gateway
# (bot/agent/gateway) calls the provider streaming and fails an attempt whose first chunk is
# later than LLM_FIRST_TOKEN_SECONDS or that goes silent for LLM_IDLE_SECONDS (a 408, which the
# agent-server's litellm reports as a timeout and retries). So a dead provider costs attempts x
# the first-token bound plus the waits between attempts (`worst_case_llm_seconds`, under two
# minutes by default), while an answer that keeps streaming is never cut: the agent-server's
# own per-attempt `timeout` (LLM_TIMEOUT_SECONDS) is only a generous backstop.


def worst_case_llm_seconds(settings: Settings) -> float:
    """The longest one LLM call to a dead provider takes before the run is told it failed: every
    attempt waiting out the gateway's first-token bound, with the agent-server's exponential
    waits between attempts (tenacity's: multiplier x 2^n, clamped)."""
    attempts = max(settings.llm_num_retries, 1)
    waits = sum(
        min(
            max(RETRY_MULTIPLIER * 2.0**n, settings.llm_retry_min_wait), settings.llm_retry_max_wait
        )
        for n in range(attempts - 1)
    )
    return attempts * settings.llm_first_token_seconds + waits


def llm_settings(settings: Settings, access: LLMAccess) -> dict[str, Any]:
    """The `llm` block in litellm's naming: the gateway and the run's credential. The provider
    key, endpoint and prices stay with the gateway.

    Through the gateway (`litellm_proxy/<model>`), the real model is also its canonical name:
    the agent-server then reads the context window and capabilities from its own litellm, the
    same table the gateway would answer from, instead of a blocking GET /v1/model/info per LLM
    object it builds (two per conversation create, one of them from a copy without the key).
    It is also told to speak chat completions, the one API the gateway serves: left to choose,
    it would post OpenAI's newer models (gpt-5 and on) to /v1/responses and fail."""
    block: dict[str, Any] = {
        "usage_id": "agent",
        "model": access.model,
        "base_url": access.base_url,
        "api_key": access.api_key,
        "num_retries": settings.llm_num_retries,
        "retry_min_wait": settings.llm_retry_min_wait,
        "retry_max_wait": settings.llm_retry_max_wait,
        "retry_multiplier": RETRY_MULTIPLIER,
        "timeout": math.ceil(settings.llm_timeout_seconds),  # the server wants whole seconds
    }
    if access.model.startswith(PROXY_PREFIX):
        block["model_canonical_name"] = access.model.removeprefix(PROXY_PREFIX)
        block["api_mode"] = "chat"
    return block


def create_request(
    settings: Settings, request: AgentRequest, conversation_id: str
) -> dict[str, Any]:
    agent: dict[str, Any] = {
        "llm": llm_settings(settings, request.llm),
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
