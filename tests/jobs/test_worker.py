"""Delivery → web → Redis → real arq worker → fake GitHub: the permission gate and 👀 reaction."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import pickle
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest
from arq.constants import default_queue_name, job_key_prefix
from arq.worker import Worker
from redis.asyncio import Redis

from bot import keys
from bot.agent.workspace.factory import make_provider
from bot.agent.workspace.server import ServerProvider
from bot.config import Settings
from bot.errors import UnsafeDeployment
from bot.github import messages
from bot.jobs.context import DEPS
from bot.jobs.worker import QUEUE_EXPOSED, SETTINGS, exposed_queue, startup, worker_options
from bot.runs import metrics
from bot.runs.store import RunRecord, RunStatus, RunStore
from tests.conftest import Deliverer, load_payload, run_worker
from tests.fakes.github import FakeGitHub

REPO = "Codertocat/Hello-World"
INSTALLATION = 1  # as in the stored deliveries


@pytest.fixture
def github(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.add_repo(REPO)
    fake_github.add_installation(INSTALLATION, "Codertocat", [REPO])
    return fake_github


def _comment(body: str, login: str = "octo-dev", *, installation: bool = True) -> dict[str, Any]:
    relative = (
        "issue_comment/created.with-installation.json"
        if installation
        else ("issue_comment/created.json")
    )
    payload = copy.deepcopy(load_payload(relative))
    payload["comment"]["body"] = body
    payload["comment"]["user"]["login"] = login
    payload["sender"]["login"] = login
    payload["comment"]["id"] = 9000 + len(body)
    return payload


def _deliver(
    github: FakeGitHub, deliver: Deliverer, event: str, payload: dict[str, Any], **kw: Any
) -> int:
    """Register what the delivery refers to with the fake GitHub, then deliver it."""
    github.add_from_webhook(payload)
    return deliver.post(event, payload, **kw).status_code


def _reactions(github: FakeGitHub) -> list[dict[str, Any]]:
    return list(github.reactions)


def _assert_says(body: str, headline: str, details: list[str]) -> None:
    """The comment carries the bot's message: its headline and every line of what to do."""
    for line in [headline, *details]:
        assert line in body


def _writes(github: FakeGitHub) -> list[Any]:
    return [
        r
        for r in github.requests
        if r.method in {"POST", "PATCH", "PUT", "DELETE"} and "/access_tokens" not in r.path
    ]


@pytest.mark.parametrize("role", ["admin", "maintain", "write"])
async def test_a_writer_gets_an_eyes_reaction(
    role: str, github: FakeGitHub, deliver: Deliverer, settings: Settings, redis: Redis
) -> None:
    github.set_permission(REPO, "octo-dev", role)
    payload = _comment("@openhands fix this")
    assert _deliver(github, deliver, "issue_comment", payload) == 202

    await run_worker(settings)

    reactions = _reactions(github)
    assert len(reactions) == 1
    assert reactions[0]["content"] == "eyes"
    assert reactions[0]["target_kind"] == "issue_comment"
    assert reactions[0]["target_id"] == payload["comment"]["id"]
    # The bot's own token was narrowed to this one repository, with no access to code...
    ack, clone = github.token_log
    assert ack["repositories"] == ["Hello-World"]
    assert "contents" not in ack["permissions"]
    # ... and the workspace's token could only read it.
    assert clone["repositories"] == ["Hello-World"]
    assert clone["permissions"] == {"contents": "read", "metadata": "read"}
    # Nobody answers at this test's workspace: the tracking comment says so, finalized.
    (comment,) = [c for c in github.comments.values() if "openhands-run:" in c["body"]]
    _assert_says(comment["body"], *messages.failure("workspace", settings.bot_handle))


@pytest.mark.parametrize("role", ["read", "triage", "none"])
async def test_a_sender_without_write_access_gets_nothing(
    role: str, github: FakeGitHub, deliver: Deliverer, settings: Settings, redis: Redis
) -> None:
    github.set_permission(REPO, "octo-dev", role)
    assert _deliver(github, deliver, "issue_comment", _comment("@openhands fix this")) == 202

    await run_worker(settings)

    assert _reactions(github) == []
    assert _writes(github) == []
    assert github.requests_to("GET", r"/collaborators/octo-dev/permission$")
    # Not a run: no record (so no FAILED run, no callback), only a log line and a count.
    assert await RunStore(redis, 3600).recent() == []
    assert await redis.hget(metrics.DENIED_KEY, "mention") == b"1"


