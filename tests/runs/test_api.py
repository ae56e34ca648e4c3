"""The run API over real HTTP: bearer auth, starting runs, status transitions, cancel, and
list filters; runs execute in a real arq worker."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from bot.config import Settings
from bot.intake.app import create_app
from bot.runs.store import RunRecord, RunStatus, RunStore
from tests.conftest import Deliverer, load_payload, run_worker
from tests.fakes.callbacks import CallbackReceiver
from tests.fakes.git_host import FakeGitHost
from tests.fakes.github import FakeGitHub
from tests.repo_config.test_repo_config import REPO, push
from tests.runs.conftest import TOKEN
from tests.servers import ServerThread


def test_the_api_is_off_without_a_token(settings: Settings, redis: Redis) -> None:
    with ServerThread(create_app(settings), health_path="/healthz", lifespan="on") as server:
        response = httpx.get(f"{server.url}/api/runs", headers={"Authorization": "Bearer x"})
    assert response.status_code == 401
    assert "BOT_API_TOKEN" in response.json()["error"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["none", "wrong", "not-bearer"],
)
async def test_every_route_needs_the_bearer_token(
    api: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for method, path in [
        ("GET", "/api/runs"),
        ("GET", "/api/runs/x"),
        ("POST", "/api/runs"),
        ("POST", "/api/runs/x/cancel"),
    ]:
        response = await api.request(method, path, headers={"Authorization": "", **headers})
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"] == "Bearer"


async def test_an_ad_hoc_run_goes_from_pending_to_its_end(
    api: httpx.AsyncClient, installed: FakeGitHub, api_settings: Settings, redis: Redis
) -> None:
    started = await api.post("/api/runs", json={"repo": REPO, "prompt": "Count the files."})
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    assert started.json() == {"run_id": run_id, "status": "PENDING", "url": f"/api/runs/{run_id}"}
    pending = (await api.get(f"/api/runs/{run_id}")).json()
    assert pending["status"] == "PENDING"
    assert (pending["kind"], pending["trigger"], pending["repo"]) == ("automation", "api", REPO)
    assert pending["started_at"] is None

    await run_worker(api_settings)  # its workspace answers nowhere: the run fails clearly

    done = (await api.get(f"/api/runs/{run_id}")).json()
    assert done["status"] == "FAILED"
    assert done["error"]["code"] == "workspace"
    assert done["started_at"] <= done["finished_at"]
    assert done["duration"] >= 0
    assert [line["m"].split(" ")[0] for line in done["log"]] == ["started", "FAILED:"]


async def test_a_named_automation_takes_its_prompt_from_the_config(
    api: httpx.AsyncClient,
    installed: FakeGitHub,
    git_host: FakeGitHost,
    api_settings: Settings,
    deliver: Deliverer,
    redis: Redis,
) -> None:
    unknown = await api.post("/api/runs", json={"repo": REPO, "automation": "nightly"})
    assert unknown.status_code == 404  # the config was not read yet
    assert unknown.json()["known"] == []

    await push(deliver, api_settings, git_host.rev_parse(REPO, "refs/heads/main"))
    started = await api.post(
        "/api/runs", json={"repo": REPO, "automation": "NIGHTLY", "run_id": "my-run-1"}
    )
    assert started.status_code == 202, started.text
    assert started.json()["run_id"] == "my-run-1"
    record = (await api.get("/api/runs/my-run-1")).json()
    assert record["automation"] == "nightly"

    again = await api.post(
        "/api/runs", json={"repo": REPO, "automation": "nightly", "run_id": "my-run-1"}
    )
    assert again.status_code == 409
    missing = await api.post("/api/runs", json={"repo": REPO, "automation": "hourly"})
    assert missing.status_code == 404
    assert missing.json()["known"] == ["nightly", "weekly-report"]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"repo": REPO}, "exactly one of `automation`"),
        ({"repo": REPO, "prompt": "x", "automation": "y"}, "exactly one of `automation`"),
        ({"repo": "no-slash", "prompt": "x"}, "repo: Value error, must be owner/name"),
        ({"repo": REPO, "prompt": "x", "output": "comment"}, "needs `issue`"),
        ({"repo": REPO, "prompt": "x", "callback_url": "ftp://h/x"}, "http(s) URL"),
        ({"repo": REPO, "prompt": "x", "run_id": "../etc"}, "run_id"),
        ({"repo": REPO, "prompt": "x", "surprise": 1}, "surprise: Extra inputs"),
    ],
)
async def test_invalid_requests_say_what_is_wrong(
    api: httpx.AsyncClient, body: dict[str, Any], problem: str
) -> None:
    response = await api.post("/api/runs", json=body)
    assert response.status_code == 422
    assert problem in " | ".join(response.json()["problems"])


async def test_a_repository_the_app_does_not_cover_is_refused(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/runs", json={"repo": "someone/else", "prompt": "x"})
    assert response.status_code == 404
    assert "not installed on someone/else" in response.json()["error"]


async def test_cancelling_a_queued_run_ends_it_and_reports_it(
    api: httpx.AsyncClient, installed: FakeGitHub, api_settings: Settings, redis: Redis
) -> None:
    with CallbackReceiver().serving() as receiver:
        started = await api.post(
            "/api/runs",
            json={
                "repo": REPO,
                "prompt": "x",
                "callback_url": receiver.url(),
                "callback_api_key": "per-run-key",
                "run_id": "to-cancel",
            },
        )
        assert started.status_code == 202
        cancelled = await api.post("/api/runs/to-cancel/cancel")
        assert cancelled.status_code == 202
        assert cancelled.json()["status"] == "CANCELLED"
        # What the job may still ask: which installation covers the repository.
        lookup = f"/repos/{REPO}/installation"
        calls_before = len([r for r in installed.requests if r.path != lookup])

        await run_worker(api_settings)

        record = (await api.get("/api/runs/to-cancel")).json()
        assert record["status"] == "CANCELLED"
        assert record["error"] == {"code": "cancelled", "detail": "stopped by the run API"}
        assert "callback_api_key" not in str(record)
        # The job never started the run.
        assert len([r for r in installed.requests if r.path != lookup]) == calls_before
        (call,) = receiver.received
        assert call.headers["authorization"] == "Bearer per-run-key"
        assert call.body == {
            "status": "FAILED",
            "run_id": "to-cancel",
            "conversation_id": None,
            "cost": 0.0,
            "error": {"code": "cancelled", "detail": "stopped by the run API"},
        }
    again = await api.post("/api/runs/to-cancel/cancel")
    assert again.status_code == 409
    assert (await api.post("/api/runs/nope/cancel")).status_code == 404


async def test_list_filters_by_repo_status_and_kind(api: httpx.AsyncClient, redis: Redis) -> None:
    store = RunStore(redis, 3600)
    seeds = [
        ("r1", "mention", "octo/app", RunStatus.COMPLETED),
        ("r2", "review", "octo/app", RunStatus.FAILED),
        ("r3", "automation", "octo/other", RunStatus.RUNNING),
        ("r4", "automation", "octo/app", RunStatus.COMPLETED),
    ]
    for index, (run_id, kind, repo, status) in enumerate(seeds):
        record = RunRecord(
            run_id=run_id,
            kind=kind,
            trigger="api",
            repo=repo,
            status=status,
            created_at=1_800_000_000 + index,
        )
        assert await store.create(record)

    async def ids(**query: str) -> list[str]:
        response = await api.get("/api/runs", params=query)
        assert response.status_code == 200
        return [run["run_id"] for run in response.json()["runs"]]

    assert await ids() == ["r4", "r3", "r2", "r1"]  # newest first
    assert await ids(repo="OCTO/APP") == ["r4", "r2", "r1"]
    assert await ids(status="completed") == ["r4", "r1"]
    assert await ids(kind="automation") == ["r4", "r3"]
    assert await ids(repo="octo/app", kind="automation", status="COMPLETED") == ["r4"]
    assert await ids(limit="1") == ["r4"]
    assert (await api.get("/api/runs", params={"status": "DONE"})).status_code == 400
    assert (await api.get("/api/runs/r9")).status_code == 404


async def test_a_running_run_whose_worker_died_can_still_be_cancelled(
    api: httpx.AsyncClient, redis: Redis
) -> None:
    # The record says RUNNING but no worker holds its job (the worker was killed).
    store = RunStore(redis, 3600)
    await store.create(
        RunRecord(
            run_id="orphan", kind="automation", trigger="api", repo=REPO, status=RunStatus.RUNNING
        )
    )
    cancelled = await api.post("/api/runs/orphan/cancel")
    assert cancelled.status_code == 202
    assert cancelled.json()["status"] == "CANCELLED"
    record = (await api.get("/api/runs/orphan")).json()
    assert record["status"] == "CANCELLED"


async def test_a_run_id_taken_by_a_queued_delivery_is_refused_and_leaves_no_record(
    api: httpx.AsyncClient, installed: FakeGitHub, deliver: Deliverer, redis: Redis
) -> None:
    payload = copy.deepcopy(load_payload("issue_comment/created.with-installation.json"))
    payload["comment"]["body"] = "@openhands hello"
    assert deliver.post("issue_comment", payload, delivery_id="taken-id").status_code == 202
    response = await api.post("/api/runs", json={"repo": REPO, "prompt": "x", "run_id": "taken-id"})
    assert response.status_code == 409
    # What the id names is still the delivery's run, not a half-made API run.
    record = (await api.get("/api/runs/taken-id")).json()
    assert (record["kind"], record["status"]) == ("mention", "PENDING")
    assert await RunStore(redis, 3600).get("taken-id") is None


async def test_a_delivery_still_in_the_queue_reads_as_pending(
    api: httpx.AsyncClient, deliver: Deliverer, redis: Redis
) -> None:
    payload = copy.deepcopy(load_payload("issue_comment/created.with-installation.json"))
    payload["comment"]["body"] = "@openhands hello"
    assert deliver.post("issue_comment", payload, delivery_id="still-queued").status_code == 202
    record = (await api.get("/api/runs/still-queued")).json()
    assert record["status"] == "PENDING"
    assert record["kind"] == "mention"
    assert record["repo"] == payload["repository"]["full_name"]
    assert record["number"] == payload["issue"]["number"]
    assert record["log"] == []
