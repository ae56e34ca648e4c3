"""The LLM gateway over real HTTP (TCP and its unix socket), real Redis and the scripted LLM as
the provider: credentials, budget, cost, streaming, and the first-token and idle bounds."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import litellm
import pytest
from redis.asyncio import Redis

from bot.agent.gateway import Gateway, GatewayProcess, LLMAccess, bind
from bot.agent.gateway.access import PROXY_PREFIX
from bot.agent.request import llm_settings
from bot.config import Settings
from tests.conftest import BOT_SECRETS, serving_gateway
from tests.fakes import llm as steps
from tests.fakes.llm import ScriptedLLM

PROMPT = [{"role": "user", "content": "Hello [[gw]]"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "terminal",
            "description": "Run a command",
            "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
        },
    }
]


@pytest.fixture
def gateway_settings(agent_settings: Settings) -> Settings:
    return agent_settings.model_copy(
        update={"llm_first_token_seconds": 4.0, "llm_idle_seconds": 4.0}
    )


@pytest.fixture(params=["process", "in-loop"])
async def gateway(
    request: pytest.FixtureRequest, gateway_settings: Settings, redis: Redis
) -> AsyncIterator[Gateway]:
    """The gateway as a worker runs it (a process of its own), and served in this loop."""
    if request.param == "in-loop":
        async with serving_gateway(gateway_settings, redis) as gateway:
            yield gateway
        return
    process = GatewayProcess(gateway_settings, redis)
    await process.start()
    try:
        yield process
    finally:
        await process.stop()


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _complete(
    access: LLMAccess, body: dict[str, Any], *, client: httpx.AsyncClient | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as fresh:
        http = client or fresh
        return await http.post(
            f"{access.base_url}/v1/chat/completions",
            json={"model": "whatever", "messages": PROMPT, **body},
            headers=_headers(access.api_key),
        )


def _sse(response: httpx.Response) -> list[dict[str, Any]]:
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]", events[-3:]
    return [json.loads(event) for event in events[:-1]]


async def test_a_run_credential_reaches_the_provider_streamed_or_not_and_is_charged(
    gateway: Gateway, llm: ScriptedLLM, gateway_settings: Settings
) -> None:
    llm.script(
        steps.tool_call("terminal", command="ls -la"),
        steps.text("plain answer"),
        match="[[gw]]",
    )
    async with gateway.access("run-a") as access:
        assert BOT_SECRETS["LLM_API_KEY"] not in repr(access)
        whole = await _complete(access, {"tools": TOOLS, "prompt_cache_key": "conv-1"})
        streamed = await _complete(
            access, {"stream": True, "stream_options": {"include_usage": True}}
        )

    assert whole.status_code == 200, whole.text
    message = whole.json()["choices"][0]["message"]
    (call,) = message["tool_calls"]
    assert call["function"]["name"] == "terminal"
    assert json.loads(call["function"]["arguments"]) == {"command": "ls -la"}
    assert whole.json()["choices"][0]["finish_reason"] == "tool_calls"
    assert streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    chunks = _sse(streamed)
    text = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")
    )
    assert text == "plain answer"
    # The provider saw the bot's key and the real model, never the run's credential.
    sent = llm.completions
    assert [r.headers["authorization"] for r in sent] == [
        f"Bearer {BOT_SECRETS['LLM_API_KEY']}"
    ] * 2
    assert {r.json["model"] for r in sent} == {"fake"}
    assert sent[0].json["tools"][0]["function"]["name"] == "terminal"
    assert sent[0].json["prompt_cache_key"] == "conv-1"  # the provider's cache stays per run
    # Charged to the run: the provider's own token counts at the configured prices.
    usage = await gateway.usage("run-a")
    prompt = sum(r.usage.prompt_tokens for r in sent if r.usage)
    completion = sum(r.usage.completion_tokens for r in sent if r.usage)
    assert (usage.calls, usage.prompt_tokens, usage.completion_tokens) == (2, prompt, completion)
    assert usage.cost == pytest.approx(prompt * 3e-6 + completion * 15e-6)
    assert await gateway.usage("another-run") == type(usage)()


async def test_only_a_live_run_credential_is_let_through(
    gateway: Gateway, llm: ScriptedLLM
) -> None:
    llm.script(steps.text("during the run"), match="[[gw]]")
    async with httpx.AsyncClient(timeout=30) as http:
        async with gateway.access("run-a") as first:
            pass  # run-a is over: its credential is revoked
        async with gateway.access("run-b") as second:
            during = await _complete(second, {}, client=http)
            stale = await _complete(first, {}, client=http)
            forged = await _complete(LLMAccess(second.base_url, "ohgw-" + "x" * 43, ""), {})
            bare = await http.post(f"{second.base_url}/v1/chat/completions", json={})
            # The provider's own key is no credential here either.
            key = await _complete(LLMAccess(second.base_url, BOT_SECRETS["LLM_API_KEY"], ""), {})
            info = await http.get(
                f"{second.base_url}/v1/model/info", headers=_headers(second.api_key)
            )
            bare_info = await http.get(f"{second.base_url}/v1/model/info")
            stale_info = await http.get(
                f"{second.base_url}/v1/model/info", headers=_headers(first.api_key)
            )
        after = await _complete(second, {}, client=http)

    assert during.status_code == 200
    for refused in (stale, forged, bare, key, after, bare_info, stale_info):
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["message"] == "no valid run credential"
    assert len(llm.completions) == 1  # nothing refused reached the provider
    assert info.json()["data"][0]["model_name"] == "openai/fake"
    assert BOT_SECRETS["LLM_API_KEY"] not in info.text


async def test_the_unix_socket_serves_the_same_gateway(gateway: Gateway, llm: ScriptedLLM) -> None:
    llm.script(steps.text("over the socket"), match="[[gw]]")
    transport = httpx.AsyncHTTPTransport(uds=str(gateway.socket_path))
    async with (
        gateway.access("run-a") as access,
        httpx.AsyncClient(transport=transport, timeout=30) as http,
    ):
        response = await _complete(LLMAccess("http://gateway", access.api_key, ""), {}, client=http)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "over the socket"


async def test_a_client_cannot_send_the_key_elsewhere(gateway: Gateway, llm: ScriptedLLM) -> None:
    thief = ScriptedLLM(api_key="anything")
    llm.script(steps.text("from the real provider"), match="[[gw]]")
    with thief.serving():
        async with gateway.access("run-a") as access:
            response = await _complete(
                access,
                {
                    "api_base": thief.base_url,
                    "base_url": thief.base_url,
                    "api_key": "sk-other",
                    "extra_body": {"api_base": thief.base_url},
                    "custom_llm_provider": "openai",
                },
            )
    assert response.status_code == 200, response.text
    assert thief.requests == []
    assert len(llm.completions) == 1


async def test_the_budget_is_a_hard_cap_with_a_clear_refusal(
    gateway_settings: Settings, redis: Redis, llm: ScriptedLLM
) -> None:
    llm.script(steps.text("x" * 400), match="[[gw]]")  # ~100 output tokens: well over $0.0001
    capped = gateway_settings.model_copy(update={"max_cost_per_run": 0.0001})
    async with serving_gateway(capped, redis) as gateway, gateway.access("run-a") as access:
        first = await _complete(access, {})
        second = await _complete(access, {})
        spent = await gateway.usage("run-a")

    assert first.status_code == 200
    assert second.status_code == 400
    assert "cost budget reached" in second.json()["error"]["message"]
    assert spent.calls == 1
    assert spent.cost > 0.0001
    assert len(llm.completions) == 1


async def test_a_silent_provider_fails_the_attempt_and_a_slow_stream_never_does(
    gateway: Gateway, llm: ScriptedLLM
) -> None:
    # First-token and idle bounds are 4 s; each slow answer streams for 9 s in 1.5 s steps.
    slow = steps.trickle(steps.text("slow but steady " * 4), every=1.5, pieces=6)
    llm.script(steps.hang(), steps.hang(), slow, slow, match="[[gw]]")
    llm.script(steps.trickle(steps.text("then silence " * 4), every=8.0), match="[[stall]]")
    async with gateway.access("run-a") as access:
        hung = await _complete(access, {})
        hung_streamed = await _complete(access, {"stream": True})
        slow_whole = await _complete(access, {})
        slow_streamed = await _complete(access, {"stream": True})
        stalled = await _complete(
            access,
            {"stream": True, "messages": [{"role": "user", "content": "[[stall]]"}]},
        )

    for refused in (hung, hung_streamed):
        assert refused.status_code == 408
        assert "no first token" in refused.json()["error"]["message"]
    assert slow_whole.status_code == 200
    assert slow_whole.json()["choices"][0]["message"]["content"] == "slow but steady " * 4
    streamed = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in _sse(slow_streamed) if c["choices"]
    )
    assert streamed == "slow but steady " * 4
    # A stream that started and then went silent ends with an error event, not [DONE].
    assert stalled.status_code == 200
    last = [line for line in stalled.text.splitlines() if line.startswith("data: ")][-1]
    assert json.loads(last[6:])["error"]["code"] == "llm_timeout"


async def test_litellm_as_the_agent_server_uses_it_streams_tool_calls(
    gateway: Gateway, llm: ScriptedLLM
) -> None:
    """The agent-server's own client: litellm with a `litellm_proxy/` model and base URL."""
    llm.script(
        steps.tool_call("terminal", command="make test"),
        steps.tool_call("terminal", command="make lint"),
        match="[[gw]]",
    )
    async with gateway.access("run-a") as access:
        kwargs = {
            "model": access.model,
            "base_url": access.base_url,
            "api_key": access.api_key,
            "messages": PROMPT,
            "tools": TOOLS,
        }
        whole = await litellm.acompletion(**kwargs)
        chunks = [chunk async for chunk in await litellm.acompletion(stream=True, **kwargs)]
    built = litellm.stream_chunk_builder(chunks)
    for answer, command in ((whole, "make test"), (built, "make lint")):
        (call,) = answer.choices[0].message.tool_calls
        assert call.function.name == "terminal"
        assert json.loads(call.function.arguments) == {"command": command}
    assert all(
        r.headers["authorization"].endswith(BOT_SECRETS["LLM_API_KEY"]) for r in llm.completions
    )


