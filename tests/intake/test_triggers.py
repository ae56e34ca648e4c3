"""Routing is a pure function: every real delivery maps to the right task or a deliberate ignore."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import orjson
import pytest

from bot.intake.triggers import Delivery, Ignored, NotAnObject, RouteConfig, route, route_body
from bot.queue.tasks import (
    CancelTask,
    ConfigTask,
    InstallationTask,
    MentionTask,
    ReviewTask,
    review_check_external_id,
)
from tests.conftest import PAYLOADS, all_payloads, load_payload

CONFIG = RouteConfig(
    handle="openhands",
    trigger_label="openhands",
    app_slug="openhands-test",
    allowed_bots=frozenset({"renovate[bot]"}),
)

# Expected outcome of every stored delivery, as it is: a task kind, or a fragment of the reason.
EXPECTED: dict[str, str] = {
    "installation/created.json": "installation",
    "installation/created.with-requester.json": "installation",
    "installation/deleted.json": "installation",
    "installation_repositories/added.json": "installation",
    "installation_repositories/removed.json": "installation",
    "check_run/rerequested.json": "not a review check run of this app",
    "check_run/rerequested.with-organization.json": "not a review check run of this app",
    "issue_comment/created.1.json": "no @openhands mention",
    "issue_comment/created.json": "no @openhands mention",
    "issue_comment/created.with-installation.json": "no @openhands mention",
    "issue_comment/created.with-organization.json": "no @openhands mention",
    "issue_comment/deleted.json": "deleted comments",
    "issue_comment/deleted.with-organization.json": "deleted comments",
    "issue_comment/edited.json": "edited comments",
    "issue_comment/edited.with-organization.json": "edited comments",
    "issues/labeled.json": "label is not",
    "issues/labeled.with-organization.json": "label is not",
    "ping/default.json": "ping",
    "ping/with-app_id.json": "ping",
    "ping/with-organization.json": "ping",
    "pull_request/opened.json": "review",
    "pull_request/opened.with-null-body.json": "review",
    "pull_request/opened.with-organization.json": "review",
    "pull_request/ready_for_review.json": "review",
    "pull_request/ready_for_review.with-installation.json": "review",
    "pull_request/ready_for_review.with-organization.json": "review",
    "pull_request/reopened.json": "review",
    "pull_request/reopened.with-organization.json": "review",
    "pull_request/synchronize.json": "review",
    "push/1.json": "outside the default branch",
    "push/default.json": "outside the default branch",
    "push/with-installation.json": "outside the default branch",
    "push/with-new-branch.json": "does not touch .openhands/config.yml",
    "push/with-no-username-committer.json": "does not touch .openhands/config.yml",
    "push/with-organization.json": "outside the default branch",
    "pull_request_review_comment/created.json": "no @openhands mention",
    "pull_request_review_comment/created.with-organization.json": "no @openhands mention",
}
TASK_KINDS = {"installation", "review", "mention", "cancel", "config"}


def _id(path: Path) -> str:
    return str(path.relative_to(PAYLOADS))


def _route(event: str, payload: dict[str, Any], config: RouteConfig = CONFIG) -> Any:
    return route(Delivery(event, "delivery-1", payload), config)


def test_the_corpus_is_all_here() -> None:
    assert len(all_payloads()) == 71


@pytest.mark.parametrize("path", all_payloads(), ids=_id)
def test_every_real_delivery_routes_deliberately(path: Path) -> None:
    payload = load_payload(_id(path))
    outcome = _route(path.parent.name, payload)
    expected = EXPECTED.get(_id(path), "is not handled")
    if expected in TASK_KINDS:
        assert not isinstance(outcome, Ignored), outcome
        assert outcome.kind == expected
        assert outcome.run_id == "delivery-1"
    else:
        assert isinstance(outcome, Ignored)
        assert expected in outcome.reason


def _with_comment(relative: str, body: str, **user: Any) -> dict[str, Any]:
    payload = copy.deepcopy(load_payload(relative))
    payload["comment"]["body"] = body
    payload["comment"]["user"].update(user)
    return payload


def test_issue_comment_mention_becomes_a_mention_task() -> None:
    payload = _with_comment("issue_comment/created.with-installation.json", "@openhands fix it")
    task = _route("issue_comment", payload)
    assert isinstance(task, MentionTask)
    assert task.trigger == "issue_comment"
    assert task.instruction == "fix it"
    assert task.number == payload["issue"]["number"]
    assert task.comment_id == payload["comment"]["id"]
    assert task.installation_id == payload["installation"]["id"]
    assert task.repo.full_name == payload["repository"]["full_name"]
    assert task.sender == payload["sender"]["login"]
    assert task.is_pull_request is ("pull_request" in payload["issue"])


def test_mention_on_a_pull_request_conversation() -> None:
    payload = _with_comment("issue_comment/created.json", "@openhands rebase please")
    payload["issue"]["pull_request"] = {"url": "https://api.github.com/repos/o/r/pulls/1"}
    task = _route("issue_comment", payload)
    assert isinstance(task, MentionTask)
    assert task.is_pull_request


def test_review_comment_mention_carries_the_code_context() -> None:
    payload = _with_comment("pull_request_review_comment/created.json", "@openhands rename this")
    task = _route("pull_request_review_comment", payload)
    assert isinstance(task, MentionTask)
    assert task.trigger == "review_comment"
    assert task.is_pull_request
    assert task.number == payload["pull_request"]["number"]
    assert task.path == payload["comment"]["path"]
    assert task.diff_hunk == payload["comment"]["diff_hunk"]
    assert task.in_reply_to is None


def test_a_reply_in_a_review_thread_names_the_thread() -> None:
    payload = _with_comment("pull_request_review_comment/created.json", "@openhands fix")
    payload["comment"]["in_reply_to_id"] = 4242
    task = _route("pull_request_review_comment", payload)
    assert isinstance(task, MentionTask)
    assert (task.trigger, task.instruction, task.in_reply_to) == ("review_comment", "fix", 4242)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("> @openhands fix it\n\nyes please", "no @openhands mention"),
        ("```\n@openhands fix it\n```", "no @openhands mention"),
        ("ping @openhands-bot", "no @openhands mention"),
    ],
)
def test_quoted_or_coded_mentions_are_ignored(body: str, reason: str) -> None:
    outcome = _route("issue_comment", _with_comment("issue_comment/created.json", body))
    assert outcome == Ignored(reason)


def test_bot_comments_are_ignored_unless_allow_listed() -> None:
    bot = _with_comment(
        "issue_comment/created.json", "@openhands go", login="dependabot[bot]", type="Bot"
    )
    outcome = _route("issue_comment", bot)
    assert isinstance(outcome, Ignored)
    assert "bot" in outcome.reason
    allowed = _with_comment(
        "issue_comment/created.json", "@openhands go", login="renovate[bot]", type="Bot"
    )
    assert isinstance(_route("issue_comment", allowed), MentionTask)


def test_the_apps_own_comments_never_trigger() -> None:
    own = _with_comment(
        "issue_comment/created.json", "@openhands loop", login="openhands-test[bot]", type="Bot"
    )
    # Even allow-listing the app's own login must not let it talk to itself.
    config = dataclasses.replace(CONFIG, allowed_bots=frozenset({"openhands-test[bot]"}))
    outcome = _route("issue_comment", own, config)
    assert isinstance(outcome, Ignored)
    assert "this app" in outcome.reason


@pytest.mark.parametrize("word", ["stop", "Stop.", "cancel"])
def test_stop_becomes_a_cancel_task(word: str) -> None:
    payload = _with_comment("issue_comment/created.json", f"@openhands {word}")
    task = _route("issue_comment", payload)
    assert isinstance(task, CancelTask)
    assert task.number == payload["issue"]["number"]


def test_review_command_on_a_pr_requests_a_rereview() -> None:
    payload = _with_comment("issue_comment/created.json", "@openhands review")
    payload["issue"]["pull_request"] = {"url": "x"}
    task = _route("issue_comment", payload)
    assert isinstance(task, ReviewTask)
    assert task.rereview
    assert task.head_sha is None


def test_trigger_label_starts_a_run() -> None:
    payload = copy.deepcopy(load_payload("issues/labeled.json"))
    payload["label"]["name"] = "OpenHands"
    task = _route("issues", payload)
    assert isinstance(task, MentionTask)
    assert task.trigger == "label"
    assert task.comment_id is None
    assert task.number == payload["issue"]["number"]


def test_draft_pull_requests_are_not_reviewed() -> None:
    payload = copy.deepcopy(load_payload("pull_request/opened.json"))
    payload["pull_request"]["draft"] = True
    assert _route("pull_request", payload) == Ignored("draft pull request")


def test_synchronize_becomes_a_review_task_the_worker_may_skip() -> None:
    # REVIEW_ON_PUSH and the repo's own config decide in the worker; routing reads no settings.
    payload = load_payload("pull_request/synchronize.json")
    task = _route("pull_request", payload)
    assert isinstance(task, ReviewTask)
    assert task.action == "synchronize"
    assert task.head_sha == payload["pull_request"]["head"]["sha"]


def _rerequested(external_id: str | None) -> dict[str, Any]:
    payload = copy.deepcopy(load_payload("check_run/rerequested.with-organization.json"))
    payload["check_run"]["external_id"] = external_id
    return payload


def test_rerunning_the_review_check_re_reviews_its_pull_request() -> None:
    payload = _rerequested(review_check_external_id(42))
    task = _route("check_run", payload)
    assert isinstance(task, ReviewTask)
    assert (task.number, task.action, task.rereview) == (42, "rerequested", True)
    assert task.head_sha == payload["check_run"]["head_sha"]
    assert task.trigger == "check_run"


@pytest.mark.parametrize(
    "external_id",
    [
        None,
        "",
        "42",
        "openhands-review:pr-",
        "openhands-review:pr-0",
        "openhands-review:pr-4x2",
        "openhands-review:pr-" + "9" * 30,
        "openhands-review:pr-\u0664\u0662",
    ],
)
def test_a_rerequested_check_run_that_is_not_ours_is_ignored(external_id: str | None) -> None:
    outcome = _route("check_run", _rerequested(external_id))
    assert outcome == Ignored("not a review check run of this app")


def test_other_check_run_actions_are_not_handled() -> None:
    outcome = _route("check_run", load_payload("check_run/completed.json"))
    assert isinstance(outcome, Ignored)
    assert "is not handled" in outcome.reason


def _push(files: list[str], *, ref: str | None = None, count: int = 1) -> dict[str, Any]:
    payload = copy.deepcopy(load_payload("push/with-new-branch.json"))
    branch = payload["repository"]["default_branch"]
    payload["ref"] = ref or f"refs/heads/{branch}"
    payload["deleted"] = False
    payload["commits"] = [{"added": [], "modified": files, "removed": []}] * count
    return payload


def test_a_push_touching_the_config_on_the_default_branch_refreshes_it() -> None:
    payload = _push(["src/a.py", ".openhands/config.yml"])
    task = _route("push", payload)
    assert isinstance(task, ConfigTask)
    assert task.commit == payload["after"]
    assert task.repo.full_name == payload["repository"]["full_name"]


def test_pushes_that_cannot_change_the_config_are_ignored() -> None:
    assert _route("push", _push(["src/a.py"])) == Ignored(
        "push does not touch .openhands/config.yml"
    )
    other = _route("push", _push([".openhands/config.yml"], ref="refs/heads/feature"))
    assert other == Ignored("push outside the default branch")


def test_a_push_listing_the_maximum_of_commits_refreshes_anyway() -> None:
    # GitHub lists at most 20 commits per push: the file may be in one it left out.
    assert isinstance(_route("push", _push(["src/a.py"], count=20)), ConfigTask)


def test_installation_records_repositories() -> None:
    added = _route(
        "installation_repositories", load_payload("installation_repositories/added.json")
    )
    assert isinstance(added, InstallationTask)
    assert added.repos_added
    removed = _route(
        "installation_repositories", load_payload("installation_repositories/removed.json")
    )
    assert isinstance(removed, InstallationTask)
    assert removed.repos_removed


def test_missing_fields_are_ignored_not_raised() -> None:
    outcome = _route("issue_comment", {"action": "created", "comment": {"body": "@openhands x"}})
    assert isinstance(outcome, Ignored)
    assert "lacks fields" in outcome.reason


@pytest.mark.parametrize("path", all_payloads(), ids=_id)
def test_routing_from_the_raw_body_matches_routing_the_parsed_json(path: Path) -> None:
    # The intake validates an event's model straight from the bytes; it must decide exactly as
    # routing the whole parsed document does, for every real delivery.
    raw = path.read_bytes()
    fast = route_body(path.parent.name, "delivery-1", raw, CONFIG)
    assert fast == _route(path.parent.name, orjson.loads(raw))


def test_a_body_missing_fields_gets_the_same_answer_from_both_paths() -> None:
    # Validation from bytes fails, so the general path decides: an edit is still "edited".
    body = orjson.dumps({"action": "edited", "comment": {"body": "@openhands x"}})
    assert route_body("issue_comment", "d", body, CONFIG) == Ignored(
        "edited comments do not trigger runs"
    )
    partial = orjson.dumps({"action": "created", "comment": {"body": "@openhands x"}})
    outcome = route_body("issue_comment", "d", partial, CONFIG)
    assert isinstance(outcome, Ignored)
    assert "lacks fields" in outcome.reason


def test_bodies_that_are_not_json_objects_are_refused() -> None:
    with pytest.raises(orjson.JSONDecodeError):
        route_body("issue_comment", "d", b'{"action": "created",', CONFIG)
    with pytest.raises(NotAnObject):
        route_body("issue_comment", "d", b"[1, 2]", CONFIG)
    with pytest.raises(orjson.JSONDecodeError):
        route_body("ping", "d", b"not json", CONFIG)
