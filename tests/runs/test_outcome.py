"""A job's typed outcome decides the run's record: its status, its error and what the callback
and the runs page read. A failing outcome can never be counted as COMPLETED."""

from __future__ import annotations

import pytest

from bot.errors import (
    AgentServerError,
    BotError,
    BranchMoved,
    CallbackRejected,
    CallbackUnavailable,
    InvalidConfig,
    PermanentError,
    PublishError,
    QueueUnavailable,
    TransientError,
    backoff,
)
from bot.runs.outcome import FAILING, Done, RunOutcome
from bot.runs.store import RunError, RunStatus


@pytest.mark.parametrize("done", list(Done))
def test_only_failed_and_denied_end_a_run_failed(done: Done) -> None:
    outcome = RunOutcome("run-1", done)
    expected = RunStatus.FAILED if done in {Done.FAILED, Done.DENIED} else RunStatus.COMPLETED
    assert outcome.run_status is expected
    assert (done in FAILING) == (expected is RunStatus.FAILED)


def test_a_failure_carries_its_code_and_detail_to_the_record() -> None:
    outcome = RunOutcome.failed("run-1", "publish", "GitHub answered 422", cost=0.5)
    assert outcome.run_status is RunStatus.FAILED
    assert outcome.error == RunError(code="publish", detail="GitHub answered 422")
    assert outcome.summary == "failed"
    assert outcome.as_result() == {
        "run_id": "run-1",
        "status": "failed",
        "error": {"code": "publish", "detail": "GitHub answered 422"},
        "cost": 0.5,
    }


def test_a_denied_request_is_a_failure_saying_why() -> None:
    denied = RunOutcome.denied("run-1")
    assert denied.run_status is RunStatus.FAILED
    assert denied.error is not None
    assert denied.error.code == "not_allowed"


def test_a_skip_keeps_its_reason_in_the_summary_and_its_facts_in_the_result() -> None:
    skipped = RunOutcome("run-1", Done.SKIPPED, facts={"head_sha": "abc"}).but(reason="draft")
    assert skipped.summary == "skipped: draft"
    assert skipped.run_status is RunStatus.COMPLETED
    assert skipped.as_result() == {
        "run_id": "run-1",
        "status": "skipped",
        "reason": "draft",
        "head_sha": "abc",
    }


def test_a_status_outside_the_vocabulary_is_refused() -> None:
    with pytest.raises(ValueError, match="not a valid Done"):
        Done("publishd")


@pytest.mark.parametrize(
    ("error", "kind", "code"),
    [
        (QueueUnavailable("redis is down"), TransientError, "queue"),
        (CallbackUnavailable("503"), TransientError, "callback"),
        (CallbackRejected("404"), PermanentError, "callback"),
        (PublishError("refused"), PermanentError, "publish"),
        (BranchMoved("moved"), PublishError, "publish"),
        (AgentServerError("down", status=503), PermanentError, "workspace"),
        (InvalidConfig(["a: bad", "b: worse"]), PermanentError, "config"),
    ],
)
def test_every_error_sits_in_the_tree_with_its_failure_code(
    error: BotError, kind: type[BotError], code: str
) -> None:
    assert isinstance(error, kind)
    assert error.code == code
    assert error.user_message


def test_an_instance_may_name_a_more_specific_code_without_changing_its_class() -> None:
    specific = TransientError("GitHub answered 502", code="github_unavailable")
    assert specific.code == "github_unavailable"
    assert TransientError.code == "transient"


@pytest.mark.parametrize(
    ("tries", "base", "retry_after", "expected"),
    [(1, 2.0, 0.0, 2.0), (2, 2.0, 0.0, 4.0), (3, 1.0, 0.0, 4.0), (1, 2.0, 60.0, 60.0)],
)
def test_back_off_doubles_and_never_comes_sooner_than_asked(
    tries: int, base: float, retry_after: float, expected: float
) -> None:
    assert backoff(tries, base=base, retry_after=retry_after) == expected