def test_the_agent_servers_llm_needs_no_model_info_from_the_gateway(
    agent_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LLM block names the real model as canonical: the agent-server's LLM (built twice per
    conversation create, once without its key) reads the context window from its own litellm,
    the same as the gateway's answer, with no GET /v1/model/info."""
    from openhands.sdk import LLM
    from openhands.sdk.llm.utils import model_info

    asked: list[str] = []
    monkeypatch.setattr(model_info.httpx, "get", lambda url, **_: asked.append(url))
    settings = agent_settings.model_copy(update={"llm_model": "anthropic/claude-sonnet-4-5"})
    access = LLMAccess("http://127.0.0.1:9", "ohgw-" + "x" * 43, PROXY_PREFIX + settings.llm_model)
    block = llm_settings(settings, access)
    assert block["model_canonical_name"] == "anthropic/claude-sonnet-4-5"
    for key in (access.api_key, None):  # the create's LLM, and its copy without the key
        llm = LLM(**{**block, "api_key": key})
        assert llm.model == "litellm_proxy/anthropic/claude-sonnet-4-5"
        expected = litellm.get_model_info(settings.llm_model)["max_input_tokens"]
        assert llm.effective_max_input_tokens == expected
    assert asked == []
    direct = LLMAccess("http://127.0.0.1:9", "sk-x", settings.llm_model)  # no gateway: as given
    assert "model_canonical_name" not in llm_settings(settings, direct)


