"""The review's check run kept honest on every path: what the review did becomes its conclusion
and title (`success` only for a posted review with no blocking finding), and an exception, a stop
or a timeout completes it too, as the tracking comment is finalised."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from arq import Retry
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.config import Settings
from bot.github.checks import Conclusion, ReviewCheck
from bot.github.messages import FAILURES
from bot.jobs.context import Attempt
from bot.runs import stop
from bot.runs.outcome import Done, RunOutcome

log = logging.getLogger(__name__)

BLOCKING = ("critical",)  # severities that keep the check from passing
SEVERITY_ORDER = ("critical", "important", "suggestion")
NO_FINDINGS = "no findings"
FINDINGS = "{count} finding{s}: {parts}"
SKIPPED = "skipped: {why}"
FAILED = "failed: {why}"
STOPPED = "stopped by {by}"
# Skip reasons (RunOutcome.reason) as the check's title says them.
SKIP_REASONS = {
    "too large": "over the size budget",
    "draft": "the pull request is a draft",
    "bot author": "the author is a bot that is not allow-listed",
}
# Failure codes as the check's title says them; the others use FAILURES' first sentence.
FAILURE_REASONS = {
    "llm_unavailable": "the LLM did not answer",
    "llm_timeout": "the LLM did not answer",
    "llm_auth": "the LLM provider refused the bot's key",
    "llm_rate_limit": "the LLM provider is rate-limiting the bot",
    "invalid_review": "the agent's review was not usable",
    "timeout": "the review took longer than its time limit",
    "interrupted": "the worker stopped during the review",
}
INTERRUPTED_SUMMARY = "The review did not finish; ask again with `@{handle} review` or re-run."


def findings_title(severities: Mapping[str, int]) -> str:
    """E.g. "2 findings: 1 critical, 1 suggestion", or "no findings"."""
    total = sum(severities.get(name, 0) for name in SEVERITY_ORDER)
    if total == 0:
        return NO_FINDINGS
    parts = ", ".join(
        f"{severities[name]} {name}" for name in SEVERITY_ORDER if severities.get(name, 0)
    )
    return FINDINGS.format(count=total, s="" if total == 1 else "s", parts=parts)


def verdict(outcome: RunOutcome, handle: str) -> tuple[Conclusion, str, str]:
    """(conclusion, title, summary) of the check for what the review job did."""
    summary = str(outcome.facts.get("coverage", ""))
    if outcome.status is Done.REVIEWED:
        severities: Mapping[str, int] = outcome.facts.get("severities", {})
        title = findings_title(severities)
        blocking = any(severities.get(name, 0) for name in BLOCKING)
        return ("failure" if blocking else "success"), title, summary or title
    if outcome.status is Done.SKIPPED:
        why = SKIP_REASONS.get(outcome.reason, outcome.reason or "nothing to review")
        title = SKIPPED.format(why=why)
        return "skipped", title, summary or title
    if outcome.status is Done.FAILED:
        code = outcome.error.code if outcome.error else "internal"
        why = FAILURE_REASONS.get(code) or FAILURES.get(code, FAILURES["internal"])[0]
        why = re.sub(r"^(The|A|An) ", lambda m: m.group(1).lower() + " ", why)
        title = FAILED.format(why=why.rstrip("."))
        detail = outcome.error.detail if outcome.error else ""
        text = "\n\n".join(part for part in (detail[:2000], summary) if part)
        return ("timed_out" if code == "timeout" else "failure"), title, text or title
    return "neutral", outcome.summary, outcome.summary  # e.g. a denial: not a review


async def settled(
    settings: Settings,
    redis: Redis,
    now: Attempt,
    check: ReviewCheck,
    body: Callable[[], Awaitable[RunOutcome]],
) -> RunOutcome:
    """Run the review `body`, then complete its check from the outcome. An exception completes
    it as failed; a stop as cancelled; a worker shutdown leaves it to the job's next try (which
    finds the same check) unless this was the last one."""
    handle = settings.bot_handle
    started = time.monotonic()
    try:
        outcome = await body()
    except asyncio.CancelledError:
        await asyncio.shield(_interrupted(settings, redis, now, check, started))
        raise
    except (RedisError, Retry):  # the job runs again, and completes the same check
        raise
    except Exception:
        failed = RunOutcome.failed(check.run_id, "internal")
        await _complete(check, *verdict(failed, handle))
        raise
    await _complete(check, *verdict(outcome, handle))
    return outcome


async def _complete(check: ReviewCheck, conclusion: Conclusion, title: str, summary: str) -> None:
    try:
        await check.complete(conclusion, title, summary)
    except Exception:  # the review itself is out; its check is reported, not retried
        log.exception("run %s: could not complete its check run", check.run_id)


async def _interrupted(
    settings: Settings, redis: Redis, now: Attempt, check: ReviewCheck, started: float
) -> None:
    by: str | None = None
    with contextlib.suppress(Exception):
        by = await stop.requested_by(redis, check.run_id)
    elapsed = time.monotonic() - started
    timed_out = elapsed >= settings.job_timeout_seconds - 1
    summary = INTERRUPTED_SUMMARY.format(handle=settings.bot_handle)
    if by is not None:
        await _complete(check, "cancelled", STOPPED.format(by=_who(by)), summary)
    elif timed_out:
        await _complete(check, "timed_out", FAILED.format(why=FAILURE_REASONS["timeout"]), summary)
    elif not now.may_rerun:
        await _complete(
            check, "failure", FAILED.format(why=FAILURE_REASONS["interrupted"]), summary
        )
    # else: arq runs the job again, and that try completes this same check


def _who(by: str) -> str:
    return f"@{by}" if by.replace("-", "").replace("[bot]", "").isalnum() else by


def facts(severities: Mapping[str, int], coverage: str) -> dict[str, Any]:
    """What a posted review tells its check: counts by severity, and the coverage line."""
    return {"severities": dict(severities), "coverage": coverage}
