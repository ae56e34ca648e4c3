"""Callback URLs that would aim the bot at its own network, or that no request can carry, are
refused: at the run API with 422, and by the callback job (recorded on the run, never a crash)."""

from __future__ import annotations

import httpx
import pytest
from redis.asyncio import Redis

from bot import keys
from bot.config import Settings
from bot.runs.callback_url import problem
from bot.runs.store import RunStatus, RunStore
from tests.fakes.callbacks import CallbackReceiver
from tests.fakes.github import FakeGitHub
from tests.repo_config.test_repo_config import REPO
from tests.runs.test_callback import cb_settings, deliver_and_run, opened_pr

INTERNAL = [
    "http://127.0.0.1:8080/done",
    "http://localhost/done",
    "http://api.localhost/done",
    "http://[::1]/done",
    "http://[::ffff:127.0.0.1]/done",
    "http://169.254.169.254/latest/meta-data",
    "http://[fe80::1]/done",
    "http://10.0.0.5/done",
    "http://192.168.1.1/done",
    "http://172.16.0.1/done",
    "http://100.64.0.1/done",
    "http://0.0.0.0/done",
    "http://2130706433/done",  # 127.0.0.1 as one number
    "http://0x7f.1/done",
]
MALFORMED = [
    "https://example.com/done\r\nX-Injected: 1",
    "https://example.com/do ne",
    "https://example.com:99999/done",
    "ftp://example.com/done",
    "https://user:pass@example.com/done",
    "https:///done",
]


@pytest.mark.parametrize("url", INTERNAL + MALFORMED)
def test_internal_and_malformed_urls_have_a_problem(url: str) -> None:
    assert problem(url, []) is not None


@pytest.mark.parametrize("url", ["https://example.com/done", "http://8.8.8.8:8080/x"])
def test_public_urls_pass(url: str) -> None:
    assert problem(url, []) is None


def test_the_allow_list_admits_named_internal_hosts_only() -> None:
    assert problem("http://10.0.0.5:9000/done", ["10.0.0.5"]) is None
    assert problem("http://Receiver.Localhost/done", ["receiver.localhost"]) is None
    assert problem("http://10.0.0.6/done", ["10.0.0.5"]) is not None
    assert problem("http://10.0.0.5/a\nb", ["10.0.0.5"]) is not None  # never CR/LF


@pytest.fixture
def api_settings(api_settings: Settings) -> Settings:
    """The run API's settings without the tests' loopback allow-list."""
    return api_settings.model_copy(update={"callback_allowed_hosts": []})


@pytest.mark.parametrize("url", [*INTERNAL[:8], *MALFORMED[:3]])
async def test_the_api_refuses_them_with_422_and_no_record(
    url: str, api: httpx.AsyncClient, installed: FakeGitHub, redis: Redis
) -> None:
    body = {"repo": REPO, "prompt": "x", "callback_url": url, "run_id": "cb-1"}
    response = await api.post("/api/runs", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["problems"][0].startswith("callback_url: ")
    assert await redis.exists(keys.RUN_PREFIX + "cb-1") == 0


async def test_the_api_refuses_a_key_with_a_line_break(
    api: httpx.AsyncClient, installed: FakeGitHub
) -> None:
    body = {
        "repo": REPO,
        "prompt": "x",
        "callback_url": "https://e.com/",
        "callback_api_key": "a\nb",
    }
    response = await api.post("/api/runs", json=body)
    assert response.status_code == 422
    assert "callback_api_key" in " | ".join(response.json()["problems"])


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest", "https://example.com/x\r\nX-Injected: 1", "http://[::1"],
)
async def test_the_callback_job_refuses_a_bad_environment_url_cleanly(
    url: str,
    settings: Settings,
    receiver: CallbackReceiver,
    fake_github: FakeGitHub,
    redis: Redis,
) -> None:
    fake_github.add_installation(1, "Codertocat", ["Codertocat/Hello-World"])  # the delivery's
    bad = cb_settings(settings, receiver, automation_callback_url=url, callback_allowed_hosts=[])
    run_id = await deliver_and_run(bad, "pull_request", opened_pr())
    record = await RunStore(redis, 3600).get(run_id)
    assert record is not None
    assert record.status is RunStatus.COMPLETED  # the run itself is not affected
    assert record.callback_status is not None
    assert record.callback_status.startswith("refused: the callback URL ")
    assert receiver.received == []