async def test_a_stranger_who_is_not_a_collaborator_gets_nothing(
    github: FakeGitHub, deliver: Deliverer, settings: Settings, redis: Redis
) -> None:
    github.add_repo("Codertocat/Private", private=True)
    github.add_installation(2, "Codertocat", ["Codertocat/Private"])
    payload = _comment("@openhands leak the secrets", login="mallory")
    payload["repository"]["name"] = "Private"
    payload["repository"]["full_name"] = "Codertocat/Private"
    payload["installation"]["id"] = 2
    assert _deliver(github, deliver, "issue_comment", payload) == 202

    await run_worker(settings)

    assert _reactions(github) == []
    assert _writes(github) == []


async def test_bots_and_quote_replies_never_reach_the_worker(
    github: FakeGitHub, deliver: Deliverer, settings: Settings, redis: Redis
) -> None:
    github.set_permission(REPO, "octo-dev", "admin")
    bot = _comment("@openhands fix this", login="dependabot[bot]")
    bot["comment"]["user"]["type"] = "Bot"
    quote = _comment("> @openhands fix this\n\nI had the same problem")
    for payload in (bot, quote):
        response = deliver.post("issue_comment", payload)
        assert response.status_code == 200
        assert response.json()["status"] == "ignored"

    await run_worker(settings)

    assert github.requests == []


async def test_permission_is_cached_between_runs(
    github: FakeGitHub, deliver: Deliverer, settings: Settings, redis: Redis
) -> None:
    github.set_permission(REPO, "octo-dev", "write")
    _deliver(github, deliver, "issue_comment", _comment("@openhands one"))
    await run_worker(settings)
    _deliver(github, deliver, "issue_comment", _comment("@openhands second one"))
    await run_worker(settings)

    assert len(_reactions(github)) == 2
    assert len(github.requests_to("GET", r"/collaborators/octo-dev/permission$")) == 1


async def test_a_review_comment_mention_reacts_on_the_review_comment(
    github: FakeGitHub, deliver: Deliverer, settings: Settings, redis: Redis
) -> None:
    github.set_permission(REPO, "octo-dev", "write")
    payload = copy.deepcopy(load_payload("pull_request_review_comment/created.json"))
    payload["comment"]["body"] = "@openhands rename this variable"
    payload["comment"]["user"]["login"] = payload["sender"]["login"] = "octo-dev"
    assert _deliver(github, deliver, "pull_request_review_comment", payload) == 202

    await run_worker(settings)

    (reaction,) = _reactions(github)
    assert reaction["target_kind"] == "pull_request_review_comment"
    assert reaction["target_id"] == payload["comment"]["id"]


async def test_the_trigger_label_reacts_on_the_issue(
    github: FakeGitHub, deliver: Deliverer, settings: Settings, redis: Redis
) -> None:
    github.set_permission(REPO, "octo-dev", "write")
    payload = copy.deepcopy(load_payload("issues/labeled.json"))
    payload["label"]["name"] = "openhands"
    payload["sender"]["login"] = "octo-dev"
    assert _deliver(github, deliver, "issues", payload) == 202

    await run_worker(settings)

    (reaction,) = _reactions(github)
    assert reaction["target_kind"] == "issue"
    assert reaction["target_id"] == payload["issue"]["number"]


async def test_the_installation_is_asked_of_github_never_taken_from_records(
    github: FakeGitHub, deliver: Deliverer, settings: Settings, redis: Redis
) -> None:
    github.set_permission(REPO, "octo-dev", "write")
    # Deliveries from a plain repository webhook carry no installation id.
    _deliver(github, deliver, "issue_comment", _comment("@openhands first", installation=False))
    await run_worker(settings)
    assert len(github.requests_to("GET", r"/repos/Codertocat/Hello-World/installation$")) == 1
    assert await redis.hget(keys.REPO_INSTALLATION, REPO.lower()) == str(INSTALLATION).encode()

    # A map planted in Redis does not decide: a new worker asks GitHub again.
    await redis.hset(keys.REPO_INSTALLATION, REPO.lower(), "999")
    _deliver(github, deliver, "issue_comment", _comment("@openhands second", installation=False))
    await run_worker(settings)
    assert len(github.requests_to("GET", r"/repos/Codertocat/Hello-World/installation$")) == 2
    assert not github.requests_to("POST", r"/app/installations/999/access_tokens$")
    assert len(_reactions(github)) == 2


