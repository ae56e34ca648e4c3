"""Structured logs: one JSON object per line, each carrying the delivery, run, repository and
installation it is about, from the web process and from inside a worker's job."""

from __future__ import annotations

import copy
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.config import Settings
from bot.logs import JsonFormatter
from tests.conftest import Deliverer, load_payload, run_worker
from tests.fakes.github import FakeGitHub

REPO = "Codertocat/Hello-World"
INSTALLATION = 1  # as in the stored deliveries


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def parse(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


async def test_every_line_about_a_run_carries_its_ids(
    fake_github: FakeGitHub,
    deliver: Deliverer,
    settings: Settings,
    redis: Redis,
    json_lines: io.StringIO,
) -> None:
    fake_github.add_repo(REPO)
    fake_github.add_installation(INSTALLATION, "Codertocat", [REPO])
    fake_github.set_permission(REPO, "drive-by", "read")
    payload = copy.deepcopy(load_payload("issue_comment/created.with-installation.json"))
    payload["comment"].update(body="@openhands fix this", id=5151)
    payload["comment"]["user"]["login"] = payload["sender"]["login"] = "drive-by"
    fake_github.add_from_webhook(payload)
    response = deliver.post("issue_comment", payload, delivery_id="delivery-logs-1")
    assert response.status_code == 202

    await run_worker(settings)

    lines = parse(json_lines)
    # Everything the bot logged while running the job (the worker's own start and stop aside),
    # including lines from modules that were never told the ids (the GitHub client's).
    about_run = [
        line
        for line in lines
        if line["logger"].startswith("bot.")
        and line["msg"] not in {"worker ready", "worker stopping"}
        and line["logger"] != "bot.agent.gateway.server"  # the worker's gateway starting, stopping
        and not line["msg"].startswith("WORKSPACE_KIND=local")  # the start-up warning
    ]
    assert any("may not write" in line["msg"] for line in about_run), lines
    assert any(line["logger"] == "bot.github.client" for line in about_run), lines
    for line in about_run:
        assert line["run_id"] == "delivery-logs-1", line
        assert line["delivery_id"] == "delivery-logs-1", line
        assert line["repo"] == REPO, line
        assert line["installation_id"] == INSTALLATION, line
        assert line["level"] in {"info", "warning", "error"}
        assert line["ts"].endswith("Z")
    tokens = [t["token"] for t in fake_github.token_log]
    assert tokens
    assert not any(token in json_lines.getvalue() for token in tokens)


async def test_the_web_process_logs_the_delivery_it_queued(
    fake_github: FakeGitHub, deliver: Deliverer, redis: Redis, json_lines: io.StringIO
) -> None:
    # The web app runs in a server thread: its lines reach the root handler too.
    payload = copy.deepcopy(load_payload("issue_comment/created.with-installation.json"))
    payload["comment"]["body"] = "@openhands hello"
    assert deliver.post("issue_comment", payload, delivery_id="delivery-logs-2").status_code == 202
    (queued,) = [line for line in parse(json_lines) if line.get("logger") == "bot.intake.app"]
    assert queued["delivery_id"] == "delivery-logs-2"
    assert queued["run_id"] == "delivery-logs-2"
    assert queued["event"] == "issue_comment"
    assert queued["repo"] == payload["repository"]["full_name"]
    assert queued["installation_id"] == payload["installation"]["id"]
