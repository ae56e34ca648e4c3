"""The webhook intake over real HTTP and real Redis: every input gets a deliberate answer."""

from __future__ import annotations

import copy
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.constants import default_queue_name, job_key_prefix
from arq.jobs import deserialize_job
from redis.asyncio import Redis

from bot.config import MiB, Settings
from bot.intake import signature
from bot.intake.app import create_app
from bot.queue import codec, signing
from tests.conftest import (
    PAYLOADS,
    WEBHOOK_SECRET,
    Deliverer,
    all_payloads,
    load_payload,
    make_settings,
)
from tests.servers import ServerThread


def _mention_payload(body: str = "@openhands fix this") -> dict[str, Any]:
    payload = copy.deepcopy(load_payload("issue_comment/created.with-installation.json"))
    payload["comment"]["body"] = body
    return payload


async def _queued_ids(redis: Redis) -> list[str]:
    return [m.decode() for m in await redis.zrange(default_queue_name, 0, -1)]


@pytest.mark.parametrize("path", all_payloads(), ids=lambda p: str(p.relative_to(PAYLOADS)))
async def test_every_real_delivery_gets_a_2xx(path: Path, deliver: Deliverer, redis: Redis) -> None:
    delivery_id = str(uuid.uuid4())
    body = path.read_bytes()  # noqa: ASYNC240 - a small fixture file
    response = deliver.post(path.parent.name, body, delivery_id=delivery_id)
    assert 200 <= response.status_code < 300, response.text
    body = response.json()
    queued = await _queued_ids(redis)
    if body["status"] == "queued":
        assert response.status_code == 202
        assert body["run_id"] == delivery_id
        assert queued == [delivery_id]
    else:
        assert body["status"] == "ignored"
        assert body["reason"]
        assert queued == []


async def test_a_mention_is_queued_as_an_arq_job(
    deliver: Deliverer, redis: Redis, settings: Settings
) -> None:
    delivery_id = str(uuid.uuid4())
    response = deliver.post("issue_comment", _mention_payload(), delivery_id=delivery_id)
    assert response.status_code == 202
    assert response.json() == {"status": "queued", "run_id": delivery_id, "task": "mention"}
    raw = await redis.get(job_key_prefix + delivery_id)
    # Signed by the bot, so a worker can tell it from a planted job; JSON, never pickle.
    payload = signing.verified(signing.keys_for(settings).queue, raw)
    assert payload.startswith(b"{")
    job = deserialize_job(raw, deserializer=codec.loads)
    assert job.function == "run_mention"
    (task,) = job.args
    assert task["instruction"] == "fix this"
    assert task["run_id"] == delivery_id


async def test_the_same_delivery_twenty_times_is_one_job(deliver: Deliverer, redis: Redis) -> None:
    delivery_id = str(uuid.uuid4())
    payload = _mention_payload()
    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(
            pool.map(
                lambda _: deliver.post("issue_comment", payload, delivery_id=delivery_id),
                range(20),
            )
        )
    statuses = sorted(r.json()["status"] for r in responses)
    assert statuses == ["duplicate"] * 19 + ["queued"]
    assert all(r.json()["run_id"] == delivery_id for r in responses)
    assert await _queued_ids(redis) == [delivery_id]


async def test_a_redelivery_after_the_job_ran_is_still_a_no_op(
    deliver: Deliverer, redis: Redis
) -> None:
    delivery_id = str(uuid.uuid4())
    assert (
        deliver.post("issue_comment", _mention_payload(), delivery_id=delivery_id).status_code
        == 202
    )
    # The worker took the job and its result expired: only our delivery marker remains.
    await redis.delete(job_key_prefix + delivery_id)
    await redis.zrem(default_queue_name, delivery_id)
    again = deliver.post("issue_comment", _mention_payload(), delivery_id=delivery_id)
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert await _queued_ids(redis) == []


@pytest.mark.parametrize(
    "case",
    ["missing", "wrong", "other-secret", "altered-body", "sha1-prefix", "empty", "not-ascii"],
)
async def test_bad_signatures_are_401(case: str, deliver: Deliverer, redis: Redis) -> None:
    body = json.dumps(_mention_payload()).encode()
    good = signature.sign(WEBHOOK_SECRET.encode(), body)
    headers = {
        "missing": {},
        "wrong": {"X-Hub-Signature-256": "sha256=" + "0" * 64},
        "other-secret": {"X-Hub-Signature-256": signature.sign(b"other", body)},
        "altered-body": {"X-Hub-Signature-256": good},
        "sha1-prefix": {"X-Hub-Signature-256": good.replace("sha256=", "sha1=")},
        "empty": {"X-Hub-Signature-256": ""},
        "not-ascii": {"X-Hub-Signature-256": b"sha256=" + b"\xe9" * 64},
    }[case]
    sent = body[:-2] + b" }" if case == "altered-body" else body
    assert sent != body or case != "altered-body"
    response = deliver.client.post(
        deliver.url,
        content=sent,
        headers={"X-GitHub-Event": "issue_comment", "X-GitHub-Delivery": "d-1", **headers},
    )
    assert response.status_code == 401
    assert await _queued_ids(redis) == []


