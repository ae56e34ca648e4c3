"""Shared fixtures: real Redis, a fake GitHub on loopback, the real web app, a real arq worker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.worker import Worker
from pydantic import SecretStr
from redis.asyncio import Redis

from bot.agent.gateway import Gateway
from bot.agent.gateway.server import GatewayServer
from bot.agent.workspace.base import WorkspaceProvider
from bot.agent.workspace.local import LocalProvider
from bot.agent.workspace.server import ServerProvider
from bot.config import Settings
from bot.intake import signature
from bot.intake.app import create_app
from bot.jobs.worker import Clock, make_worker
from tests import redis_server
from tests.fakes.git_host import FakeGitHost
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import ScriptedLLM
from tests.helpers import rsa_key_pair
from tests.paths import PAYLOADS
from tests.servers import ServerThread

APP_ID = 424242
WEBHOOK_SECRET = "test-webhook-secret-Zx81"
# The URL of this session's Redis, set when the session starts (the `redis_url` fixture): a
# redis-server of the session's own on a free loopback port, or TEST_REDIS_URL when set. Read it
# at test time (the fixture, or `make_settings`), never at import time: it is empty until then.
REDIS_URL = ""


def load_payload(relative: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / relative).read_text())
    return data


def all_payloads() -> list[Path]:
    return sorted(PAYLOADS.glob("*/*.json"))


@pytest.fixture(scope="session")
def rsa_keys() -> tuple[str, str]:
    """(private PEM, public PEM) of a throwaway App key."""
    return rsa_key_pair()


@pytest.fixture
def fake_github(rsa_keys: tuple[str, str]) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(APP_ID, rsa_keys[1])
    with fake.serving():
        yield fake
    fake.assert_no_unexpected()


@pytest.fixture(scope="session", autouse=True)
def redis_url() -> Iterator[str]:
    """This session's Redis: its own redis-server (so concurrent test runs on one host never
    share data), or TEST_REDIS_URL when set. Subprocesses the tests start (the bot's CLI, workers)
    get it as REDIS_URL in their environment; flushed around each test by the `redis` fixture."""
    global REDIS_URL
    override = os.environ.get("TEST_REDIS_URL")
    with contextlib.ExitStack() as stack:
        if override:
            url = override
        else:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="test-redis-")))
            try:
                process, url = redis_server.start(directory)
            except RuntimeError as exc:
                pytest.exit(f"the test redis-server did not start: {exc}; or set TEST_REDIS_URL", 2)
            stack.callback(redis_server.stop, process)
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        patch.setenv("REDIS_URL", url)
        REDIS_URL = url
        try:
            yield url
        finally:
            REDIS_URL = ""


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


@pytest.fixture
def settings(fake_github: FakeGitHub, rsa_keys: tuple[str, str], tmp_path: Path) -> Settings:
    return make_settings(fake_github.url, rsa_keys[0], tmp_path)


def make_settings(api_url: str, private_key: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "github_app_id": APP_ID,
        "github_private_key": private_key,
        "github_webhook_secret": WEBHOOK_SECRET,
        "github_api_url": api_url,
        "github_app_slug": "openhands-test",
        "redis_url": REDIS_URL,
        "github_retry_base_seconds": 0.01,
        "state_dir": tmp_path / "state",
        "callback_allowed_hosts": ["127.0.0.1"],  # the fake callback receivers listen there
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def web(settings: Settings, redis: Redis) -> Iterator[ServerThread]:
    """The real web app on a loopback port, talking to real Redis."""
    with ServerThread(create_app(settings), health_path="/healthz", lifespan="on") as server:
        yield server


class Deliverer:
    """Posts signed deliveries to the web app, as GitHub does."""

    def __init__(self, url: str, secret: str = WEBHOOK_SECRET) -> None:
        self.url = url + "/webhooks/github"
        self.secret = secret.encode()
        self.client = httpx.Client(timeout=10)

    def post(
        self,
        event: str,
        payload: dict[str, Any] | bytes,
        *,
        delivery_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        sent = {
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
            "X-Hub-Signature-256": signature.sign(self.secret, body),
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/test",
        }
        sent.update(headers or {})
        return self.client.post(self.url, content=body, headers=sent)

    def __enter__(self) -> Deliverer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()


@pytest.fixture
def deliver(web: ServerThread) -> Iterator[Deliverer]:
    with Deliverer(web.url) as deliverer:
        yield deliverer


async def run_worker(
    settings: Settings,
    *,
    workspaces: WorkspaceProvider | None = None,
    max_burst_jobs: int = -1,
    scheduled: bool = False,
    clock: Clock | None = None,
) -> Worker:
    """Run a real arq worker until the queue is empty (burst mode), as production would run jobs.

    Without `workspaces`, runs get a `server` workspace nobody answers at, so a test that reaches
    the agent sees a workspace failure instead of starting an agent-server of its own."""
    if workspaces is None:
        workspaces = ServerProvider("http://127.0.0.1:9", None, "/nonexistent")
    # The worker's gateway, served in this loop rather than as the worker's own process (its
    # start costs seconds per worker; tests/agent/test_gateway_process.py covers the process).
    redis = Redis.from_url(settings.redis_url)
    try:
        async with serving_gateway(settings, redis) as gateway:
            worker = make_worker(
                settings,
                workspaces=workspaces,
                gateway=gateway,
                scheduled=scheduled,
                clock=clock,
                burst=True,
                poll_delay=0,
                handle_signals=False,
                max_burst_jobs=max_burst_jobs,
            )
            try:
                await worker.main()
            finally:
                await worker.close()
    finally:
        await redis.aclose()
    return worker


# ----------------------------------------------------------------------------- agent runs

# Secrets the bot holds while the agent-server starts; the agent must never see any of them.
BOT_SECRETS = {
    "GITHUB_WEBHOOK_SECRET": "whsec-never-show-7f3a9c",
    "BOT_API_TOKEN": "api-token-never-show-51d2e8",
    "REDIS_PASSWORD": "redis-pass-never-show-c4b0a1",
    "LLM_API_KEY": "sk-llm-never-show-9e8d7c",
}


@pytest.fixture(scope="session")
def agent_server() -> Iterator[LocalProvider]:
    """One real agent-server subprocess for the whole session (it takes ~15-30 s to start),
    started while the bot's process environment holds secrets.

    Its state lives outside pytest's temp-dir rotation, which deletes old runs' directories
    (another pytest run on the machine must not pull the server's files from under it)."""
    state = Path(tempfile.mkdtemp(prefix="openhands-bot-test-"))
    provider = LocalProvider(state, start_timeout=240)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in BOT_SECRETS.items():
            patch.setenv(name, value)
        asyncio.run(provider.start())
    yield provider
    asyncio.run(provider.close())
    shutil.rmtree(state, ignore_errors=True)


@contextlib.asynccontextmanager
async def serving_gateway(settings: Settings, redis: Redis) -> AsyncIterator[Gateway]:
    """The LLM gateway a worker's process serves, here in this event loop, with these settings."""
    gateway = GatewayServer(settings, redis)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    fake = ScriptedLLM(api_key=BOT_SECRETS["LLM_API_KEY"])
    with fake.serving():
        yield fake
    fake.assert_no_unexpected()


@pytest.fixture
def git_host(fake_github: FakeGitHub, tmp_path: Path) -> Iterator[FakeGitHost]:
    host = FakeGitHost(fake_github, tmp_path / "git")
    with host.serving():
        yield host
    host.assert_no_errors()


@pytest.fixture
def agent_settings(settings: Settings, llm: ScriptedLLM) -> Settings:
    """Settings for runs against the scripted LLM: fast LLM retries, short limits, known prices."""
    return settings.model_copy(
        update={
            "llm_model": "openai/fake",
            "llm_api_key": SecretStr(BOT_SECRETS["LLM_API_KEY"]),
            "llm_base_url": llm.base_url,
            "llm_num_retries": 2,
            "llm_retry_min_wait": 1,
            "llm_retry_max_wait": 1,
            "llm_timeout_seconds": 10.0,  # generous: CI machines are busy; the hang test lowers it
            "run_timeout_seconds": 90.0,
            "stop_hook_grace_seconds": 20.0,
            "progress_interval_seconds": 0.0,
            "llm_input_cost_per_token": 3e-6,
            "llm_output_cost_per_token": 15e-6,
        }
    )
