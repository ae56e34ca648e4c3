"""`openhands-bot replay`: run one saved delivery through the real path, to see what the bot does.

The delivery is signed with the webhook secret and posted to the web app (in-process, or a
running server with `--url`), exactly as GitHub posts it; then a burst worker runs the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus
from starlette.types import ASGIApp, Message

from bot.agent.workspace.base import WorkspaceProvider
from bot.config import Settings
from bot.intake import signature
from bot.intake.app import create_app
from bot.jobs.worker import make_worker
from bot.queue import codec

WEBHOOK_PATH = "/webhooks/github"
Print = Callable[[str], None]
# What the command prints: the web app's answer, then the run as the worker takes it.
IGNORED = "ignored: {reason}"
QUEUED = "queued: {task} task, run {run_id}"
DUPLICATE = "already queued under this delivery id: run {run_id}"
REFUSED = "refused ({status}): {error}"
NOT_JSON = "the file is not JSON: {error}"
NOT_AN_OBJECT = "the file is not a JSON object (a webhook payload)"
RUN_STATUS = "run {run_id}: {status}"
RUN_ENDED = "run {run_id}: {outcome} after {tries} attempt(s): {result}"
NO_RESULT = "run {run_id}: no result recorded (another worker may have run it)"


class ReplayError(Exception):
    """The delivery could not be replayed; the message says why."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What the web app said to the delivery."""

    status_code: int
    body: dict[str, Any]

    @property
    def queued_run(self) -> str | None:
        """The run id when a job now waits in (or already was in) the queue."""
        run_id = self.body.get("run_id")
        queued = self.body.get("status") in {"queued", "duplicate"}
        return run_id if queued and isinstance(run_id, str) else None

    def describe(self) -> str:
        status = self.body.get("status")
        if status == "ignored":
            return IGNORED.format(reason=self.body.get("reason"))
        if status == "queued":
            return QUEUED.format(task=self.body.get("task"), run_id=self.body.get("run_id"))
        if status == "duplicate":
            return DUPLICATE.format(run_id=self.body.get("run_id"))
        return REFUSED.format(status=self.status_code, error=self.body.get("error", self.body))


def signed_request(event: str, body: bytes, secret: bytes, delivery_id: str) -> dict[str, str]:
    """The headers GitHub sends with a delivery."""
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id,
        "X-Hub-Signature-256": signature.sign(secret, body),
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/openhands-bot-replay",
    }


@asynccontextmanager
async def lifespan(app: ASGIApp) -> AsyncIterator[None]:
    """Run an ASGI app's start-up and shut-down around the block (ASGITransport does neither)."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    scope: dict[str, Any] = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}

    async def run() -> None:
        await app(scope, inbox.get, outbox.put)

    task = asyncio.create_task(run())

    async def step(send: str, expect: str) -> None:
        await inbox.put({"type": send})
        reply = await outbox.get()
        if reply["type"] != expect:
            with contextlib.suppress(Exception):  # the app re-raises what it reported
                await task
            raise ReplayError(f"the web app's {send} failed: {reply.get('message', reply)}")

    await step("lifespan.startup", "lifespan.startup.complete")
    try:
        yield
    finally:
        await step("lifespan.shutdown", "lifespan.shutdown.complete")
        await task


async def post_delivery(
    settings: Settings, event: str, body: bytes, *, delivery_id: str, url: str | None = None
) -> Answer:
    """Post the delivery as GitHub would: to the app in this process, or to the server at `url`."""
    headers = signed_request(event, body, settings.webhook_secret(), delivery_id)
    if url is not None:
        async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=30) as client:
            try:
                response = await client.post(WEBHOOK_PATH, content=body, headers=headers)
            except httpx.HTTPError as exc:
                raise ReplayError(f"could not reach {url}: {type(exc).__name__}") from exc
    else:
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app)
        async with (
            lifespan(app),
            httpx.AsyncClient(transport=transport, base_url="http://replay") as client,
        ):
            response = await client.post(WEBHOOK_PATH, content=body, headers=headers)
    try:
        answer = response.json()
    except ValueError:
        answer = {"error": response.text[:300]}
    return Answer(response.status_code, answer if isinstance(answer, dict) else {"body": answer})


def read_delivery(raw: bytes) -> bytes:
    """The body to post: the file as it is, once it is known to be a JSON object."""
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise ReplayError(NOT_JSON.format(error=exc)) from None
    if not isinstance(payload, dict):
        raise ReplayError(NOT_AN_OBJECT)
    return raw


async def run_burst(
    settings: Settings,
    run_id: str,
    *,
    say: Print,
    workspaces: WorkspaceProvider | None = None,
    poll_seconds: float = 0.2,
) -> bool:
    """Run a burst worker until the queue is empty, reporting the run's status as it changes.

    True when the run's job completed without an error."""
    worker = make_worker(
        # No cron jobs: a replay runs the one delivery, not the scheduler or the hourly resync.
        settings,
        workspaces=workspaces,
        scheduled=False,
        burst=True,
        poll_delay=poll_seconds,
        handle_signals=False,
    )
    redis = ArqRedis.from_url(settings.redis_url, socket_connect_timeout=2)
    job = Job(run_id, redis, _deserializer=codec.loads)
    working = asyncio.create_task(worker.main(), name="replay-worker")
    last: JobStatus | None = None
    try:
        while True:
            status = await job.status()
            if status != last:
                say(RUN_STATUS.format(run_id=run_id, status=status.value))
                last = status
            if working.done():
                break
            await asyncio.wait({working}, timeout=poll_seconds)
        await working  # a worker failure surfaces here
        info = await job.result_info()
    finally:
        if not working.done():
            working.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await working
        await worker.close()
        await redis.aclose()
    if info is None:
        say(NO_RESULT.format(run_id=run_id))
        return False
    outcome = "done" if info.success else "failed"
    result = repr(info.result)[:300]
    say(RUN_ENDED.format(run_id=run_id, outcome=outcome, tries=info.job_try, result=result))
    return info.success


def new_delivery_id() -> str:
    return str(uuid.uuid4())
