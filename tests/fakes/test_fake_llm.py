"""Checks that ScriptedLLM speaks OpenAI chat completions as litellm expects and fails loudly."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

# Before litellm is imported: else it fetches its model cost map from the network.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import litellm
from litellm import exceptions
from litellm.llms.custom_httpx.async_client_cleanup import (
    close_litellm_async_clients,
)

from tests.fakes.llm import (
    ScriptedLLM,
    error,
    finish,
    hang,
    repeat,
    sleep,
    text,
    tool_call,
    tool_calls,
)

# litellm's response types hold a TypedDict with a ReadOnly item; pydantic warns once, when it
# first builds their schema, and under `-W error` litellm turns that into APIConnectionError.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Item 'summary' on TypedDict class 'ChatCompletionReasoningItem' is using the"
    " `ReadOnly` qualifier:UserWarning"
)

API_KEY = "sk-test-fake"
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"The {name} tool.",
            "parameters": {"type": "object", "properties": {}},
        },
    }
    for name in ("terminal", "file_editor", "finish")
]


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    fake = ScriptedLLM(API_KEY)
    with fake.serving():
        yield fake


@pytest.fixture(autouse=True)
async def _close_litellm_clients() -> AsyncIterator[None]:
    # litellm caches one HTTP client per (key, base URL); each test has its own event loop.
    yield
    await close_litellm_async_clients()  # type: ignore[no-untyped-call]
    litellm.in_memory_llm_clients_cache.flush_cache()  # type: ignore[no-untyped-call]


async def ask(
    llm: ScriptedLLM, content: str = "hello", *, api_key: str = API_KEY, **options: Any
) -> Any:
    """One chat completion through litellm, as the agent-server makes it (no retries)."""
    return await litellm.acompletion(
        model="openai/fake",
        api_base=llm.base_url,
        api_key=api_key,
        messages=[
            {"role": "system", "content": "You are a test agent."},
            {"role": "user", "content": content},
        ],
        tools=TOOLS,
        num_retries=0,
        max_retries=0,
        **options,
    )


async def eventually(check: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"still false after {seconds} s")


async def test_tool_call_round_trip(llm: ScriptedLLM) -> None:
    llm.script(tool_call("terminal", command="ls -la", is_input=False))

    response = await ask(llm, "list the files")

    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.type == "function"
    assert call.function.name == "terminal"
    assert json.loads(call.function.arguments) == {"command": "ls -la", "is_input": False}
    [record] = llm.requests
    assert record.status == 200
    assert record.headers["authorization"] == f"Bearer {API_KEY}"
    assert record.json["model"] == "fake"
    assert response.model.endswith("fake")
    assert record.usage is not None
    assert response.usage.prompt_tokens == record.usage.prompt_tokens > 10
    assert response.usage.completion_tokens == record.usage.completion_tokens > 0
    assert response.usage.total_tokens == record.usage.total_tokens
    assert llm.tool_names() == ["terminal", "file_editor", "finish"]
    assert llm.system_prompt(0) == "You are a test agent."
    llm.assert_script_done()
    llm.assert_no_unexpected()


async def test_several_tool_calls_get_unique_ids(llm: ScriptedLLM) -> None:
    step = tool_calls(
        ("terminal", {"command": "pwd"}),
        ("file_editor", {"command": "view", "path": "/tmp"}),
        content="Looking around.",
    )
    llm.script(step, step)

    first = (await ask(llm)).choices[0].message
    second = (await ask(llm)).choices[0].message

    assert first.content == "Looking around."
    assert [call.function.name for call in first.tool_calls] == ["terminal", "file_editor"]
    assert json.loads(first.tool_calls[1].function.arguments) == {"command": "view", "path": "/tmp"}
    ids = [call.id for call in first.tool_calls + second.tool_calls]
    assert len(set(ids)) == 4


async def test_text_answer_stops(llm: ScriptedLLM) -> None:
    llm.script(text("All done."))

    response = await ask(llm)

    assert response.choices[0].finish_reason == "stop"
    assert response.choices[0].message.content == "All done."
    assert not response.choices[0].message.tool_calls


@pytest.mark.parametrize(
    ("status", "exception"),
    [(500, exceptions.InternalServerError), (429, exceptions.RateLimitError)],
    ids=["500-internal", "429-rate-limit"],
)
async def test_error_step_raises_litellm_exception(
    llm: ScriptedLLM, status: int, exception: type[Exception]
) -> None:
    llm.script(error(status, "injected trouble"), finish("recovered"))

    with pytest.raises(exception, match="injected trouble"):
        await ask(llm)
    retry = await ask(llm)

    assert json.loads(retry.choices[0].message.tool_calls[0].function.arguments) == {
        "message": "recovered"
    }
    assert [record.status for record in llm.requests] == [status, 200]
    assert llm.requests[0].response["error"]["message"] == "injected trouble"
    llm.assert_no_unexpected()
    llm.assert_script_done()


async def test_match_routes_concurrent_conversations(llm: ScriptedLLM) -> None:
    alpha = llm.script(text("alpha-1"), text("alpha-2"), match="[conv-alpha]")
    beta = llm.script(text("beta-1"), match="[conv-beta]")
    default = llm.script(text("default-1"))

    answers = await asyncio.gather(
        ask(llm, "task [conv-alpha]"),
        ask(llm, "task [conv-beta]"),
        ask(llm, "no marker"),
        ask(llm, "again [conv-alpha]"),
    )

    contents = sorted(answer.choices[0].message.content for answer in answers)
    assert contents == ["alpha-1", "alpha-2", "beta-1", "default-1"]
    by_text = {record.messages[-1]["content"]: record.script for record in llm.requests}
    assert by_text == {
        "task [conv-alpha]": alpha,
        "again [conv-alpha]": alpha,
        "task [conv-beta]": beta,
        "no marker": default,
    }
    llm.assert_script_done()


async def test_exhausted_script_answers_500_and_is_reported(llm: ScriptedLLM) -> None:
    llm.script(text("only one"))
    await ask(llm)

    with pytest.raises(exceptions.InternalServerError, match="exhausted"):
        await ask(llm, "one more please")

    [problem] = llm.unexpected
    assert "default script is exhausted after 1 step(s)" in problem
    assert "one more please" in problem
    with pytest.raises(AssertionError, match="exhausted"):
        llm.assert_no_unexpected()


async def test_no_matching_script_is_reported(llm: ScriptedLLM) -> None:
    llm.script(text("for alpha"), match="[conv-alpha]")

    with pytest.raises(exceptions.InternalServerError, match="no script matches"):
        await ask(llm, "unmarked")

    assert llm.requests[0].script is None
    assert len(llm.unexpected) == 1


async def test_wrong_api_key_gets_401(llm: ScriptedLLM) -> None:
    llm.script(text("never served"))

    with pytest.raises(exceptions.AuthenticationError):
        await ask(llm, api_key="sk-wrong")
    async with httpx.AsyncClient() as client:
        anonymous = await client.post(f"{llm.base_url}/chat/completions", json={"messages": []})

    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "invalid_api_key"
    assert len(llm.unexpected) == 2
    assert "sk-wrong" in llm.unexpected[0]
    assert llm.completions[0].json is None  # rejected before the body was looked at
    with pytest.raises(AssertionError, match="not finished"):
        llm.assert_script_done()


async def test_models_list_and_unknown_paths(llm: ScriptedLLM) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=llm.base_url, headers=headers) as client:
        models = await client.get("/models")
        unknown = await client.post("/embeddings", json={"input": "x"})

    assert models.json()["data"][0]["id"] == "fake"
    assert unknown.status_code == 404
    assert [record.path for record in llm.requests] == ["/v1/models", "/v1/embeddings"]
    assert llm.unexpected == [
        "#1 POST /v1/embeddings: ScriptedLLM does not serve POST /v1/embeddings"
    ]


async def test_sleep_keeps_other_conversations_answered(llm: ScriptedLLM) -> None:
    llm.script(sleep(0.5, then=text("slow")), match="[slow]")
    llm.script(text("fast"), match="[fast]")
    finished: list[str] = []

    async def timed(content: str) -> None:
        response = await ask(llm, content)
        finished.append(response.choices[0].message.content)

    started = time.monotonic()
    await asyncio.gather(timed("[slow]"), timed("[fast]"))

    assert finished == ["fast", "slow"]
    assert 0.5 <= time.monotonic() - started < 3


async def test_hang_times_out_client_and_does_not_block_stop() -> None:
    llm = ScriptedLLM(API_KEY)
    llm.script(hang())
    with llm.serving():
        with pytest.raises(exceptions.Timeout):
            await ask(llm, timeout=0.5)
        await eventually(lambda: llm.requests[0].disconnected)
        started = time.monotonic()
    assert time.monotonic() - started < 2
    assert llm.requests[0].status == 0  # never answered
    llm.assert_no_unexpected()


async def test_stop_releases_a_client_still_waiting_on_hang() -> None:
    llm = ScriptedLLM(API_KEY)
    llm.script(hang())
    serving = llm.serving()
    serving.__enter__()
    async with httpx.AsyncClient(timeout=10) as client:
        pending = asyncio.create_task(
            client.post(
                f"{llm.base_url}/chat/completions",
                headers={"Authorization": f"Bearer {API_KEY}"},
                json={"model": "fake", "messages": [{"role": "user", "content": "hi"}]},
            )
        )
        await eventually(lambda: bool(llm.requests))
        started = time.monotonic()
        await asyncio.to_thread(serving.__exit__, None, None, None)
        stopped_after = time.monotonic() - started
        response = await pending

    assert stopped_after < 2
    assert response.status_code == 503
    assert response.json()["error"]["message"] == "ScriptedLLM stopped"


async def test_dynamic_step_reads_the_request(llm: ScriptedLLM) -> None:
    def answer_with_workdir(request: dict[str, Any]) -> Any:
        system = request["messages"][0]["content"]
        workdir = system.split("working dir: ")[1].split()[0]
        return finish(f"worked in {workdir}")

    llm.script(answer_with_workdir)

    response = await litellm.acompletion(
        model="openai/fake",
        api_base=llm.base_url,
        api_key=API_KEY,
        messages=[
            {"role": "system", "content": "Your working dir: /repos/widgets now."},
            {"role": "user", "content": "go"},
        ],
        max_retries=0,
    )

    arguments = json.loads(response.choices[0].message.tool_calls[0].function.arguments)
    assert arguments == {"message": "worked in /repos/widgets"}


async def test_broken_dynamic_step_is_reported(llm: ScriptedLLM) -> None:
    def broken(request: dict[str, Any]) -> Any:
        raise KeyError("no such field")

    llm.script(broken)

    with pytest.raises(exceptions.InternalServerError, match="ScriptedLLM crashed"):
        await ask(llm)
    [problem] = llm.unexpected
    assert "KeyError: 'no such field'" in problem


async def test_repeat(llm: ScriptedLLM) -> None:
    llm.script(repeat(text("twice"), 2), finish("done"), match="[counted]")
    llm.script(repeat(tool_call("terminal", command="echo same")), match="[loop]")

    counted = [await ask(llm, "[counted]") for _ in range(3)]
    looped = [await ask(llm, "[loop]") for _ in range(4)]

    assert [r.choices[0].message.content for r in counted[:2]] == ["twice", "twice"]
    assert counted[2].choices[0].message.tool_calls[0].function.name == "finish"
    assert {r.choices[0].message.tool_calls[0].function.arguments for r in looped} == {
        '{"command": "echo same"}'
    }
    llm.assert_script_done()  # an endless repeat counts as done
    with pytest.raises(ValueError, match="nothing can follow"):
        llm.script(repeat(text("forever")), text("unreachable"), match="[bad]")


# litellm's stream wrapper reads `model_fields`/`model_computed_fields` on an instance
# (deprecated since pydantic 2.11); the agent-server does not stream, so only this test meets it.
@pytest.mark.filterwarnings(
    "ignore:Accessing the 'model_(computed_)?fields' attribute on the instance:DeprecationWarning"
)
async def test_stream_is_answered_as_server_sent_events(llm: ScriptedLLM) -> None:
    llm.script(tool_call("terminal", command="make test"), text("streamed text"))

    chunks = [
        chunk async for chunk in await ask(llm, stream=True, stream_options={"include_usage": True})
    ]
    rebuilt: Any = litellm.stream_chunk_builder(chunks)
    texts = [chunk async for chunk in await ask(llm, stream=True)]

    assert rebuilt is not None
    call = rebuilt.choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "terminal",
        {"command": "make test"},
    )
    usage = llm.requests[0].usage
    assert usage is not None
    assert rebuilt.usage.completion_tokens == usage.completion_tokens
    assert "".join(chunk.choices[0].delta.content or "" for chunk in texts) == "streamed text"
    assert all(record.stream for record in llm.requests)


async def test_inspection_helpers_normalise_content(llm: ScriptedLLM) -> None:
    llm.script(text("ok"))
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": [{"type": "text", "text": "System part."}]},
        {"role": "user", "content": [{"type": "text", "text": "Do it."}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "terminal", "arguments": '{"command": "ls"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "a.txt"}]},
    ]
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=llm.base_url, headers=headers) as client:
        response = await client.post(
            "/chat/completions", json={"model": "m", "messages": messages, "tools": TOOLS}
        )

    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "m"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "ok"}
    assert llm.system_prompt() == "System part."
    assert llm.tool_results() == ["a.txt"]
    assert llm.all_text() == "System part.\nDo it.\n\na.txt"
    assert llm.tool_names() == ["terminal", "file_editor", "finish"]