@pytest.mark.parametrize("model", ["openai/gpt-5", "openai/gpt-4o", "anthropic/claude-sonnet-4-5"])
def test_the_agent_servers_llm_speaks_the_one_api_the_gateway_serves(
    agent_settings: Settings, model: str
) -> None:
    """The gateway relays chat completions only: an LLM the SDK would send to OpenAI's
    Responses API (gpt-5 and newer, by litellm's table) is told to use chat completions."""
    from openhands.sdk import LLM

    settings = agent_settings.model_copy(update={"llm_model": model})
    access = LLMAccess("http://127.0.0.1:9", "ohgw-" + "x" * 43, PROXY_PREFIX + model)
    llm = LLM(**llm_settings(settings, access))
    assert not llm.uses_responses_api()


async def test_the_gateways_tcp_connections_send_without_delay() -> None:
    """asyncio sets TCP_NODELAY only on a socket whose proto is TCP: the listener is made so,
    or Nagle held each answer's last write for the client's delayed ACK (~40 ms a call)."""
    sock, url = bind.bind_tcp("127.0.0.1:0")
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = writer.get_extra_info("socket")
        accepted.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(serve, sock=sock)
    async with server:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        _, writer = await asyncio.open_connection(host, int(port))
        assert await asyncio.wait_for(accepted, 10) != 0
        writer.close()
