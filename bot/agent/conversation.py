"""Hold one agent conversation on an agent-server: create it retry-safely, follow its events
(WebSocket, polling when the socket drops), enforce the wall-clock and cost limits (the cost as
the LLM gateway recorded it), and turn the end state into a classified result (the run reads the
changed files: `changes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import websockets
from websockets.asyncio.client import connect

from bot.agent.gateway import Usage
from bot.agent.hooks import has_stop_hooks
from bot.agent.request import AgentRequest, conversation_id_for, create_request, llm_settings
from bot.agent.results import (
    ERROR_CODES,
    AgentError,
    AgentResult,
    Progress,
    ProgressCallback,
    Status,
)
from bot.agent.server_client import API_KEY_HEADER, AgentServerClient
from bot.config import Settings
from bot.errors import AgentServerError

log = logging.getLogger(__name__)

TERMINAL = frozenset({"finished", "error", "stuck"})


def _describe_action(event: dict[str, Any]) -> str:
    action = event.get("action") or {}
    tool = str(event.get("tool_name") or action.get("kind") or "action")
    if command := action.get("command"):
        detail = command if tool == "terminal" else f"{command} {action.get('path', '')}"
        return f"{tool}: {str(detail).strip()[:120]}"
    if path := action.get("path"):
        return f"{tool}: {path}"
    return tool


Meter = Callable[[], Awaitable[Usage]]  # what the run's LLM calls cost so far, per the gateway


class _Follower:
    """Tracks one conversation's state from its events."""

    def __init__(self, on_progress: ProgressCallback | None, throttle: float) -> None:
        self.progress = Progress()
        self.status = "idle"
        self.error: AgentError | None = None
        self.seen_running = False
        self.stop_hook_runs = 0
        self.awaiting: str | None = None
        self._on_progress = on_progress
        self._throttle = throttle
        self._last_sent = 0.0
        self.changed = asyncio.Event()

    def expect_message(self, text: str) -> None:
        """Ignore status until the stream shows this user message: earlier statuses are stale."""
        self.awaiting = text[:200]
        self.seen_running = False
        self.status = "sent"

    async def feed(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if self.awaiting is not None:
            if kind == "MessageEvent" and event.get("source") == "user":
                parts = (event.get("llm_message") or {}).get("content") or []
                text = " ".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))
                if self.awaiting in text:
                    self.awaiting = None
            return
        if kind == "ActionEvent":
            self.progress.steps += 1
            self.progress.last_action = _describe_action(event)
        elif kind == "ConversationStateUpdateEvent":
            key, value = event.get("key"), event.get("value")
            if key == "execution_status" and isinstance(value, str):
                self._set_status(value)
            elif key == "full_state" and isinstance(value, dict):
                if isinstance(value.get("execution_status"), str):
                    self._set_status(value["execution_status"])
        elif kind == "ConversationErrorEvent":
            code = str(event.get("code") or "error")
            self.error = AgentError(ERROR_CODES.get(code, code), str(event.get("detail") or ""))
        elif kind == "HookExecutionEvent" and event.get("hook_event_type") == "Stop":
            self.stop_hook_runs += 1
            self.changed.set()
        await self._report()

    def _set_status(self, status: str) -> None:
        self.status = status
        self.progress.status = status
        if status == "running":
            self.seen_running = True
        self.changed.set()

    async def _report(self, force: bool = False) -> None:
        if self._on_progress is None:
            return
        now = time.monotonic()
        if force or now - self._last_sent >= self._throttle:
            self._last_sent = now
            with contextlib.suppress(Exception):  # a progress consumer must never break a run
                await self._on_progress(self.progress)


