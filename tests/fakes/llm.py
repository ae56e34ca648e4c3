"""A scripted OpenAI-compatible LLM on a real loopback port, so agent runs are tested end to end."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import math
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from starlette.types import Receive, Scope, Send

from tests.servers import FakeServer

DEFAULT_API_KEY = "sk-test-fake"
COMPLETIONS_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
HANG_SECONDS = 3600.0
# (type, code) of OpenAI's error bodies, by status; others fall back by class (4xx / 5xx).
ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", "service_unavailable"),
}


# ---------------------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class ToolCall:
    """One function call; `arguments` is the JSON string sent on the wire."""

    name: str
    arguments: str

    @property
    def args(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.arguments)
        return parsed


@dataclass(frozen=True)
class Reply:
    """An assistant message: text, tool calls, or both (the text is the agent's "thought")."""

    content: str | None = None
    calls: tuple[ToolCall, ...] = ()

    @property
    def finish_reason(self) -> Literal["tool_calls", "stop"]:
        return "tool_calls" if self.calls else "stop"


@dataclass(frozen=True)
class Error:
    """Answer `status` with an OpenAI-style error body."""

    status: int
    message: str
    error_type: str
    code: str | None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Sleep:
    """Wait `seconds` (the server keeps answering other requests), then answer `then`."""

    seconds: float
    then: Step


@dataclass(frozen=True)
class Trickle:
    """Answer `reply` slowly: its text in `pieces` chunks, `every` seconds apart (a slow model
    that keeps streaming). Answered without streaming, the whole reply comes after that long."""

    reply: Reply
    every: float
    pieces: int = 6


@dataclass(frozen=True)
class Hang:
    """Never answer; released when the client disconnects or the fake stops (503)."""

    seconds: float = HANG_SECONDS


@dataclass(frozen=True)
class Repeat:
    """`step` for every request from here on; only as the last step of a script."""

    step: Step


type Dynamic = Callable[[dict[str, Any]], Step]
type Step = Reply | Error | Sleep | Hang | Trickle | Repeat | Dynamic
type _Answer = Reply | Error | Sleep | Hang | Trickle


def tool_call(name: str, /, **arguments: Any) -> Reply:
    """One assistant message calling one tool, e.g. ``tool_call("terminal", command="ls")``."""
    return tool_calls((name, arguments))


def tool_calls(*calls: tuple[str, Mapping[str, Any]], content: str | None = None) -> Reply:
    """One assistant message calling several tools (ids are assigned when it is served)."""
    if not calls:
        raise ValueError("tool_calls() needs at least one (name, arguments) pair")
    return Reply(
        content=content,
        calls=tuple(ToolCall(name, json.dumps(dict(arguments))) for name, arguments in calls),
    )


def text(content: str) -> Reply:
    """A plain assistant answer (finish_reason "stop"): OpenHands ends the run with it."""
    return Reply(content=content)


def finish(message: str) -> Reply:
    return tool_call("finish", message=message)


def error(
    status: int,
    message: str | None = None,
    *,
    error_type: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Error:
    """An HTTP error answer, e.g. ``error(429, headers={"retry-after": "0"})``."""
    default_type, default_code = ERROR_KINDS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    return Error(
        status=status,
        message=message if message is not None else _default_message(status),
        error_type=error_type or default_type,
        code=code if code is not None else default_code,
        headers=tuple((key.lower(), value) for key, value in (headers or {}).items()),
    )


def _default_message(status: int) -> str:
    if status == 401:  # litellm needs OpenAI's wording to raise AuthenticationError
        return "Incorrect API key provided (scripted error 401)"
    return f"scripted error {status}"


def sleep(seconds: float, then: Step) -> Sleep:
    if isinstance(then, Repeat):
        raise TypeError("sleep(then=repeat(...)) is not supported: put repeat() outside")
    return Sleep(seconds, then)


def trickle(reply: Reply, *, every: float, pieces: int = 6) -> Trickle:
    """`reply` streamed in `pieces` chunks `every` seconds apart."""
    if pieces < 1 or every < 0:
        raise ValueError("trickle needs pieces >= 1 and every >= 0")
    return Trickle(reply, every, pieces)


def hang() -> Hang:
    return Hang()


def repeat(step: Step, times: int | None = None) -> Repeat | tuple[Step, ...]:
    """`step` `times` times, or forever (for looping agents) when `times` is None."""
    if isinstance(step, Repeat):
        raise TypeError("repeat(repeat(...)) makes no sense")
    if times is None:
        return Repeat(step)
    if times < 0:
        raise ValueError("times must be >= 0")
    return (step,) * times


# ---------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_json(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass
class LLMRequest:
    """One request the fake received and what it answered (`status` 0 while still pending)."""

    index: int
    method: str
    path: str
    headers: dict[str, str]
    json: Any
    timestamp: float
    script: Script | None = None
    status: int = 0
    response: Any = None
    usage: Usage | None = None
    stream: bool = False
    disconnected: bool = False

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages = self.json.get("messages") if isinstance(self.json, dict) else None
        return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []

    @property
    def text(self) -> str:
        """Every message's content as text, one message per line."""
        return "\n".join(content_text(message.get("content")) for message in self.messages)


def content_text(content: Any) -> str:
    """A message `content` (string, None, or a list of parts) as plain text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return str(content)


def _tokens(chars: int) -> int:
    return max(1, math.ceil(chars / 4))


class Script:
    """Steps served in order to the requests routed here (`match` marker, or the default)."""

    def __init__(self, lock: threading.RLock, match: str | None, steps: tuple[Step, ...]) -> None:
        self.match = match
        self._lock = lock
        self._pending: list[Step] = []
        self.served = 0
        self.extend(*steps)

    @property
    def name(self) -> str:
        return "default script" if self.match is None else f"script match={self.match!r}"

    def extend(self, *steps: Step | tuple[Step, ...]) -> None:
        """Append steps; a tuple (what `repeat(step, n)` returns) is spliced in."""
        with self._lock:
            for item in steps:
                for step in item if isinstance(item, tuple) else (item,):
                    if self._pending and isinstance(self._pending[-1], Repeat):
                        raise ValueError(f"{self.name}: nothing can follow repeat() forever")
                    self._pending.append(step)

    @property
    def remaining(self) -> list[Step]:
        """Steps not served yet; a trailing endless `repeat()` is not counted."""
        with self._lock:
            return [step for step in self._pending if not isinstance(step, Repeat)]

    def _take(self) -> Step | None:
        with self._lock:
            if not self._pending:
                return None
            self.served += 1
            head = self._pending[0]
            if isinstance(head, Repeat):
                return head.step
            return self._pending.pop(0)

    def __repr__(self) -> str:
        return f"<{self.name}: {self.served} served, {len(self.remaining)} left>"


class _Unexpected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ScriptedLLM(FakeServer):
    """An OpenAI-compatible chat-completions server answering from per-test scripts.

    Point litellm at it with ``model="openai/fake", base_url=llm.base_url``. Rules:

    - Every request needs ``Authorization: Bearer <api_key>``, else 401.
    - ``POST /v1/chat/completions`` is routed to the first script (in `script()` order) whose
      `match` marker occurs in some message's text, else to the default script; it is answered
      with that script's next step. A request with no script left to answer gets 500.
    - ``"stream": true`` is answered with Server-Sent Events chunks of the same message.
    - ``GET /v1/models`` lists one model, ``fake``.
    - Anything else, and every 401/500 above, is listed in `unexpected`.
    - Usage is deterministic: prompt_tokens = ceil(request body bytes / 4), completion_tokens =
      ceil(characters of content, tool names and arguments / 4), each at least 1.
    """

    def __init__(self, api_key: str = DEFAULT_API_KEY) -> None:
        self.api_key = api_key
        self._lock = threading.RLock()
        self._scripts: list[Script] = []
        self._default: Script | None = None
        self._requests: list[LLMRequest] = []
        self._unexpected: list[str] = []
        self._ids = itertools.count(1)
        # Waiters (sleep/hang) also wait on this event, set from the test thread on stop.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._stopping = False

    # ------------------------------------------------------------------ scripting

    def script(self, *steps: Step | tuple[Step, ...], match: str | None = None) -> Script:
        """Add a script; with `match`, it serves requests whose messages contain that text."""
        with self._lock:
            if match is None:
                if self._default is not None:
                    raise ValueError("a default script exists already: use its .extend()")
                self._default = Script(self._lock, None, ())
                self._default.extend(*steps)
                return self._default
            if not match:
                raise ValueError("match must be a non-empty marker")
            if any(script.match == match for script in self._scripts):
                raise ValueError(f"a script with match={match!r} exists already")
            script = Script(self._lock, match, ())
            script.extend(*steps)
            self._scripts.append(script)
            return script

    # ------------------------------------------------------------------ serving

    # FakeServer gives `serving()` and `url` (base URL without /v1, e.g. http://127.0.0.1:54321).

    def _serving_stopping(self) -> None:
        self._release_waiters()  # requests waiting in a sleep or hang answer, so the server stops

    def _serving_stopped(self) -> None:
        with self._lock:
            self._loop = None
            self._stop_event = None
            self._stopping = False

    @property
    def base_url(self) -> str:
        """What OpenAI clients take as base URL: ``<url>/v1``."""
        return self.url + "/v1"

    def _release_waiters(self) -> None:
        with self._lock:
            self._stopping = True
            loop, event = self._loop, self._stop_event
        if loop is not None and event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    def _stop_waiter(self) -> asyncio.Event:
        with self._lock:
            if self._stop_event is None:
                self._loop = asyncio.get_running_loop()
                self._stop_event = asyncio.Event()
                if self._stopping:
                    self._stop_event.set()
            return self._stop_event

    # ------------------------------------------------------------------ inspection

    @property
    def requests(self) -> list[LLMRequest]:
        """Snapshots of every request, in arrival order (including /v1/models and rejects)."""
        with self._lock:
            return [dataclasses.replace(record) for record in self._requests]

    @property
    def completions(self) -> list[LLMRequest]:
        """Snapshots of the chat-completion requests only."""
        return [r for r in self.requests if r.method == "POST" and r.path == COMPLETIONS_PATH]

    @property
    def unexpected(self) -> list[str]:
        with self._lock:
            return list(self._unexpected)

    def assert_no_unexpected(self) -> None:
        unexpected = self.unexpected
        if unexpected:
            raise AssertionError("ScriptedLLM got unexpected requests:\n" + "\n".join(unexpected))

    def assert_script_done(self) -> None:
        with self._lock:
            scripts = [*self._scripts, *([self._default] if self._default else [])]
            left = [
                f"{script.name}: {len(script.remaining)} step(s) left, next {script.remaining[0]!r}"
                for script in scripts
                if script.remaining
            ]
        if left:
            raise AssertionError("ScriptedLLM scripts not finished:\n" + "\n".join(left))

    def tool_names(self, request_index: int = -1) -> list[str]:
        """Names of the tools offered in that chat-completion request (index into completions)."""
        body = self.completions[request_index].json
        return [
            tool["function"]["name"]
            for tool in body.get("tools") or []
            if isinstance(tool, dict) and isinstance(tool.get("function"), dict)
        ]

    def system_prompt(self, request_index: int = -1) -> str:
        """Text of the first system message of that chat-completion request."""
        record = self.completions[request_index]
        for message in record.messages:
            if message.get("role") == "system":
                return content_text(message.get("content"))
        raise AssertionError(f"completion request #{record.index} has no system message")

    def tool_results(self) -> list[str]:
        """Each `role: tool` message's text, once per (tool_call_id, text), in order seen."""
        seen: dict[tuple[Any, str], None] = {}
        for record in self.completions:
            for message in record.messages:
                if message.get("role") == "tool":
                    seen.setdefault(
                        (message.get("tool_call_id"), content_text(message.get("content")))
                    )
        return [result for _, result in seen]

    def all_text(self) -> str:
        """Every message content of every chat-completion request, joined by newlines."""
        return "\n".join(record.text for record in self.completions)

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw = await _read_body(receive)
        if raw is None:
            return
        with self._lock:
            record = LLMRequest(
                index=len(self._requests),
                method=scope["method"].upper(),
                path=scope["path"],
                headers={
                    key.decode("latin-1").lower(): value.decode("latin-1")
                    for key, value in scope["headers"]
                },
                json=None,
                timestamp=time.time(),
            )
            self._requests.append(record)
        try:
            await self._handle(record, raw, receive, send)
        except _Unexpected as problem:
            self._note_unexpected(record, problem.message)
            await self._send_error(record, send, error(problem.status, problem.message))
        except Exception:
            self._note_unexpected(record, "crashed the fake:\n" + traceback.format_exc())
            await self._send_error(record, send, error(500, "ScriptedLLM crashed, see unexpected"))

    async def _handle(self, record: LLMRequest, raw: bytes, receive: Receive, send: Send) -> None:
        if record.headers.get("authorization") != f"Bearer {self.api_key}":
            given = record.headers.get("authorization", "<none>")
            # OpenAI's wording: litellm maps it to AuthenticationError (else to BadRequestError).
            raise _Unexpected(401, f"Incorrect API key provided: Authorization {given!r}")
        if (record.method, record.path) == ("GET", MODELS_PATH):
            models = {
                "object": "list",
                "data": [{"id": "fake", "object": "model", "created": 0, "owned_by": "tests"}],
            }
            await self._send_json(record, send, 200, models)
            return
        if (record.method, record.path) != ("POST", COMPLETIONS_PATH):
            raise _Unexpected(404, f"ScriptedLLM does not serve {record.method} {record.path}")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise _Unexpected(400, f"request body is not JSON: {exc}") from None
        with self._lock:
            record.json = body
            record.stream = isinstance(body, dict) and bool(body.get("stream"))
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            raise _Unexpected(400, "request body needs a `messages` list")
        answer = _resolve(self._take_step(record), body)
        while isinstance(answer, Sleep | Hang):
            outcome = await self._wait(answer.seconds, receive)
            if outcome == "disconnected":
                with self._lock:
                    record.disconnected = True
                return
            if outcome == "stopping":
                await self._send_error(record, send, error(503, "ScriptedLLM stopped"))
                return
            if isinstance(answer, Hang):
                await self._send_error(record, send, error(504, "hang() timed out"))
                return
            answer = _resolve(answer.then, body)
        await self._answer(record, send, receive, body, answer, len(raw))

    async def _answer(
        self,
        record: LLMRequest,
        send: Send,
        receive: Receive,
        body: dict[str, Any],
        answer: Reply | Error | Trickle,
        size: int,
    ) -> None:
        if isinstance(answer, Error):
            await self._send_error(record, send, answer)
        elif isinstance(answer, Trickle):
            if not record.stream:  # no chunks to space out: the whole answer comes that late
                if await self._wait(answer.every * answer.pieces, receive) != "done":
                    return
            await self._send_reply(record, send, body, answer.reply, size, answer, receive)
        else:
            await self._send_reply(record, send, body, answer, size)

    def _take_step(self, record: LLMRequest) -> Step:
        text = record.text
        with self._lock:
            script = next((s for s in self._scripts if s.match and s.match in text), None)
            script = script or self._default
            record.script = script
            if script is None:
                markers = [s.match for s in self._scripts]
                raise _Unexpected(
                    500,
                    f"no script matches (markers {markers}) and there is no default script;"
                    f" last message: {_snippet(record)}",
                )
            step = script._take()
            if step is None:
                raise _Unexpected(
                    500,
                    f"{script.name} is exhausted after {script.served} step(s);"
                    f" last message: {_snippet(record)}",
                )
            return step

    async def _wait(
        self, seconds: float, receive: Receive
    ) -> Literal["done", "disconnected", "stopping"]:
        """Sleep, but give up early when the client goes away or the fake stops."""
        stop = self._stop_waiter()
        timer = asyncio.ensure_future(asyncio.sleep(seconds))
        gone = asyncio.ensure_future(_until_disconnect(receive))
        stopped = asyncio.ensure_future(stop.wait())
        tasks = {timer, gone, stopped}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if gone in done:
            return "disconnected"
        if stopped in done:
            return "stopping"
        return "done"

    def _note_unexpected(self, record: LLMRequest, message: str) -> None:
        with self._lock:
            self._unexpected.append(f"#{record.index} {record.method} {record.path}: {message}")

    # ------------------------------------------------------------------ answers

    async def _send_reply(
        self,
        record: LLMRequest,
        send: Send,
        body: dict[str, Any],
        reply: Reply,
        size: int,
        trickle: Trickle | None = None,
        receive: Receive | None = None,
    ) -> None:
        number = next(self._ids)
        calls = [
            {
                "id": f"call_fake_{number}_{position}",
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for position, call in enumerate(reply.calls)
        ]
        completion_chars = len(reply.content or "") + sum(
            len(call.name) + len(call.arguments) for call in reply.calls
        )
        usage = Usage(_tokens(size), _tokens(completion_chars))
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if calls:
            message["tool_calls"] = calls
        completion = {
            "id": f"chatcmpl-fake-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
            "usage": usage.as_json(),
        }
        with self._lock:
            record.usage = usage
        if record.stream:
            options = body.get("stream_options")
            with_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            await self._send_stream(record, send, completion, with_usage, trickle, receive)
        else:
            await self._send_json(record, send, 200, completion)

    async def _send_stream(
        self,
        record: LLMRequest,
        send: Send,
        completion: dict[str, Any],
        with_usage: bool,
        trickle: Trickle | None = None,
        receive: Receive | None = None,
    ) -> None:
        message = completion["choices"][0]["message"]
        head = {key: completion[key] for key in ("id", "created", "model")}
        head["object"] = "chat.completion.chunk"

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {
                **head,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }

        chunks = [chunk({"role": "assistant", "content": ""})]
        content = message["content"] or ""
        pieces = trickle.pieces if trickle is not None else 1
        size = max(1, math.ceil(len(content) / pieces))
        for offset in range(0, len(content), size):
            chunks.append(chunk({"content": content[offset : offset + size]}))
        for index, call in enumerate(message.get("tool_calls", [])):
            name = {"name": call["function"]["name"], "arguments": ""}
            start = {"index": index, "id": call["id"], "type": "function", "function": name}
            args = {"index": index, "function": {"arguments": call["function"]["arguments"]}}
            chunks += [chunk({"tool_calls": [start]}), chunk({"tool_calls": [args]})]
        chunks.append(chunk({}, completion["choices"][0]["finish_reason"]))
        if with_usage:
            chunks.append({**head, "choices": [], "usage": completion["usage"]})
        events = [f"data: {json.dumps(item)}\n\n".encode() for item in chunks]
        events.append(b"data: [DONE]\n\n")
        with self._lock:
            record.status, record.response = 200, chunks
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        for number, event in enumerate(events):
            if trickle is not None and receive is not None and 0 < number <= trickle.pieces:
                if await self._wait(trickle.every, receive) != "done":
                    with self._lock:
                        record.disconnected = True
                    return
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def _send_error(self, record: LLMRequest, send: Send, answer: Error) -> None:
        with self._lock:
            if record.status:  # the answer started already; a second one would crash uvicorn
                return
        body = {
            "error": {
                "message": answer.message,
                "type": answer.error_type,
                "param": None,
                "code": answer.code,
            }
        }
        await self._send_json(record, send, answer.status, body, answer.headers)

    async def _send_json(
        self,
        record: LLMRequest,
        send: Send,
        status: int,
        body: Any,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        raw = json.dumps(body).encode()
        with self._lock:
            record.status, record.response = status, body
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(raw)).encode()),
                    *((key.encode("latin-1"), value.encode("latin-1")) for key, value in headers),
                ],
            }
        )
        await send({"type": "http.response.body", "body": raw})


def _resolve(step: Step, body: dict[str, Any]) -> _Answer:
    """Call dynamic steps until a concrete answer comes out."""
    for _ in range(10):
        if isinstance(step, Reply | Error | Sleep | Hang | Trickle):
            return step
        if isinstance(step, Repeat):
            raise TypeError("repeat() is only allowed as a step of a script")
        step = step(body)
    raise TypeError(f"dynamic step did not resolve to an answer: {step!r}")


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client left first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _snippet(record: LLMRequest, limit: int = 200) -> str:
    messages = record.messages
    if not messages:
        return "<none>"
    last = messages[-1]
    words = content_text(last.get("content"))
    if len(words) > limit:
        words = words[:limit] + "..."
    return f"{last.get('role')}: {words!r}"
