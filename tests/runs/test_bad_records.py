"""Bad input at the run API and bad data in Redis get clear answers: a number past 64 bits is a
422 that leaves no record; one undecodable run record is skipped (and logged), never a 500."""

from __future__ import annotations

import logging

import httpx
import pytest
from redis.asyncio import Redis

from bot import keys
from bot.runs.store import RunRecord, RunStore
from tests.fakes.github import FakeGitHub
from tests.repo_config.test_repo_config import REPO


@pytest.mark.parametrize("issue", [2**64, 2**63, 10**40])
async def test_a_huge_issue_number_is_refused_and_leaves_no_record(
    issue: int, api: httpx.AsyncClient, installed: FakeGitHub, redis: Redis
) -> None:
    body = {"repo": REPO, "prompt": "x", "output": "comment", "issue": issue, "run_id": "huge-1"}
    response = await api.post("/api/runs", json=body)
    assert response.status_code == 422, response.text
    assert "issue" in " | ".join(response.json()["problems"])
    assert await RunStore(redis, 3600).get("huge-1") is None
    assert await redis.zcard(keys.RUN_INDEX) == 0


async def test_the_largest_accepted_issue_number_is_queued(
    api: httpx.AsyncClient, installed: FakeGitHub
) -> None:
    body = {"repo": REPO, "prompt": "x", "output": "comment", "issue": 2**63 - 1}
    response = await api.post("/api/runs", json=body)
    assert response.status_code == 202, response.text


async def _store_runs(redis: Redis) -> None:
    runs = RunStore(redis, 3600)
    for n in range(3):
        await runs.create(RunRecord(run_id=f"good-{n}", kind="mention", trigger="label", repo=REPO))
    await runs.create(RunRecord(run_id="bad-json", kind="mention", trigger="label", repo=REPO))
    await runs.create(RunRecord(run_id="bad-field", kind="mention", trigger="label", repo=REPO))
    await runs.create(RunRecord(run_id="bad-bytes", kind="mention", trigger="label", repo=REPO))
    await redis.hset(keys.RUN_PREFIX + "bad-json", "cost", "{not json")
    await redis.hset(keys.RUN_PREFIX + "bad-field", "status", "EXPLODED")
    await redis.hset(keys.RUN_PREFIX + "bad-bytes", "repo", b"\xff\xfe")
    await redis.rpush(keys.RUN_LOG_PREFIX + "good-0", b"{broken", b'{"t": 1.0, "m": "kept"}')


async def test_unreadable_records_are_skipped_in_the_api_list(
    api: httpx.AsyncClient, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    await _store_runs(redis)
    with caplog.at_level(logging.WARNING, logger="bot.runs.store"):
        response = await api.get("/api/runs")
    assert response.status_code == 200, response.text
    assert sorted(r["run_id"] for r in response.json()["runs"]) == ["good-0", "good-1", "good-2"]
    skipped = " ".join(r.getMessage() for r in caplog.records)
    assert "bad-json" in skipped
    assert "bad-field" in skipped
    assert "bad-bytes" in skipped


async def test_one_unreadable_record_gets_a_clear_answer(
    api: httpx.AsyncClient, redis: Redis
) -> None:
    await _store_runs(redis)
    for run_id in ("bad-json", "bad-field", "bad-bytes"):
        one = await api.get(f"/api/runs/{run_id}")
        assert one.status_code == 404
        assert "cannot be read" in one.json()["error"]
        cancel = await api.post(f"/api/runs/{run_id}/cancel")
        assert cancel.status_code == 404
    good = await api.get("/api/runs/good-0")
    assert good.status_code == 200
    assert [line["m"] for line in good.json()["log"]] == ["kept"]


async def test_the_runs_page_skips_unreadable_records(api: httpx.AsyncClient, redis: Redis) -> None:
    await _store_runs(redis)
    page = await api.get("/runs")
    assert page.status_code == 200, page.text
    assert "good-1" in page.text
    assert "bad-json" not in page.text
    one = await api.get("/runs/bad-field")
    assert one.status_code == 404
    assert "cannot be read" in one.text
    assert (await api.get("/runs/good-0")).status_code == 200