async def test_installation_events_are_recorded(
    github: FakeGitHub, deliver: Deliverer, settings: Settings, redis: Redis
) -> None:
    added = load_payload("installation_repositories/added.json")
    assert deliver.post("installation_repositories", added).status_code == 202
    await run_worker(settings)
    installation_id = added["installation"]["id"]
    assert (
        await redis.hget(keys.REPO_INSTALLATION, "codertocat/space")
        == str(installation_id).encode()
    )

    removed = load_payload("installation_repositories/removed.json")
    assert deliver.post("installation_repositories", removed).status_code == 202
    await run_worker(settings)
    for repo in removed["repositories_removed"]:
        assert await redis.hget(keys.REPO_INSTALLATION, repo["full_name"].lower()) is None
    # The only call: a token to read the added repository's config (this fake does not know the
    # installation, so the read is left to the next resync).
    assert [(r.method, r.path) for r in github.requests] == [
        ("POST", f"/app/installations/{installation_id}/access_tokens")
    ]


async def test_github_5xx_is_retried_with_backoff(
    github: FakeGitHub, deliver: Deliverer, settings: Settings, redis: Redis
) -> None:
    github.set_permission(REPO, "octo-dev", "write")
    github.fail_next("POST", r"/reactions$", 502, times=2)
    _deliver(github, deliver, "issue_comment", _comment("@openhands fix"))

    await run_worker(settings)

    assert len(github.requests_to("POST", r"/reactions$")) == 3
    assert len(_reactions(github)) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "1"},  # secondary rate limit
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "{reset}"},  # primary rate limit
    ],
    ids=["secondary", "primary"],
)
async def test_rate_limits_are_waited_out(
    headers: dict[str, str],
    github: FakeGitHub,
    deliver: Deliverer,
    settings: Settings,
    redis: Redis,
) -> None:
    import time

    github.set_permission(REPO, "octo-dev", "write")
    sent = {k: v.format(reset=int(time.time()) + 1) for k, v in headers.items()}
    github.fail_next(
        "GET",
        r"/collaborators/octo-dev/permission$",
        403,
        headers=sent,
        body={"message": "API rate limit exceeded", "documentation_url": "https://docs.github.com"},
    )
    _deliver(github, deliver, "issue_comment", _comment("@openhands fix"))

    await run_worker(settings)

    assert len(github.requests_to("GET", r"/collaborators/octo-dev/permission$")) == 2
    assert len(_reactions(github)) == 1


async def test_a_long_rate_limit_is_not_waited_in_the_job(
    github: FakeGitHub, deliver: Deliverer, settings: Settings, redis: Redis
) -> None:
    github.set_permission(REPO, "octo-dev", "write")
    github.fail_next(
        "GET",
        r"/collaborators/octo-dev/permission$",
        429,
        headers={"retry-after": "3600"},
        body={"message": "secondary rate limit"},
    )
    delivery = str(uuid.uuid4())
    _deliver(github, deliver, "issue_comment", _comment("@openhands fix"), delivery_id=delivery)

    patient = settings.model_copy(update={"github_max_retry_wait_seconds": 5})
    worker = await run_worker(patient, max_burst_jobs=1)

    # One try, then the job is deferred by arq (Retry) rather than blocking a worker slot.
    assert len(github.requests_to("GET", r"/collaborators/octo-dev/permission$")) == 1
    assert worker.jobs_retried == 1
    assert _reactions(github) == []


async def test_a_failed_permission_check_is_reported_not_silent(
    github: FakeGitHub, deliver: Deliverer, settings: Settings, redis: Redis
) -> None:
    github.fail_next(
        "GET",
        r"/collaborators/octo-dev/permission$",
        403,
        body={"message": "Forbidden", "documentation_url": "https://docs.github.com"},
    )
    _deliver(github, deliver, "issue_comment", _comment("@openhands fix"))

    await run_worker(settings)

    assert _reactions(github) == []
    headline, details = messages.failure("permission_lookup", settings.bot_handle)
    (comment,) = [c for c in github.comments.values() if headline in c["body"]]
    _assert_says(comment["body"], headline, details)


