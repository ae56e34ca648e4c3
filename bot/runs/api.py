"""The run API: start a named automation or an ad-hoc prompt, read runs, cancel one. Every
route needs `Authorization: Bearer $BOT_API_TOKEN`; without the setting the API is off."""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import time
from typing import Annotated, Any, Literal

import orjson
from arq.constants import default_queue_name, in_progress_key_prefix
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot import installations, keys
from bot.config import Settings
from bot.errors import QueueUnavailable
from bot.queue.enqueue import Enqueuer
from bot.queue.tasks import MAX_ID, AutomationTask, RepoRef
from bot.repo_config import store
from bot.repo_config.schema import CONFIG_PATH
from bot.runs import callback_url, lifecycle, stop
from bot.runs.store import FINAL, RunError, RunRecord, RunStatus, RunStore, UnreadableRecord

log = logging.getLogger(__name__)

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


class ApiRefusal(Exception):
    """A request the API answers with an error status and a message saying why."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **extra}


def _invalid(exc: ValidationError) -> ApiRefusal:
    problems = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()]
    return ApiRefusal(422, "invalid run request", problems=problems)


class RunRequest(BaseModel):
    """`POST /api/runs`: a named automation from the repo's config, or an ad-hoc prompt."""

    model_config = ConfigDict(extra="forbid")

    repo: str
    automation: str | None = None
    prompt: str | None = Field(default=None, min_length=1, max_length=20_000)
    output: Literal["pr", "issue", "comment", "none"] | None = None
    issue: int | None = Field(default=None, gt=0, le=MAX_ID)
    branch: str | None = None
    max_iterations: int | None = Field(default=None, gt=0, le=1000)
    callback_url: str | None = None
    callback_api_key: str | None = None
    run_id: str | None = None

    @field_validator("repo")
    @classmethod
    def _repo(cls, value: str) -> str:
        if not _REPO.fullmatch(value):
            raise ValueError("must be owner/name")
        return value

    @field_validator("callback_api_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[\x21-\x7e]{1,1024}", value):
            raise ValueError("use 1-1024 printable ASCII characters (it is sent as a header)")
        return value

    @field_validator("run_id")
    @classmethod
    def _run_id(cls, value: str | None) -> str | None:
        if value is not None and not _RUN_ID.fullmatch(value):
            raise ValueError("use 1-128 letters, digits, '.', '_', ':' or '-'")
        return value

    @model_validator(mode="after")
    def _one_of(self) -> RunRequest:
        if (self.automation is None) == (self.prompt is None):
            raise ValueError("give exactly one of `automation` (a name) or `prompt`")
        if self.output == "comment" and self.issue is None:
            raise ValueError("output `comment` needs `issue`")
        return self


