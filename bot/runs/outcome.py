"""What a job did, typed: every job returns one `RunOutcome`, and the run record, the metrics and
the callback are written from it (a misspelled status is a type error, not a COMPLETED run)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bot.runs.store import RunError, RunStatus


class Done(StrEnum):
    """The word for what happened; FAILED and DENIED are failing, the rest COMPLETED. DENIED is
    no run at all, though: the gate logs and counts it, and makes no record or callback of it."""

    PUBLISHED = "published"  # a PR opened, a push, a patch
    ANSWERED = "answered"  # a reply, no change
    REVIEWED = "reviewed"
    REPORTED = "reported"  # an automation opened an issue
    COMMENTED = "commented"  # an automation commented
    COMPLETED = "completed"  # an automation with no output to make
    SKIPPED = "skipped"  # nothing to do; `reason` says why
    DENIED = "denied"  # the sender may not drive the bot
    FAILED = "failed"  # `error` says why
    STOPPED = "stopped"  # `@handle stop` stopped a run
    NOTHING_RUNNING = "nothing_running"  # `@handle stop` found nothing to stop
    RECORDED = "recorded"  # bookkeeping jobs: installations, configs, callbacks, cron
    REMOVED = "removed"
    GONE = "gone"  # the run expired before its job ran


FAILING = frozenset({Done.FAILED, Done.DENIED})


@dataclass(frozen=True, slots=True)
class RunOutcome:
    run_id: str
    status: Done
    reason: str = ""
    error: RunError | None = None
    cost: float = 0.0
    conversation_id: str | None = None
    links: Mapping[str, str] = field(default_factory=dict)
    facts: Mapping[str, Any] = field(default_factory=dict)  # counts and ids, for logs and tests

    @classmethod
    def failed(cls, run_id: str, code: str, detail: str = "", **values: Any) -> RunOutcome:
        return cls(run_id, Done.FAILED, error=RunError(code=code, detail=detail), **values)

    @classmethod
    def denied(cls, run_id: str) -> RunOutcome:
        return cls(
            run_id, Done.DENIED, error=RunError(code="not_allowed", detail="no write access")
        )

    def but(self, **changes: Any) -> RunOutcome:
        """The same outcome with some fields changed (e.g. the agent's cost added)."""
        return dataclasses.replace(self, **changes)

    @property
    def run_status(self) -> RunStatus:
        if self.status in FAILING:
            return RunStatus.FAILED
        return RunStatus.COMPLETED

    @property
    def summary(self) -> str:
        """The record's `outcome`: `skipped: draft`, `published`, `failed`."""
        return f"{self.status.value}: {self.reason}" if self.reason else self.status.value

    def as_result(self) -> dict[str, Any]:
        """Plain JSON for arq's result store."""
        data: dict[str, Any] = {"run_id": self.run_id, "status": self.status.value}
        if self.reason:
            data["reason"] = self.reason
        if self.error is not None:
            data["error"] = self.error.model_dump()
        if self.cost:
            data["cost"] = self.cost
        if self.conversation_id:
            data["conversation_id"] = self.conversation_id
        if self.links:
            data["links"] = dict(self.links)
        return {**data, **self.facts}