def test_one_altered_byte_fails_verification() -> None:
    body = b'{"action":"created"}'
    header = signature.sign(b"s", body)
    assert signature.verify(b"s", body, header)
    assert not signature.verify(b"s", b'{"action":"createe"}', header)
    assert not signature.verify(b"s", body, header.upper().replace("SHA256=", "sha256=x"))


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"X-GitHub-Event": ""}, b"{}", 400),
        ({"X-GitHub-Delivery": ""}, b"{}", 400),
        ({"X-GitHub-Delivery": "../../etc/passwd"}, b"{}", 400),
        ({"X-GitHub-Event": "Issue Comment!"}, b"{}", 400),
        ({}, b"{not json", 400),
        ({}, b"[1, 2, 3]", 400),
        ({}, b"\xff\xfe", 400),
    ],
)
async def test_malformed_deliveries_are_400(
    headers: dict[str, str], body: bytes, status: int, deliver: Deliverer, redis: Redis
) -> None:
    response = deliver.post("issue_comment", body, headers=headers)
    assert response.status_code == status, response.text
    assert "error" in response.json()
    assert await _queued_ids(redis) == []


async def test_unknown_events_are_ignored_with_a_reason(deliver: Deliverer) -> None:
    response = deliver.post("star", {"action": "created"})
    assert response.status_code == 200
    assert response.json() == {"status": "ignored", "reason": "star.created is not handled"}


async def test_oversized_body_is_413_without_reading_it(deliver: Deliverer, redis: Redis) -> None:
    # Declared too large: refused from the header alone.
    big = b"x" * (25 * MiB + 1)
    response = deliver.post("issue_comment", big)
    assert response.status_code == 413
    assert await _queued_ids(redis) == []


async def test_oversized_chunked_body_is_413(deliver: Deliverer) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(26):
            yield b"x" * MiB

    response = deliver.client.post(
        deliver.url,
        content=chunks(),
        headers={"X-GitHub-Event": "ping", "X-GitHub-Delivery": "d-2"},
    )
    assert response.status_code == 413


def test_health_endpoints(web: ServerThread) -> None:
    assert httpx.get(web.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(web.url + "/readyz")
    assert ready.status_code == 200


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"])
def test_no_schema_or_docs_pages_are_served(
    path: str, rsa_keys: tuple[str, str], tmp_path: Path
) -> None:
    settings = make_settings(
        "http://127.0.0.1:9", rsa_keys[0], tmp_path, bot_api_token="api-token-7a1b"
    )
    with ServerThread(create_app(settings), health_path="/healthz", lifespan="on") as server:
        for headers in ({}, {"Authorization": "Bearer api-token-7a1b"}):
            response = httpx.get(server.url + path, headers=headers)
            assert response.status_code == 404, (path, response.text[:200])
            assert "openapi" not in response.text.lower()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_redis(port: int, directory: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed; .ci/run installs it")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return process


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis server of this test's own, so the test can stop it."""
    port = _free_port()
    process = _start_redis(port, tmp_path)
    yield f"redis://127.0.0.1:{port}/0", process
    process.kill()
    process.wait()


def test_redis_down_is_503_never_a_2xx(
    private_redis: tuple[str, subprocess.Popen[bytes]], rsa_keys: tuple[str, str], tmp_path: Path
) -> None:
    url, process = private_redis
    settings = make_settings("http://127.0.0.1:9", rsa_keys[0], tmp_path, redis_url=url)
    with (
        ServerThread(create_app(settings), health_path="/healthz", lifespan="on") as server,
        Deliverer(server.url) as deliverer,
    ):
        assert deliverer.post("issue_comment", _mention_payload()).status_code == 202
        assert httpx.get(server.url + "/readyz").status_code == 200

        process.kill()
        process.wait()
        response = deliverer.post("issue_comment", _mention_payload())
        assert response.status_code == 503
        assert "redeliver" in response.json()["error"]
        assert httpx.get(server.url + "/readyz").status_code == 503
        # Ignored deliveries need no queue and still get their deliberate answer.
        assert deliverer.post("ping", load_payload("ping/default.json")).status_code == 200

        # Redis back, empty (no script loaded): the intake's held connections reconnect and
        # load the script again, so the next delivery is queued.
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        revived = _start_redis(port, tmp_path)
        try:
            assert deliverer.post("issue_comment", _mention_payload()).status_code == 202
            assert deliverer.post("issue_comment", _mention_payload()).status_code == 202
        finally:
            revived.kill()
            revived.wait()