class _Planted:
    """What a pickled job could make a pickle-reading worker do: run code while loading."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


async def test_a_pickled_job_planted_in_redis_never_runs_code(
    settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    # Anything that can write to Redis can queue jobs; a worker that unpickled them would run
    # its code. Jobs are JSON: the planted one fails to load and does nothing.
    marker = tmp_path / "planted-code-ran"
    planted = pickle.dumps({"t": 1, "f": "run_mention", "a": [_Planted(marker)], "k": {}})
    await redis.set(job_key_prefix + "planted", planted)
    await redis.zadd(default_queue_name, {"planted": 1})
    await run_worker(settings)
    assert not marker.exists()
    assert await redis.zcard(default_queue_name) == 0


@pytest.mark.parametrize(
    ("kind", "url", "exposed"),
    [
        ("local", "redis://127.0.0.1:6379/0", True),
        ("local", "redis://:s3cret@127.0.0.1:6379/0", False),
        ("local", "unix:///var/lib/openhands-bot/redis/redis.sock?db=0", False),
        ("runtime", "redis://127.0.0.1:6379/0", False),
    ],
)
def test_a_local_agent_beside_an_open_tcp_redis_is_flagged(
    kind: str, url: str, exposed: bool
) -> None:
    settings = Settings(_env_file=None, workspace_kind=kind, redis_url=url)  # type: ignore[call-arg]
    assert exposed_queue(settings) is exposed


async def test_a_run_interrupted_on_its_last_try_ends_failed_not_pending(
    github: FakeGitHub, deliver: Deliverer, settings: Settings, redis: Redis
) -> None:
    # The run is reading its repository (GitHub is slow) when the worker is told to stop.
    github.set_permission(REPO, "octo-dev", "write")
    github.delay("GET", rf"/repos/{REPO}$", 5, times=1)
    payload = _comment("@openhands fix it")
    assert _deliver(github, deliver, "issue_comment", payload, delivery_id="last-try") == 202
    options = worker_options(
        settings,
        workspaces=ServerProvider("http://127.0.0.1:9", None, "/nonexistent"),
        scheduled=False,
    )
    options["ctx"]["max_tries"] = 1  # this try is the last: arq will not run it again
    worker = Worker(**options, poll_delay=0.05, handle_signals=False)
    running = asyncio.create_task(worker.async_run())
    store = RunStore(redis, 3600)
    for _ in range(200):
        record = await store.get("last-try")
        if record is not None and record.status is RunStatus.RUNNING:
            break
        await asyncio.sleep(0.05)
    worker.handle_sig(signal.SIGTERM)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(running, 30)
    await worker.close()

    record = await store.get("last-try")
    assert record is not None
    assert record.status is RunStatus.FAILED
    assert record.error is not None
    assert record.error.code == "interrupted"


async def test_a_mention_cancelled_before_it_started_says_so_on_the_thread(
    github: FakeGitHub, deliver: Deliverer, settings: Settings, redis: Redis
) -> None:
    # E.g. retried after a GitHub hiccup (PENDING), then cancelled through the run API.
    github.set_permission(REPO, "octo-dev", "write")
    payload = _comment("@openhands fix it")
    assert _deliver(github, deliver, "issue_comment", payload, delivery_id="cancelled-early") == 202
    store = RunStore(redis, 3600)
    await store.create(
        RunRecord(
            run_id="cancelled-early",
            kind="mention",
            trigger="issue_comment",
            repo=REPO,
            status=RunStatus.CANCELLED,
        )
    )
    await redis.set(keys.STOP_PREFIX + "cancelled-early", "the run API")

    await run_worker(settings)

    (comment,) = [c for c in github.comments.values() if "openhands-run:" in c["body"]]
    _assert_says(comment["body"], *messages.stopped("the run API"))
    assert _reactions(github) == []  # it never started: no 👀, no agent


async def test_an_unsandboxed_local_agent_beside_an_open_redis_stops_the_worker(
    settings: Settings, redis: Redis
) -> None:
    unsafe = settings.model_copy(update={"workspace_kind": "local", "local_sandbox": False})
    assert exposed_queue(unsafe)
    ctx: dict[str, Any] = {SETTINGS: unsafe, "redis": redis}

    with pytest.raises(UnsafeDeployment, match="could reach the queue") as refused:
        await startup(ctx)

    assert str(refused.value) == QUEUE_EXPOSED
    assert DEPS not in ctx  # nothing was started


def test_a_sandboxed_local_agent_cannot_reach_the_queue(settings: Settings) -> None:
    sandboxed = settings.model_copy(update={"workspace_kind": "local", "local_sandbox": True})
    assert make_provider(sandboxed).isolates_network  # type: ignore[attr-defined]
