"""What the review's check run says for each outcome: never green for a skip or a failure."""

from __future__ import annotations

import pytest

from bot.jobs.review_check import facts, findings_title, verdict
from bot.runs.outcome import Done, RunOutcome


@pytest.mark.parametrize(
    ("severities", "title"),
    [
        ({}, "no findings"),
        ({"critical": 0, "important": 0, "suggestion": 0}, "no findings"),
        ({"critical": 1, "important": 0, "suggestion": 1}, "2 findings: 1 critical, 1 suggestion"),
        ({"important": 1}, "1 finding: 1 important"),
    ],
)
def test_findings_title(severities: dict[str, int], title: str) -> None:
    assert findings_title(severities) == title


def _reviewed(**severities: int) -> RunOutcome:
    return RunOutcome(
        "r", Done.REVIEWED, facts=facts(severities, "**Coverage:** 2 of 2 files reviewed.")
    )


def test_success_only_for_a_review_without_blocking_findings() -> None:
    assert verdict(_reviewed(), "oh")[:2] == ("success", "no findings")
    assert verdict(_reviewed(important=2, suggestion=1), "oh")[:2] == (
        "success",
        "3 findings: 2 important, 1 suggestion",
    )
    conclusion, title, summary = verdict(_reviewed(critical=1, important=1), "oh")
    assert (conclusion, title) == ("failure", "2 findings: 1 critical, 1 important")
    assert summary == "**Coverage:** 2 of 2 files reviewed."


@pytest.mark.parametrize(
    ("outcome", "conclusion", "title"),
    [
        (
            RunOutcome("r", Done.SKIPPED, reason="too large"),
            "skipped",
            "skipped: over the size budget",
        ),
        (
            RunOutcome("r", Done.SKIPPED, reason="no reviewable files"),
            "skipped",
            "skipped: no reviewable files",
        ),
        (
            RunOutcome.failed("r", "llm_unavailable", "500"),
            "failure",
            "failed: the LLM did not answer",
        ),
        (
            RunOutcome.failed("r", "timeout"),
            "timed_out",
            "failed: the review took longer than its time limit",
        ),
        (
            RunOutcome.failed("r", "github"),
            "failure",
            "failed: GitHub refused a request the bot needed",
        ),
        (
            RunOutcome.failed("r", "no-such-code"),
            "failure",
            "failed: the bot hit an unexpected error",
        ),
    ],
)
def test_skips_and_failures_are_never_green(
    outcome: RunOutcome, conclusion: str, title: str
) -> None:
    assert verdict(outcome, "oh")[:2] == (conclusion, title)
