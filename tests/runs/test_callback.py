"""Completion callbacks: exactly five fields, the bearer key, retries on 5xx and network errors
only, and the SDK's environment variables; sent after the run's record is final."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.config import Settings
from bot.intake.app import create_app
from bot.runs.store import RunStatus, RunStore
from tests.conftest import Deliverer, load_payload, make_settings, run_worker
from tests.fakes.callbacks import CallbackReceiver
from tests.fakes.github import FakeGitHub
from tests.servers import ServerThread

REPO = "Codertocat/Hello-World"
INSTALLATION = 1  # as in the stored deliveries
FIVE = {"status", "run_id", "conversation_id", "cost", "error"}


@pytest.fixture
def github(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.add_repo(REPO)
    fake_github.add_installation(INSTALLATION, "Codertocat", [REPO])
    return fake_github


def cb_settings(settings: Settings, receiver: CallbackReceiver, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "automation_callback_url": receiver.url(),
        "callback_retry_base_seconds": 0.05,
        "review_on_open": False,  # reviews end at once as skipped: COMPLETED, no GitHub calls
        **extra,
    }
    return settings.model_copy(update=values)


def opened_pr() -> dict[str, Any]:
    return copy.deepcopy(load_payload("pull_request/opened.json"))


def mention_from(login: str) -> dict[str, Any]:
    payload = copy.deepcopy(load_payload("issue_comment/created.with-installation.json"))
    payload["comment"].update(body="@openhands fix this", id=4242)
    payload["comment"]["user"]["login"] = login
    payload["sender"]["login"] = login
    return payload


async def deliver_and_run(settings: Settings, event: str, payload: dict[str, Any]) -> str:
    with (
        ServerThread(create_app(settings), health_path="/healthz", lifespan="on") as web,
        Deliverer(web.url) as deliver,
    ):
        response = deliver.post(event, payload)
    assert response.status_code == 202, response.text
    await run_worker(settings)
    run_id: str = response.json()["run_id"]
    return run_id


async def test_the_environment_variables_route_a_completed_run(
    receiver: CallbackReceiver,
    github: FakeGitHub,
    rsa_keys: tuple[str, str],
    tmp_path: Path,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As the OpenHands SDK reads them: URL, key and the run id to report.
    monkeypatch.setenv("AUTOMATION_CALLBACK_URL", receiver.url("/hooks/run-done"))
    monkeypatch.setenv("AUTOMATION_CALLBACK_API_KEY", "cb-key-from-env")
    monkeypatch.setenv("AUTOMATION_RUN_ID", "automation-run-77")
    settings = make_settings(github.url, rsa_keys[0], tmp_path, review_on_open=False)
    assert settings.automation_callback_url == receiver.url("/hooks/run-done")

    run_id = await deliver_and_run(settings, "pull_request", opened_pr())

    (call,) = receiver.received
    assert call.path == "/hooks/run-done"
    assert call.headers["authorization"] == "Bearer cb-key-from-env"
    assert call.body == {
        "status": "COMPLETED",
        "run_id": "automation-run-77",
        "conversation_id": None,
        "cost": 0.0,
        "error": None,
    }
    record = await RunStore(redis, 3600).get(run_id)
    assert record is not None
    assert record.status is RunStatus.COMPLETED
    assert record.outcome == "skipped: automatic reviews are off"
    assert record.callback_status is not None
    assert record.callback_status.startswith("delivered (200)")
    assert [r.path for r in github.requests] == [f"/repos/{REPO}/installation"]  # no more


async def test_a_failed_run_reports_failed_with_its_classified_error(
    receiver: CallbackReceiver, github: FakeGitHub, settings: Settings, redis: Redis
) -> None:
    github.set_permission(REPO, "octo-dev", "write")
    payload = mention_from("octo-dev")
    github.add_from_webhook(payload)

    # This test's workspace answers nowhere: the run fails, classified.
    run_id = await deliver_and_run(cb_settings(settings, receiver), "issue_comment", payload)

    (call,) = receiver.received
    assert set(call.body) == FIVE
    assert call.body["status"] == "FAILED"
    assert call.body["run_id"] == run_id
    assert call.body["error"]["code"] == "workspace"
    assert "authorization" not in call.headers  # no key set, none sent
    record = await RunStore(redis, 3600).get(run_id)
    assert record is not None
    assert record.status is RunStatus.FAILED
    assert record.finished_at is not None


async def test_a_request_by_someone_without_write_access_is_no_run_and_sends_nothing(
    receiver: CallbackReceiver, github: FakeGitHub, settings: Settings, redis: Redis
) -> None:
    github.set_permission(REPO, "drive-by", "read")
    payload = mention_from("drive-by")
    github.add_from_webhook(payload)

    run_id = await deliver_and_run(cb_settings(settings, receiver), "issue_comment", payload)

    assert receiver.received == []
    assert await RunStore(redis, 3600).get(run_id) is None


async def test_5xx_is_retried_with_backoff_until_accepted(
    receiver: CallbackReceiver, settings: Settings, redis: Redis
) -> None:
    receiver.answer(500, 503)
    run_id = await deliver_and_run(cb_settings(settings, receiver), "pull_request", opened_pr())
    assert [c.answered for c in receiver.received] == [500, 503, 200]
    assert len({str(c.body) for c in receiver.received}) == 1  # the same body each time
    record = await RunStore(redis, 3600).get(run_id)
    assert record is not None
    assert record.callback_status is not None
    assert record.callback_status.startswith("delivered")


async def test_4xx_is_not_retried(
    receiver: CallbackReceiver, settings: Settings, redis: Redis
) -> None:
    receiver.answer(400)
    run_id = await deliver_and_run(cb_settings(settings, receiver), "pull_request", opened_pr())
    assert [c.answered for c in receiver.received] == [400]
    record = await RunStore(redis, 3600).get(run_id)
    assert record is not None
    assert record.callback_status == "rejected: the callback URL answered 400"


async def test_an_unreachable_receiver_is_retried_a_bounded_number_of_times(
    github: FakeGitHub, settings: Settings, redis: Redis
) -> None:
    closed = settings.model_copy(
        update={
            "automation_callback_url": "http://127.0.0.1:9/callback",
            "callback_retry_base_seconds": 0.02,
            "callback_max_attempts": 3,
            "review_on_open": False,
        }
    )
    run_id = await deliver_and_run(closed, "pull_request", opened_pr())
    record = await RunStore(redis, 3600).get(run_id)
    assert record is not None
    assert record.status is RunStatus.COMPLETED  # the run itself is not affected
    assert record.callback_status is not None
    assert record.callback_status.startswith("gave up after 3 attempts")
