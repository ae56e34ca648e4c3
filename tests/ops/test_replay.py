"""`openhands-bot replay`: saved deliveries through the real web app, Redis and a real worker."""

from __future__ import annotations

import copy
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from arq.constants import default_queue_name, job_key_prefix
from arq.jobs import deserialize_job
from pydantic import SecretStr
from redis.asyncio import Redis

from bot.agent.workspace.server import ServerProvider
from bot.config import Settings
from bot.github import messages
from bot.ops import cli, replay
from bot.queue import codec
from tests.conftest import APP_ID, PAYLOADS, WEBHOOK_SECRET, load_payload
from tests.fakes.git_host import FakeGitHost
from tests.fakes.github import FakeGitHub
from tests.servers import ServerThread

REPO = "Codertocat/Hello-World"


def _mention(body: str = "@openhands fix this") -> dict[str, Any]:
    payload = copy.deepcopy(load_payload("issue_comment/created.with-installation.json"))
    payload["comment"]["body"] = body
    payload["comment"]["user"]["login"] = payload["sender"]["login"] = "octo-dev"
    return payload


def _ended(run_id: str, outcome: str, tries: int) -> str:
    """How the last line about a run starts (the job's result follows)."""
    return replay.RUN_ENDED.partition("{result}")[0].format(
        run_id=run_id, outcome=outcome, tries=tries
    )


async def _queued(redis: Redis) -> list[str]:
    return [member.decode() for member in await redis.zrange(default_queue_name, 0, -1)]


async def test_a_ping_is_ignored(settings: Settings, redis: Redis) -> None:
    body = (PAYLOADS / "ping" / "default.json").read_bytes()

    answer = await replay.post_delivery(
        settings, "ping", replay.read_delivery(body), delivery_id=replay.new_delivery_id()
    )

    assert (answer.status_code, answer.describe()) == (200, replay.IGNORED.format(reason="ping"))
    assert answer.queued_run is None
    assert await _queued(redis) == []


async def test_a_mention_is_queued_under_a_fresh_delivery_id_each_time(
    settings: Settings, redis: Redis
) -> None:
    body = json.dumps(_mention()).encode()

    first, second = [
        await replay.post_delivery(
            settings, "issue_comment", body, delivery_id=replay.new_delivery_id()
        )
        for _ in range(2)
    ]

    assert first.status_code == second.status_code == 202
    assert first.describe() == replay.QUEUED.format(task="mention", run_id=first.queued_run)
    assert first.queued_run != second.queued_run
    assert sorted(await _queued(redis)) == sorted([first.queued_run, second.queued_run])
    job = deserialize_job(
        await redis.get(job_key_prefix + str(first.queued_run)), deserializer=codec.loads
    )
    assert job.function == "run_mention"
    assert job.args[0]["instruction"] == "fix this"


async def test_the_same_delivery_id_twice_is_one_job_and_a_running_server_answers_the_same(
    settings: Settings, redis: Redis, web: ServerThread
) -> None:
    body = json.dumps(_mention()).encode()
    delivery_id = str(uuid.uuid4())

    here = await replay.post_delivery(settings, "issue_comment", body, delivery_id=delivery_id)
    there = await replay.post_delivery(
        settings, "issue_comment", body, delivery_id=delivery_id, url=web.url
    )

    assert here.describe() == replay.QUEUED.format(task="mention", run_id=delivery_id)
    assert there.describe() == replay.DUPLICATE.format(run_id=delivery_id)
    assert there.queued_run == delivery_id
    assert await _queued(redis) == [delivery_id]


async def test_a_delivery_signed_with_another_secret_is_refused(
    settings: Settings, web: ServerThread
) -> None:
    other = settings.model_copy(update={"github_webhook_secret": SecretStr("not-the-secret")})

    answer = await replay.post_delivery(other, "ping", b"{}", delivery_id="d-1", url=web.url)

    assert answer.describe() == replay.REFUSED.format(
        status=401, error="bad or missing X-Hub-Signature-256"
    )
    assert answer.queued_run is None


async def test_run_executes_the_job_with_a_burst_worker(
    settings: Settings, redis: Redis, fake_github: FakeGitHub, git_host: FakeGitHost
) -> None:
    git_host.create_repo(REPO, {"README.md": "# Hello\n"})
    fake_github.add_installation(1, "Codertocat", [REPO])
    fake_github.set_permission(REPO, "octo-dev", "write")
    payload = _mention()
    fake_github.add_from_webhook(payload)
    answer = await replay.post_delivery(
        settings,
        "issue_comment",
        json.dumps(payload).encode(),
        delivery_id=replay.new_delivery_id(),
    )
    run_id = answer.queued_run
    assert run_id is not None
    said: list[str] = []

    succeeded = await replay.run_burst(
        settings,
        run_id,
        say=said.append,
        workspaces=ServerProvider("http://127.0.0.1:9", None, "/nonexistent"),
    )

    assert succeeded
    assert said[0] == replay.RUN_STATUS.format(run_id=run_id, status="queued")
    assert said[-1].startswith(_ended(run_id, "done", 1))
    # The job really ran on GitHub's side: 👀 on the comment, and a finalized tracking comment.
    assert [r["content"] for r in fake_github.reactions] == ["eyes"]
    headline, _ = messages.failure("workspace", settings.bot_handle)
    assert any(headline in c["body"] for c in fake_github.comments.values())


def test_the_command_replays_and_runs_a_file(
    fake_github: FakeGitHub,
    rsa_keys: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    redis: Redis,
    redis_url: str,
) -> None:
    fake_github.add_installation(1, "Codertocat", [REPO])
    fake_github.set_permission(REPO, "octo-dev", "read")  # the gate stops it: no workspace needed
    payload = _mention()
    fake_github.add_from_webhook(payload)
    delivery = tmp_path / "delivery.json"
    delivery.write_text(json.dumps(payload))
    for name in list(os.environ):
        if name.startswith(("GITHUB_", "REDIS_", "WORKSPACE_", "AGENT_", "STATE_DIR")):
            monkeypatch.delenv(name)
    key_file = tmp_path / "app.pem"
    key_file.write_text(rsa_keys[0])
    (tmp_path / ".env").write_text(
        f"GITHUB_APP_ID={APP_ID}\nGITHUB_PRIVATE_KEY_PATH={key_file}\n"
        f"GITHUB_WEBHOOK_SECRET={WEBHOOK_SECRET}\nGITHUB_API_URL={fake_github.url}\n"
        f"REDIS_URL={redis_url}\nWORKSPACE_KIND=server\nAGENT_SERVER_URL=http://127.0.0.1:9\n"
    )
    monkeypatch.chdir(tmp_path)

    code = cli.main(["replay", str(delivery), "--event", "issue_comment", "--delivery-id", "r-1"])

    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0] == replay.QUEUED.format(task="mention", run_id="r-1")
    assert lines[-1].startswith(_ended("r-1", "done", 1))
    assert fake_github.requests_to("GET", r"/collaborators/octo-dev/permission$")
    assert fake_github.reactions == []

    (tmp_path / "not-json.json").write_text("nope")
    assert cli.main(["replay", "not-json.json", "--event", "ping"]) == 1
    with pytest.raises(json.JSONDecodeError) as not_json:
        json.loads("nope")
    assert replay.NOT_JSON.format(error=not_json.value) in capsys.readouterr().err
