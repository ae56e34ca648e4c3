"""/metrics over real HTTP, parsed back from the exposition text: deliveries counted by the intake,
runs finished by a real arq worker, queue depth and GitHub rate limits from real Redis."""

from __future__ import annotations

import copy
import re
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from bot.config import Settings
from bot.intake.app import create_app
from bot.runs import metrics
from bot.runs.store import RunRecord, RunStatus, RunStore
from tests.conftest import Deliverer, load_payload, run_worker
from tests.fakes.github import FakeGitHub
from tests.servers import ServerThread

REPO = "Codertocat/Hello-World"
INSTALLATION = 1  # as in the stored deliveries
Labels = frozenset[tuple[str, str]]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')


class Scrape:
    """A parsed exposition: every sample by name and labels; each belongs to a declared family."""

    def __init__(self, text: str) -> None:
        self.samples: dict[tuple[str, Labels], float] = {}
        types: dict[str, str] = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ")
                types[name] = kind
                continue
            if line.startswith("#") or not line:
                continue
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, labels, value = match.groups()
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in types or types.get(family) == "histogram", f"undeclared {name}"
            pairs = frozenset(_LABEL.findall(labels or ""))
            assert (name, pairs) not in self.samples, f"duplicate sample {line!r}"
            self.samples[name, pairs] = float(value)

    def get(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def __call__(self, name: str, **labels: str) -> float:
        value = self.get(name, **labels)
        assert value is not None, f"no sample {name} {labels}"
        return value

    def buckets(self, name: str, **labels: str) -> list[tuple[str, float]]:
        found = [
            (dict(pairs)["le"], value)
            for (sample, pairs), value in self.samples.items()
            if sample == f"{name}_bucket" and set(labels.items()) <= set(pairs)
        ]
        return sorted(found, key=lambda item: float(item[0]))


def scrape(url: str, **headers: str) -> Scrape:
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return Scrape(response.text)


@pytest.fixture
def github(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.add_repo(REPO)
    fake_github.add_installation(INSTALLATION, "Codertocat", [REPO])
    return fake_github


def comment_from(login: str, body: str) -> dict[str, Any]:
    payload = copy.deepcopy(load_payload("issue_comment/created.with-installation.json"))
    payload["comment"].update(body=body, id=4242)
    payload["comment"]["user"]["login"] = login
    payload["sender"]["login"] = login
    return payload


async def test_deliveries_runs_queue_and_rate_limits_add_up(
    github: FakeGitHub, settings: Settings, redis: Redis
) -> None:
    settings = settings.model_copy(update={"review_on_open": False, "max_body_bytes": 64 * 1024})
    github.set_permission(REPO, "drive-by", "read")
    mention = comment_from("drive-by", "@openhands fix this")
    github.add_from_webhook(mention)
    with (
        ServerThread(create_app(settings), health_path="/healthz", lifespan="on") as web,
        Deliverer(web.url) as deliver,
        Deliverer(web.url, secret="not-the-secret") as forger,
    ):
        before = scrape(web.url)
        assert before.get("openhands_bot_webhook_deliveries_total", event="pull_request") is None
        assert before("openhands_bot_queue_depth") == 0

        review_id = str(uuid.uuid4())
        pr = load_payload("pull_request/opened.json")
        assert deliver.post("pull_request", pr, delivery_id=review_id).status_code == 202
        assert deliver.post("pull_request", pr, delivery_id=review_id).status_code == 200
        mentioned = deliver.post("issue_comment", mention)
        assert mentioned.status_code == 202
        chatter = comment_from("drive-by", "thanks, looks good")
        assert deliver.post("issue_comment", chatter).json()["status"] == "ignored"
        assert forger.post("issue_comment", mention).status_code == 401
        assert deliver.post("issue_comment", b"{not json").status_code == 400
        assert deliver.post("push", b"x" * (65 * 1024)).status_code == 413
        queued = scrape(web.url)

        await run_worker(settings)
        after = scrape(web.url)

    def delivered(event: str, outcome: str) -> float:
        return queued("openhands_bot_webhook_deliveries_total", event=event, outcome=outcome)

    assert delivered("pull_request", "queued") == 1
    assert delivered("pull_request", "duplicate") == 1
    assert delivered("issue_comment", "queued") == 1
    assert delivered("issue_comment", "ignored") == 1
    assert delivered("issue_comment", "bad_request") == 1
    assert delivered("unverified", "bad_signature") == 1
    assert delivered("unverified", "too_large") == 1
    assert queued("openhands_bot_queue_depth") == 2
    assert (
        queued.get("openhands_bot_runs_finished_total", kind="review", status="COMPLETED") is None
    )

    assert after("openhands_bot_queue_depth") == 0
    assert after("openhands_bot_runs_finished_total", kind="review", status="COMPLETED") == 1
    # The mention's sender may not write: a denied request, not a run (nor a FAILED one).
    assert queued.get("openhands_bot_requests_denied_total", kind="mention") is None
    assert after("openhands_bot_requests_denied_total", kind="mention") == 1
    assert after.get("openhands_bot_runs_finished_total", kind="mention", status="FAILED") is None
    store = RunStore(redis, 3600)
    assert await store.get(mentioned.json()["run_id"]) is None
    record = await store.get(review_id)
    assert record is not None
    assert record.duration is not None
    duration = "openhands_bot_run_duration_seconds"
    assert after(f"{duration}_count", kind="review") == 1
    assert after(f"{duration}_sum", kind="review") == pytest.approx(record.duration)
    buckets = after.buckets(duration, kind="review")
    assert buckets[-1] == ("+Inf", 1)
    assert [count for _, count in buckets] == sorted(count for _, count in buckets)
    cost = "openhands_bot_run_cost_usd"
    assert after(f"{cost}_bucket", kind="review", le="0.01") == 1  # no agent ran: $0
    assert after(f"{cost}_sum", kind="review") == 0

    # The mention's permission check: the App minted a token, the installation asked GitHub.
    for installation in ("app", str(INSTALLATION)):
        labels = {"installation": installation, "resource": "core"}
        assert after("openhands_bot_github_rate_limit_remaining", **labels) == 4999
        assert after("openhands_bot_github_rate_limit_limit", **labels) == 5000
    assert after("openhands_bot_redis_up") == 1


async def test_histogram_buckets_hold_what_they_should(redis: Redis) -> None:
    finished = {"status": RunStatus.COMPLETED, "created_at": 900.0}
    runs = [
        RunRecord(run_id="a", kind="mention", trigger="label", repo="o/r", **finished,
                  started_at=1000.0, finished_at=1042.0, cost=0.3),
        RunRecord(run_id="b", kind="mention", trigger="label", repo="o/r", **finished,
                  started_at=1000.0, finished_at=1005.0, cost=0.01),
        RunRecord(run_id="c", kind="mention", trigger="label", repo="o/r", created_at=900.0,
                  status=RunStatus.CANCELLED, finished_at=950.0),  # cancelled while queued
    ]  # fmt: skip
    for record in runs:
        await metrics.count_finished(redis, record)

    result = Scrape(await metrics.exposition(redis, Counter()))

    assert result("openhands_bot_runs_finished_total", kind="mention", status="COMPLETED") == 2
    assert result("openhands_bot_runs_finished_total", kind="mention", status="CANCELLED") == 1
    duration = dict(result.buckets("openhands_bot_run_duration_seconds", kind="mention"))
    assert (duration["5"], duration["30"], duration["60"], duration["+Inf"]) == (1, 1, 2, 2)
    assert result("openhands_bot_run_duration_seconds_sum", kind="mention") == 47
    assert result("openhands_bot_run_duration_seconds_count", kind="mention") == 2
    cost = dict(result.buckets("openhands_bot_run_cost_usd", kind="mention"))
    assert (cost["0.01"], cost["0.25"], cost["0.5"], cost["+Inf"]) == (1, 1, 2, 2)
    assert result("openhands_bot_run_cost_usd_sum", kind="mention") == pytest.approx(0.31)


async def test_rate_limits_keep_the_last_value_and_forget_past_windows(redis: Redis) -> None:
    now = int(time.time())

    def answer(remaining: int, reset: int, resource: str = "core") -> httpx.Response:
        headers = {
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-limit": "5000",
            "x-ratelimit-reset": str(reset),
            "x-ratelimit-resource": resource,
        }
        return httpx.Response(200, headers=headers)

    await metrics.RateLimitRecorder(redis, "7")(answer(4000, now + 600))
    await metrics.RateLimitRecorder(redis, "7")(answer(3990, now + 600))
    await metrics.RateLimitRecorder(redis, "7")(answer(20, now + 600, "search"))
    await metrics.RateLimitRecorder(redis, "8")(answer(12, now - 5))  # its window is over
    await metrics.RateLimitRecorder(redis, "9")(httpx.Response(200))  # GHES, limits off

    result = Scrape(await metrics.exposition(redis, Counter()))

    remaining = "openhands_bot_github_rate_limit_remaining"
    assert result(remaining, installation="7", resource="core") == 3990
    assert result(remaining, installation="7", resource="search") == 20
    assert result(remaining, installation="8", resource="core") == 5000
    assert not [labels for name, labels in result.samples if ("installation", "9") in labels]


async def test_without_redis_the_intake_counts_and_metrics_still_answer(settings: Settings) -> None:
    down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:9/0"})
    with (
        ServerThread(create_app(down), health_path="/healthz", lifespan="on") as web,
        Deliverer(web.url) as deliver,
    ):
        mention = comment_from("octo-dev", "@openhands fix this")
        assert deliver.post("issue_comment", mention).status_code == 503
        result = scrape(web.url)
    event = {"event": "issue_comment", "outcome": "queue_unavailable"}
    assert result("openhands_bot_webhook_deliveries_total", **event) == 1
    assert result("openhands_bot_redis_up") == 0
    assert result.get("openhands_bot_queue_depth") is None


def test_a_metrics_token_guards_the_scrape(settings: Settings, redis: Redis) -> None:
    guarded = settings.model_copy(update={"metrics_token": SecretStr("scrape-me-4d1c")})
    with ServerThread(create_app(guarded), health_path="/healthz", lifespan="on") as web:
        for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "scrape-me-4d1c"}]:
            response = httpx.get(f"{web.url}/metrics", headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"] == "Bearer"
        result = scrape(web.url, Authorization="Bearer scrape-me-4d1c")
    assert result("openhands_bot_redis_up") == 1