class RunApi:
    """The routes' shared state: the settings, Redis, the run store and the queue."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        token = settings.bot_api_token
        self._token = token.get_secret_value().encode() if token else None

    def authorize(self, request: Request) -> None:
        if self._token is None:
            raise ApiRefusal(401, "the run API is off: set BOT_API_TOKEN to turn it on")
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), self._token):
            raise ApiRefusal(401, "missing or wrong bearer token")

    @staticmethod
    def runs(request: Request) -> RunStore:
        store: RunStore = request.app.state.runs
        return store

    async def start(self, request: Request) -> Response:
        try:
            body = RunRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            raise _invalid(exc) from exc
        allowed = self.settings.callback_allowed_hosts
        if body.callback_url and (why := callback_url.problem(body.callback_url, allowed)):
            raise ApiRefusal(422, "invalid run request", problems=[f"callback_url: {why}"])
        redis: Redis = request.app.state.redis
        installation = await installations.get(redis, body.repo)
        if installation is None:
            raise ApiRefusal(404, f"the App is not installed on {body.repo} (as far as it knows)")
        try:
            task = await self._task(redis, body, installation)
        except ValidationError as exc:  # the request with the automation's settings is no task
            raise _invalid(exc) from exc
        runs = self.runs(request)
        record = RunRecord(
            run_id=task.run_id,
            kind="automation",
            trigger="api",
            repo=body.repo,
            number=task.issue,
            automation=task.automation,
            sender="api",
            job_id=task.run_id,
            callback_url=body.callback_url,
        )
        if not await runs.create(record, secret=body.callback_api_key):
            raise ApiRefusal(409, f"run {task.run_id} exists already")
        enqueuer: Enqueuer = request.app.state.enqueuer
        try:
            stored = await enqueuer.enqueue(task)
        except QueueUnavailable as exc:
            await runs.delete(task.run_id)  # no run: the same request may be sent again
            raise ApiRefusal(503, "queue unavailable, try again") from exc
        except BaseException:
            await runs.delete(task.run_id)  # a run that was never queued must not stay PENDING
            raise
        if stored == "duplicate":  # the id belongs to another job (e.g. a delivery's)
            await runs.delete(task.run_id)
            raise ApiRefusal(409, f"run id {task.run_id} is taken")
        return _json(
            202, {"run_id": task.run_id, "status": "PENDING", "url": f"/api/runs/{task.run_id}"}
        )

    async def _task(self, redis: Redis, body: RunRequest, installation: int) -> AutomationTask:
        run_id = body.run_id or f"api-{secrets.token_hex(10)}"
        owner, name = body.repo.split("/", 1)
        ids: dict[str, Any] = {
            "run_id": run_id,
            "delivery_id": run_id,
            "event": "api",
            "installation_id": installation,
            "repo": RepoRef(owner=owner, name=name),
            "sender": "api",
            "trigger": "api",
        }
        asked = {
            "output": body.output,
            "issue": body.issue,
            "branch": body.branch,
            "max_iterations": body.max_iterations,
        }
        if body.automation is not None:
            config = (await store.load(redis, body.repo)).config
            automation = config.automation(body.automation)
            if automation is None:
                known = [a.name for a in config.automations]
                raise ApiRefusal(
                    404,
                    f"{body.repo} has no automation named {body.automation!r} in {CONFIG_PATH}",
                    known=known,
                )
            task = automation.as_task(**ids, **asked)
        else:
            prompt = {"prompt": body.prompt, "output": body.output or "none"}
            task = AutomationTask(**ids, **{**asked, **prompt})
        if task.output == "comment" and task.issue is None:
            raise ApiRefusal(422, "output `comment` needs `issue`")
        return task

    async def get(self, request: Request, run_id: str) -> Response:
        runs = self.runs(request)
        record = await runs.get_or_queued(run_id)
        if record is None:
            raise ApiRefusal(404, f"no run {run_id}")
        return _json(200, {**record.public(), "log": await runs.read_log(run_id)})

    async def list(
        self,
        request: Request,
        repo: str | None,
        status: str | None,
        kind: str | None,
        limit: int,
    ) -> Response:
        if status is not None and status.upper() not in RunStatus.__members__:
            raise ApiRefusal(400, f"status must be one of {', '.join(RunStatus.__members__)}")
        records = await self.runs(request).recent(repo=repo, status=status, kind=kind, limit=limit)
        return _json(200, {"runs": [r.public() for r in records]})

    async def cancel(self, request: Request, run_id: str) -> Response:
        runs = self.runs(request)
        record = await runs.get(run_id)
        if record is None:
            raise ApiRefusal(404, f"no run {run_id}")
        if record.status in FINAL:
            raise ApiRefusal(409, f"run {run_id} is {record.status.value} already")
        redis: Redis = request.app.state.redis
        await stop.request(redis, run_id, "the run API")
        job_id = record.job_id or run_id

        async def end(allowed: set[RunStatus]) -> bool:
            return await lifecycle.finish(
                self.settings,
                runs,
                request.app.state.enqueuer,
                run_id,
                RunStatus.CANCELLED,
                outcome="cancelled",
                error=RunError(code="cancelled", detail="stopped by the run API"),
                allowed=allowed,
            )

        # Queued or waiting for its turn (PENDING): its job, moved to the front of the queue,
        # finds the run cancelled, says so on its thread and leaves its line. It is not aborted:
        # arq drops a job aborted before it starts without running any of it.
        cancelled = await end({RunStatus.PENDING})
        if cancelled:
            await redis.zadd(default_queue_name, {job_id: int(time.time() * 1000)}, xx=True)
            await redis.publish(keys.QUEUE_WAKE, "1")  # a worker takes it now
        else:
            if await redis.exists(in_progress_key_prefix + job_id):
                # Running: arq cancels it, and the run finalizes what the user sees and reports
                # CANCELLED itself.
                await stop.abort(redis, job_id, wait=0.05)
            else:  # RUNNING, but no worker holds its job (it died): end the record here
                cancelled = await end({RunStatus.RUNNING})
        status = "CANCELLED" if cancelled else "CANCELLING"
        return _json(202, {"run_id": run_id, "status": status})


def install(app: FastAPI, settings: Settings) -> None:
    """Add the run API's routes to `app` (whose state holds redis, runs and enqueuer)."""
    api = RunApi(settings)
    router = APIRouter(prefix="/api/runs", dependencies=[Depends(api.authorize)])

    @router.post("")
    async def start(request: Request) -> Response:
        return await api.start(request)

    @router.get("")
    async def recent(
        request: Request,
        repo: str | None = None,
        status: str | None = None,
        kind: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> Response:
        return await api.list(request, repo, status, kind, limit)

    @router.get("/{run_id}")
    async def one(request: Request, run_id: str) -> Response:
        return await api.get(request, run_id)

    @router.post("/{run_id}/cancel")
    async def cancel(request: Request, run_id: str) -> Response:
        return await api.cancel(request, run_id)

    app.include_router(router)

    @app.exception_handler(ApiRefusal)
    async def refused(_request: Request, exc: ApiRefusal) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _json(exc.status, exc.body, headers)

    @app.exception_handler(UnreadableRecord)
    async def unreadable(request: Request, exc: UnreadableRecord) -> Response:
        # Not a 500: the record is there but useless; the store logged what is wrong with it.
        run_id = request.path_params.get("run_id", "")
        log.warning("run %s has an unreadable record: %s", run_id, exc)
        return _json(404, {"error": f"the record of run {run_id} cannot be read"})

    @app.exception_handler(RedisError)
    async def redis_down(_request: Request, exc: RedisError) -> Response:
        return _json(503, {"error": "Redis unavailable, try again"})
