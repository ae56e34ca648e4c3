"""Run API fixtures: settings with a token, a client of the real web app, an installed repo."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from bot import keys
from bot.config import Settings
from bot.intake.app import create_app
from tests.fakes.callbacks import CallbackReceiver
from tests.fakes.git_host import FakeGitHost
from tests.fakes.github import FakeGitHub
from tests.repo_config.test_repo_config import CONFIG_PATH, INSTALLATION, OWNER, REPO, VALID
from tests.servers import ServerThread

TOKEN = "api-token-for-tests-3f9a"


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"bot_api_token": SecretStr(TOKEN), "callback_retry_base_seconds": 0.05}
    )


@pytest.fixture
async def api(api_settings: Settings, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(api_settings)
    with ServerThread(app, health_path="/healthz", lifespan="on") as server:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10) as client:
            yield client


@pytest.fixture
async def installed(
    fake_github: FakeGitHub,
    git_host: FakeGitHost,
    api_settings: Settings,
    redis: Redis,
) -> FakeGitHub:
    git_host.create_repo(REPO, {"README.md": "# app\n", CONFIG_PATH: VALID})
    fake_github.add_installation(INSTALLATION, OWNER, [REPO])
    await redis.hset(keys.REPO_INSTALLATION, REPO.lower(), INSTALLATION)
    return fake_github


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    with CallbackReceiver().serving() as fake:
        yield fake
