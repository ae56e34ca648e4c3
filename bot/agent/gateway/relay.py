"""The gateway's HTTP face: OpenAI-compatible chat completions (streamed or not, tool calls
included) and the model-info routes the agent-server's litellm asks for, open only to a live run
credential, relayed to the provider with the bot's key and charged to the run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bot.agent.gateway import upstream
from bot.agent.gateway.credentials import Credentials, Grant
from bot.config import Settings

log = logging.getLogger(__name__)

CHARGE_WAIT_SECONDS = 2.0  # how long an answer waits for its charge to be recorded

MAX_BODY_BYTES = 32 * 1024 * 1024  # a long conversation with images stays well under this


def error(status: int, message: str, kind: str, code: str | None = None) -> JSONResponse:
    """An error in OpenAI's shape, which the client's litellm maps by its status."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status)


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _provider_error(exc: Exception) -> JSONResponse:
    """A failed provider call as the client should see it: a stall is a timeout (408: the
    client's litellm raises Timeout), a provider error keeps its status, anything else is 502."""
    if isinstance(exc, upstream.LLMStalled):
        return error(408, str(exc), "timeout", "llm_timeout")
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status <= 599:
        return error(status, str(exc)[:2000], "provider_error")
    return error(502, f"the LLM provider failed: {type(exc).__name__}", "provider_error")


def _sse(chunk: Any, alias: str) -> bytes:
    data = chunk.model_dump(exclude_none=True)
    data["model"] = alias
    return f"data: {json.dumps(data)}\n\n".encode()


class Relay:
    """The ASGI app; every request is checked against the credentials in Redis."""

    def __init__(self, settings: Settings, credentials: Credentials) -> None:
        self._settings = settings
        self._credentials = credentials
        self._late: set[asyncio.Task[None]] = set()  # charges waiting for Redis to answer
        self.app = Starlette(
            routes=[
                Route("/health", self.health, methods=["GET"]),
                Route("/v1/chat/completions", self.completions, methods=["POST"]),
                Route("/chat/completions", self.completions, methods=["POST"]),
                Route("/v1/model/info", self.model_info, methods=["GET"]),
                Route("/model/info", self.model_info, methods=["GET"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/models", self.models, methods=["GET"]),
            ]
        )

    @property
    def alias(self) -> str:
        """The model name clients use; the gateway maps it to the real one."""
        return self._settings.llm_model

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def _grant(self, request: Request) -> Grant:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        grant = None
        if scheme.lower() == "bearer" and token:
            grant = await self._credentials.grant(token.strip())
        if grant is None:
            log.warning(
                "llm gateway refused %s %s: no live run credential",
                request.method,
                request.url.path,
            )
            raise _Refused(error(401, "no valid run credential", "invalid_request_error"))
        return grant

    async def _body(self, request: Request) -> dict[str, Any]:
        raw = bytearray()
        async for part in request.stream():
            raw += part
            if len(raw) > MAX_BODY_BYTES:
                raise _Refused(error(413, "request too large", "invalid_request_error"))
        try:
            body = json.loads(raw)
        except ValueError:
            raise _Refused(error(400, "the body is not JSON", "invalid_request_error")) from None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            raise _Refused(error(400, "a `messages` list is required", "invalid_request_error"))
        return body

    async def model_info(self, request: Request) -> Response:
        try:
            await self._grant(request)
        except _Refused as refused:
            return refused.response
        entry = {
            "model_name": self.alias,
            "litellm_params": {"model": self._settings.llm_model},
            "model_info": upstream.model_info(self._settings),
        }
        return JSONResponse({"data": [entry]})

    async def models(self, request: Request) -> Response:
        try:
            await self._grant(request)
        except _Refused as refused:
            return refused.response
        model = {"id": self.alias, "object": "model", "created": 0, "owned_by": "openhands-bot"}
        return JSONResponse({"object": "list", "data": [model]})

    async def completions(self, request: Request) -> Response:
        try:
            grant = await self._grant(request)
            usage = await self._credentials.usage(grant.run_id)
            if usage.over(grant.budget):
                return error(
                    400,
                    f"cost budget reached: this run spent ${usage.cost:.4f} of its "
                    f"${grant.budget:.2f} (MAX_COST_PER_RUN)",
                    "budget_reached",
                    "cost_budget_reached",
                )
            body = await self._body(request)
        except _Refused as refused:
            return refused.response
        kwargs = upstream.provider_kwargs(self._settings, body)
        chunks: list[Any] = []
        source = upstream.stream(self._settings, kwargs)
        try:
            chunks.append(await anext(source))
        except StopAsyncIteration:
            return error(502, "the LLM provider sent an empty answer", "provider_error")
        except Exception as exc:
            log.warning("llm call failed: %s", exc, extra={"run_id": grant.run_id})
            return _provider_error(exc)
        if body.get("stream"):
            return StreamingResponse(
                self._relay(grant, body, source, chunks), media_type="text/event-stream"
            )
        try:
            async for chunk in source:
                chunks.append(chunk)
        except Exception as exc:
            log.warning("llm call failed mid-answer: %s", exc, extra={"run_id": grant.run_id})
            await self._charge(grant, body, chunks)
            return _provider_error(exc)
        answer = await self._charge(grant, body, chunks)
        data = answer.model_dump(exclude_none=True)
        data["model"] = body.get("model") or self.alias
        return JSONResponse(data)

    async def _relay(
        self,
        grant: Grant,
        body: dict[str, Any],
        source: AsyncIterator[Any],
        chunks: list[Any],
    ) -> AsyncIterator[bytes]:
        """Forward each chunk as it comes; a stall mid-answer ends the stream with an error
        event (the client's litellm raises, and the agent-server retries)."""
        alias = str(body.get("model") or self.alias)
        try:
            yield _sse(chunks[0], alias)
            try:
                async for chunk in source:
                    chunks.append(chunk)
                    yield _sse(chunk, alias)
            except Exception as exc:
                log.warning("llm stream failed: %s", exc, extra={"run_id": grant.run_id})
                failure = json.loads(bytes(_provider_error(exc).body))
                yield f"data: {json.dumps(failure)}\n\n".encode()
                return
            yield b"data: [DONE]\n\n"
        finally:
            with contextlib.suppress(Exception):
                await source.aclose()  # type: ignore[attr-defined]
            # Shielded: a client that hangs up mid-answer is still charged for what it got.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._charge(grant, body, chunks))

    async def _charge(self, grant: Grant, body: dict[str, Any], chunks: list[Any]) -> Any:
        answer = upstream.assemble(chunks, body["messages"])
        spent = upstream.spend(self._settings, answer)
        charge = self._credentials.charge(
            grant.run_id, spent.cost, spent.prompt_tokens, spent.completion_tokens
        )
        task = asyncio.create_task(charge)
        self._late.add(task)
        task.add_done_callback(self._charged)
        # The provider answered: a Redis outage (during which the charge waits for Redis) must
        # not hold the answer past the agent-server's timeout, or the run loses an answer it paid
        # for. The charge is recorded once Redis is back.
        if not (await asyncio.wait({task}, timeout=CHARGE_WAIT_SECONDS))[0]:
            log.warning("llm charge waits for Redis", extra={"run_id": grant.run_id})
        return answer

    def _charged(self, task: asyncio.Task[None]) -> None:
        self._late.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("llm charge lost: %s", type(task.exception()).__name__)