class Conversation:
    """Runs one agent request on one agent-server to a classified end."""

    def __init__(
        self,
        client: AgentServerClient,
        settings: Settings,
        meter: Meter,
        *,
        on_progress: ProgressCallback | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        self._client = client
        self._settings = settings
        self._meter = meter
        self._usage = Usage()
        self._follower = _Follower(on_progress, settings.progress_interval_seconds)
        self._reader: asyncio.Task[None] | None = None
        self._poll_interval = poll_interval

    async def run(self, request: AgentRequest) -> AgentResult:
        """Create the conversation (its first message starts the run) and follow it to its end."""
        conversation_id = conversation_id_for(request.run_id, request.attempt)

        async def start() -> None:
            await self._client.create_conversation(
                create_request(self._settings, request, conversation_id)
            )

        return await self._drive(request, conversation_id, start)

    async def follow_up(self, request: AgentRequest, text: str) -> AgentResult:
        """Send one more user message into the same conversation and follow it to its end."""
        conversation_id = conversation_id_for(request.run_id, request.attempt)
        self._follower.expect_message(text)
        self._follower.error = None

        async def start() -> None:
            # A kept conversation still holds the credential of the run that made it, revoked
            # when that run ended: this run's own goes in first.
            llm = llm_settings(self._settings, request.llm)
            await self._client.switch_llm(conversation_id, llm)
            await self._client.send_message(conversation_id, text, run=True)

        return await self._drive(request, conversation_id, start)

    async def _drive(
        self,
        request: AgentRequest,
        conversation_id: str,
        start: Callable[[], Awaitable[None]],
    ) -> AgentResult:
        """Start a run, follow it within the wall-clock limit, and collect its result."""
        started = time.monotonic()
        result = AgentResult(conversation_id=conversation_id, status="error")
        stop_hooks = has_stop_hooks(request.hook_config)
        limit = self._settings.run_timeout_seconds
        try:
            await start()
            try:
                async with asyncio.timeout(limit):
                    result.status = await self._follow(conversation_id, stop_hooks)
            except TimeoutError:
                result.status = "timeout"
                result.error = AgentError("timeout", f"the run passed its {limit:.0f}s time limit")
                await self._interrupt(conversation_id)
        except asyncio.CancelledError:
            await asyncio.shield(self._interrupt(conversation_id))
            raise
        result.duration = time.monotonic() - started
        await self._collect(result)
        return result

    async def _interrupt(self, conversation_id: str) -> None:
        with contextlib.suppress(AgentServerError):
            await self._client.interrupt(conversation_id)

    async def _follow(self, conversation_id: str, stop_hooks: bool) -> Status:
        follower = self._follower
        reader = self._reader = asyncio.create_task(self._read_events(conversation_id))
        try:
            while True:
                follower.changed.clear()
                if follower.status in TERMINAL and await self._confirmed(
                    conversation_id, stop_hooks
                ):
                    return follower.status  # type: ignore[return-value]
                if await self._over_budget():
                    await self._interrupt(conversation_id)
                    return "cost_limit"
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(follower.changed.wait(), self._poll_interval)
                if reader.done():  # the socket is gone for good: poll the status instead
                    follower.awaiting = None
                    info = await self._client.conversation(conversation_id)
                    status = str(info.get("execution_status") or "")
                    if status and status != follower.status:
                        await follower.feed(
                            {
                                "kind": "ConversationStateUpdateEvent",
                                "key": "execution_status",
                                "value": status,
                            }
                        )
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _measure(self) -> Usage:
        """The run's usage as the gateway recorded it (the last reading, if Redis is away)."""
        with contextlib.suppress(Exception):
            self._usage = await self._meter()
            self._follower.progress.cost = self._usage.cost
        return self._usage

    async def _over_budget(self) -> bool:
        """The gateway refuses calls past the budget; this stops the run at once instead of
        letting the agent meet the refusal."""
        return (await self._measure()).over(self._settings.max_cost_per_run)

    async def _confirmed(self, conversation_id: str, stop_hooks: bool) -> bool:
        """`finished` is final only if no stop hook sends the agent back to work."""
        follower = self._follower
        if follower.status != "finished" or not stop_hooks:
            return True
        hooks_before = follower.stop_hook_runs
        deadline = time.monotonic() + self._settings.stop_hook_grace_seconds
        while time.monotonic() < deadline:
            if follower.status != "finished":
                return False
            # The socket reports hook runs; read them back over REST only when it is gone.
            socket_gone = self._reader is None or self._reader.done()
            if follower.stop_hook_runs > hooks_before or (
                socket_gone and await self._stop_hook_ran(conversation_id, hooks_before)
            ):
                await asyncio.sleep(0.3)  # a denial flips the status right after the hook
                info = await self._client.conversation(conversation_id)
                return follower.status == "finished" and info.get("execution_status") == "finished"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(follower.changed.wait(), 0.25)
            follower.changed.clear()
        return follower.status == "finished"

    async def _stop_hook_ran(self, conversation_id: str, seen: int) -> bool:
        events = await self._client.all_events(conversation_id)
        runs = sum(
            1
            for e in events
            if e.get("kind") == "HookExecutionEvent" and e.get("hook_event_type") == "Stop"
        )
        return runs > seen

    async def _read_events(self, conversation_id: str) -> None:
        """Feed socket events to the follower; return when the socket cannot be used."""
        headers = {API_KEY_HEADER: self._client.api_key} if self._client.api_key else {}
        url = self._client.socket_url(conversation_id) + "?resend_mode=all"
        for attempt in range(3):
            try:
                async with connect(url, additional_headers=headers, open_timeout=10) as socket:
                    async for frame in socket:
                        with contextlib.suppress(json.JSONDecodeError, TypeError):
                            event = json.loads(frame)
                            if isinstance(event, dict):
                                await self._follower.feed(event)
            except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                log.warning(
                    "event socket dropped (%s); attempt %d", type(exc).__name__, attempt + 1
                )
            await asyncio.sleep(0.5)
        # Three drops: the caller polls from here on.

    async def _collect(self, result: AgentResult) -> None:
        follower = self._follower
        cid = result.conversation_id
        result.steps = follower.progress.steps
        if result.status == "error" and result.error is None and follower.error is None:
            # The error event can trail the status change on the socket: read it back.
            with contextlib.suppress(AgentServerError):
                for event in await self._client.all_events(cid):
                    if event.get("kind") == "ConversationErrorEvent":
                        await follower.feed(event)
        if result.status in ("error", "stuck") and result.error is None:
            result.error = follower.error or AgentError(
                result.status,
                "the agent repeated itself without progress"
                if result.status == "stuck"
                else "the agent stopped with an error",
            )
        usage = await self._measure()
        result.cost, result.prompt_tokens = usage.cost, usage.prompt_tokens
        result.completion_tokens = usage.completion_tokens
        limit = self._settings.max_cost_per_run
        if result.status == "error" and usage.over(limit):
            result.status = "cost_limit"  # the gateway refused the agent's next call
        if result.status == "cost_limit":
            result.error = AgentError(
                "cost_limit",
                f"cost budget reached: the run spent ${usage.cost:.4f} of its "
                f"${limit or 0:.2f} (MAX_COST_PER_RUN)",
            )
        with contextlib.suppress(AgentServerError):
            result.final_response = await self._client.final_response(cid)
        await follower._report(force=True)
