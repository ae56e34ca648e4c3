"""Signed deliveries with values no job could use get a deliberate answer at the intake, not a 500
or a crashed job: numbers past 64 bits, times that are not ISO 8601, logins no one can have."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from arq.constants import default_queue_name
from redis.asyncio import Redis

from tests.conftest import Deliverer, load_payload

HUGE = 2**64  # orjson cannot write it into the job


def _set(payload: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    changed = copy.deepcopy(payload)
    *parents, last = path.split(".")
    node = changed
    for key in parents:
        node = node[key]
    node[last] = value
    return changed


def _mention(body: str = "@openhands fix this") -> dict[str, Any]:
    return _set(load_payload("issue_comment/created.with-installation.json"), "comment.body", body)


def _review_mention() -> dict[str, Any]:
    payload = load_payload("pull_request_review_comment/created.json")
    return _set(payload, "comment.body", "@openhands fix this")


async def _assert_refused(deliver: Deliverer, redis: Redis, event: str, body: Any) -> str:
    response = deliver.post(event, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "ignored"
    assert await redis.zcard(default_queue_name) == 0
    reason: str = answer["reason"]
    return reason


@pytest.mark.parametrize(
    "path",
    ["issue.number", "comment.id", "installation.id", "repository.id"],
)
@pytest.mark.parametrize("value", [HUGE, -1, 10**30])
async def test_numbers_past_64_bits_are_ignored_with_a_reason(
    path: str, value: int, deliver: Deliverer, redis: Redis
) -> None:
    reason = await _assert_refused(deliver, redis, "issue_comment", _set(_mention(), path, value))
    assert path in reason
    assert "values we refuse" in reason


async def test_a_huge_pull_request_number_or_line_is_ignored(
    deliver: Deliverer, redis: Redis
) -> None:
    for path in ("pull_request.number", "comment.line", "comment.original_line"):
        body = _set(_review_mention(), path, HUGE)
        assert path in await _assert_refused(deliver, redis, "pull_request_review_comment", body)
    labeled = _set(load_payload("issues/labeled.json"), "label.name", "openhands")
    body = _set(labeled, "issue.number", HUGE)
    assert "issue.number" in await _assert_refused(deliver, redis, "issues", body)


async def test_a_number_that_fits_is_still_queued(deliver: Deliverer, redis: Redis) -> None:
    response = deliver.post("issue_comment", _set(_mention(), "issue.number", 2**53))
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    "stamp", ["yesterday", "2024-13-40T00:00:00Z", "2024-01-01T10:00:00", "", "1e400"]
)
async def test_a_comment_time_that_is_not_iso_8601_is_ignored(
    stamp: str, deliver: Deliverer, redis: Redis
) -> None:
    reason = await _assert_refused(
        deliver, redis, "issue_comment", _set(_mention(), "comment.created_at", stamp)
    )
    assert "comment.created_at" in reason


@pytest.mark.parametrize(
    "login", ["octo\x00cat", "x" * 100_000, "", "two words", "line\nbreak", "../../etc"]
)
@pytest.mark.parametrize("where", ["comment.user.login", "sender.login", "repository.owner.login"])
async def test_a_login_no_one_can_have_is_ignored(
    login: str, where: str, deliver: Deliverer, redis: Redis
) -> None:
    reason = await _assert_refused(deliver, redis, "issue_comment", _set(_mention(), where, login))
    assert where in reason


async def test_a_review_comment_path_with_control_characters_is_ignored(
    deliver: Deliverer, redis: Redis
) -> None:
    body = _set(_review_mention(), "comment.path", "src/a\x00.py")
    assert "comment.path" in await _assert_refused(
        deliver, redis, "pull_request_review_comment", body
    )


async def test_real_logins_still_pass(deliver: Deliverer, redis: Redis) -> None:
    for login in ("octocat", "other_user", "renovate[bot]", "a-b", "ent_user_shortcode"):
        body = _set(_mention(), "comment.user.login", login)
        response = deliver.post("issue_comment", body)
        assert response.status_code in (200, 202), response.text
        assert "values we refuse" not in response.text


async def test_a_mention_inside_an_html_comment_starts_nothing(
    deliver: Deliverer, redis: Redis
) -> None:
    body = _mention("Thanks!\n<!-- @openhands fix this -->")
    assert await _assert_refused(deliver, redis, "issue_comment", body) == "no @openhands mention"
