"""The web process: verify each GitHub delivery, route it, queue it, and answer in milliseconds."""

from __future__ import annotations

import gc
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import orjson
from fastapi import FastAPI, Request, Response
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from bot.config import Settings
from bot.errors import QueueUnavailable
from bot.intake import signature
from bot.intake.triggers import Ignored, NotAnObject, RouteConfig, route_body
from bot.queue import codec, signing
from bot.queue.enqueue import Enqueuer
from bot.queue.tasks import job_function, lines
from bot.runs import api, metrics
from bot.runs import page as runs_page
from bot.runs.store import RunStore

log = logging.getLogger(__name__)

_DELIVERY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_EVENT = re.compile(r"^[a-z_]{1,64}$")


def _json(status: int, body: dict[str, object]) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def route_config(settings: Settings) -> RouteConfig:
    return RouteConfig(
        handle=settings.bot_handle,
        trigger_label=settings.trigger_label,
        app_slug=settings.github_app_slug,
        allowed_bots=frozenset(b.lower() for b in settings.allowed_bots),
    )


# The only request headers the intake reads (ASGI gives header names lower-cased, as bytes).
_WANTED = frozenset(
    {b"content-length", b"x-hub-signature-256", b"x-github-event", b"x-github-delivery"}
)
_JSON_HEADERS = [(b"content-type", b"application/json")]

Answer = tuple[int, bytes]  # status and JSON body


def _answer(status: int, body: dict[str, object]) -> Answer:
    return status, orjson.dumps(body)


class _Gone(Exception):
    """The client hung up before its body arrived: there is no one to answer."""


async def _receive_body(receive: Receive, declared: str | None, limit: int) -> bytes | None:
    """The raw body, or None as soon as it is known to exceed `limit` bytes."""
    if declared is not None:
        try:
            if int(declared) > limit:
                return None
        except ValueError:
            return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


@dataclass(frozen=True, slots=True)
class _Queue:
    """What is left of an accepted delivery once it is routed: small, so nothing big lives on."""

    run_id: str
    kind: str
    job: bytes
    ids: dict[str, str | int]
    lines: tuple[str, ...]  # the turnstiles its run waits at, joined when it is queued
    arrival_ms: int


class Intake:
    """`POST /webhooks/github`: bytes → verify → parse → route → enqueue → answer.

    Spoken in raw ASGI: no request or response objects on the path every delivery takes."""

    def __init__(self, settings: Settings) -> None:
        self.enqueuer: Enqueuer  # set by the app's lifespan, once Redis is configured
        self._secret = settings.webhook_secret()
        self._config = route_config(settings)
        self._limit = settings.max_body_bytes
        self.deliveries = metrics.Deliveries()  # (event, outcome) → count, for /metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _WANTED
        }
        try:
            status, body = await self.answer(headers, receive)
        except _Gone:
            return
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def answer(self, headers: dict[str, str], receive: Receive) -> Answer:
        body = await _receive_body(receive, headers.get("content-length"), self._limit)
        if body is None:
            self.deliveries[metrics.UNVERIFIED, "too_large"] += 1
            return _answer(413, {"error": f"body exceeds {self._limit} bytes"})
        decided = self._decide(headers, body)
        del body  # the request's bytes must not outlive the decision (GC pressure under load)
        if not isinstance(decided, _Queue):
            return decided
        try:
            stored = await self.enqueuer.enqueue_raw(
                decided.run_id, decided.job, lines=decided.lines, arrival_ms=decided.arrival_ms
            )
        except QueueUnavailable as exc:
            self.deliveries[str(decided.ids["event"]), "queue_unavailable"] += 1
            log.error("could not queue delivery: %s", exc, extra=decided.ids)
            return _answer(503, {"error": "queue unavailable, redeliver later"})
        self.deliveries[str(decided.ids["event"]), stored] += 1
        log.info(
            "%s %s task", stored, decided.kind, extra={**decided.ids, "run_id": decided.run_id}
        )
        status = 202 if stored == "queued" else 200
        return _answer(status, {"status": stored, "run_id": decided.run_id, "task": decided.kind})

    def _bad_request(self, event: str, message: str) -> Answer:
        self.deliveries[event, "bad_request"] += 1
        return _answer(400, {"error": message})

    def _decide(self, headers: dict[str, str], body: bytes) -> Answer | _Queue:
        """Everything up to the queue, synchronously: an answer now, or a job to store."""
        if not signature.verify(self._secret, body, headers.get("x-hub-signature-256")):
            self.deliveries[metrics.UNVERIFIED, "bad_signature"] += 1
            log.warning("rejected delivery: bad or missing signature")
            return _answer(401, {"error": "bad or missing X-Hub-Signature-256"})
        event = headers.get("x-github-event")
        delivery_id = headers.get("x-github-delivery")
        if not event or not _EVENT.match(event):
            return self._bad_request(metrics.INVALID, "missing or invalid X-GitHub-Event")
        if not delivery_id or not _DELIVERY_ID.match(delivery_id):
            return self._bad_request(event, "missing or invalid X-GitHub-Delivery")
        try:
            outcome = route_body(event, delivery_id, body, self._config)
        except orjson.JSONDecodeError:
            return self._bad_request(event, "body is not valid JSON")
        except NotAnObject:
            return self._bad_request(event, "body is not a JSON object")
        ids: dict[str, str | int] = {"delivery_id": delivery_id, "event": event}
        if isinstance(outcome, Ignored):
            self.deliveries[event, "ignored"] += 1
            log.info("ignored delivery: %s", outcome.reason, extra=ids)
            return _answer(200, {"status": "ignored", "reason": outcome.reason})
        ids["repo"] = outcome.repo.full_name
        if outcome.installation_id is not None:
            ids["installation_id"] = outcome.installation_id
        arrival = int(time.time() * 1000)
        job = codec.job(job_function(outcome), outcome.model_dump(mode="json"), enqueue_ms=arrival)
        return _Queue(outcome.run_id, outcome.kind, job, ids, lines(outcome), arrival)


