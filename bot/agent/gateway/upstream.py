"""The gateway's one call to the provider: always streamed, so an attempt whose first chunk is
late, or that goes silent between chunks, fails fast while a slow answer that keeps streaming is
never cut; then the call's tokens and cost, priced by litellm (or the configured overrides)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from bot.config import Settings

# litellm fetches its price list from the network at import unless told not to (~4 s offline).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm

litellm.suppress_debug_info = True
# litellm's debug lines carry whole requests (prompts, and the provider call as a curl command)
# and cost seconds per call to format: whatever the bot's level, they stay off.
for _name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
    logging.getLogger(_name).setLevel(logging.WARNING)

# What a client may ask of the provider: OpenAI's chat parameters, nothing that could redirect
# the call or its key (api_base, base_url, api_key, custom_llm_provider, extra_body, ...).
ALLOWED_PARAMS = frozenset(
    {
        "messages",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "temperature",
        "top_p",
        "n",
        "stop",
        "max_tokens",
        "max_completion_tokens",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "seed",
        "response_format",
        "reasoning_effort",
        "thinking",
        "logprobs",
        "top_logprobs",
        "prompt_cache_key",  # keeps the provider's prompt cache on one conversation
        "user",
        "safety_identifier",
        "verbosity",
    }
)


class LLMStalled(Exception):
    """The provider sent no first chunk, or went silent between chunks, for too long."""

    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(f"the LLM provider sent {what} for {seconds:.0f}s")


@dataclass(frozen=True, slots=True)
class Spend:
    cost: float
    prompt_tokens: int
    completion_tokens: int


def provider_kwargs(settings: Settings, body: dict[str, Any]) -> dict[str, Any]:
    """litellm's arguments for one client request: the allowed parameters, the real model, the
    provider key and endpoint (never the client's), always streamed with usage."""
    kwargs = {name: value for name, value in body.items() if name in ALLOWED_PARAMS}
    kwargs.update(
        model=settings.llm_model,
        stream=True,
        stream_options={"include_usage": True},
        timeout=settings.llm_timeout_seconds,
        num_retries=0,  # the agent-server retries, and counts the attempts
        drop_params=True,
    )
    if settings.llm_api_key is not None:
        kwargs["api_key"] = settings.llm_api_key.get_secret_value()
    if settings.llm_base_url:
        kwargs["base_url"] = settings.llm_base_url
    return kwargs


async def stream(settings: Settings, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
    """The provider's chunks, each within its bound: LLM_FIRST_TOKEN_SECONDS for the first
    (connecting included), LLM_IDLE_SECONDS for every gap after it."""
    first, idle = settings.llm_first_token_seconds, settings.llm_idle_seconds
    try:
        async with asyncio.timeout(first):
            response = await litellm.acompletion(**kwargs)
            iterator = aiter(response)
            chunk = await anext(iterator)
    except TimeoutError:
        raise LLMStalled("no first token", first) from None
    except StopAsyncIteration:
        return
    yield chunk
    while True:
        try:
            async with asyncio.timeout(idle):
                chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise LLMStalled("nothing more", idle) from None
        yield chunk


async def warm_up() -> None:
    """Make one call that cannot connect (a bound, unlistened loopback port): litellm loads its
    provider code on the first call (seconds on a busy machine), which must not count against
    a run's first-token bound."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        with contextlib.suppress(Exception):
            response = await litellm.acompletion(
                model="openai/warm-up",
                messages=[{"role": "user", "content": "-"}],
                api_key="-",
                base_url=f"http://127.0.0.1:{port}/v1",
                stream=True,
                num_retries=0,
                max_retries=0,
                timeout=10,
            )
            async for _ in response:
                pass


def assemble(chunks: list[Any], messages: list[Any]) -> Any:
    """The whole answer from its chunks, as litellm's ModelResponse (None without chunks)."""
    if not chunks:
        return None
    return litellm.stream_chunk_builder(chunks, messages=messages)


def spend(settings: Settings, response: Any) -> Spend:
    """Tokens and cost of one answer: litellm's price for the model, or the configured ones."""
    usage = getattr(response, "usage", None) if response is not None else None
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or 0)
    custom = None
    if settings.llm_input_cost_per_token is not None or (
        settings.llm_output_cost_per_token is not None
    ):
        custom = {
            "input_cost_per_token": settings.llm_input_cost_per_token or 0.0,
            "output_cost_per_token": settings.llm_output_cost_per_token or 0.0,
        }
    cost = 0.0
    with contextlib.suppress(Exception):  # a model litellm cannot price costs 0, as before
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=settings.llm_model,
            prompt_tokens=prompt,
            completion_tokens=completion,
            custom_cost_per_token=custom,
        )
        cost = float(prompt_cost) + float(completion_cost)
    return Spend(cost, prompt, completion)


def model_info(settings: Settings) -> dict[str, Any]:
    """What litellm knows of the real model (context window, tool support), for the client."""
    with contextlib.suppress(Exception):
        info = litellm.get_model_info(settings.llm_model)
        return {key: value for key, value in dict(info).items() if value is not None}
    return {}


async def close_clients() -> None:
    """Close the provider connections litellm keeps per event loop, and forget them: they would
    otherwise outlive the loop that opened them (a worker's, as it stops) as unclosed sockets."""
    from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

    with contextlib.suppress(Exception):
        await close_litellm_async_clients()  # type: ignore[no-untyped-call]
    litellm.in_memory_llm_clients_cache.flush_cache()  # type: ignore[no-untyped-call]