class FastPath:
    """ASGI front: webhook deliveries skip the framework's routing and middleware stack (they
    are most of the traffic and every microsecond counts at the ack); the rest goes to FastAPI."""

    def __init__(self, app: FastAPI, intake: Intake) -> None:
        self.app = app
        self.state = app.state
        self._intake = intake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == "/webhooks/github"
            and scope["method"] == "POST"
        ):
            await self._intake(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(settings: Settings, *, redis: Redis | None = None) -> FastPath:
    """The FastAPI app; `settings` must already hold a webhook secret (see Settings.require_web)."""
    intake = Intake(settings)
    queue_key = signing.keys_for(settings).queue  # every job it queues is signed with it

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = redis or Redis.from_url(
            settings.redis_url, socket_connect_timeout=2, socket_timeout=5
        )
        app.state.redis = client
        app.state.enqueuer = Enqueuer(
            client, key=queue_key, dedup_seconds=settings.delivery_dedup_seconds
        )
        app.state.runs = RunStore(client, settings.run_retention_seconds)
        intake.enqueuer = app.state.enqueuer
        # Start-up objects are permanent: keep them out of the collector's full passes, which
        # otherwise pause every in-flight request for tens of milliseconds under load.
        gc.collect()
        gc.freeze()
        # Each delivery allocates a few hundred objects that reference counting frees at once;
        # at the default threshold (700) the collector still ran every few requests under load.
        gc.set_threshold(20_000, 50, 100)
        try:
            yield
        finally:
            await app.state.enqueuer.close()
            if redis is None:
                await client.aclose()

    app = FastAPI(
        title="OpenHands GitHub bot",
        lifespan=lifespan,
        # No schema or docs pages: they would describe the token-guarded API to anyone asking.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    # The same intake behind the framework too (FastPath answers before it gets here).
    app.router.routes.append(Route("/webhooks/github", intake, methods=["POST"]))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> Response:
        try:
            await request.app.state.redis.ping()
        except (RedisError, OSError) as exc:
            return _json(503, {"status": "unavailable", "redis": str(exc)})
        return _json(200, {"status": "ready"})

    api.install(app, settings)
    metrics.install(app, settings, intake.deliveries)
    runs_page.install(app, settings)
    return FastPath(app, intake)
