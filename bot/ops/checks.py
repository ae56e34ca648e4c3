"""One row of `doctor`'s report, shared by the modules that make rows (kept apart so each check
module stays small and none imports another)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "warn", "FAIL", "skip"]


@dataclass(frozen=True, slots=True)
class Check:
    """One row of the report: what was checked, how it went, and what to do about a failure."""

    name: str
    status: Status
    detail: str
    fix: str = ""


def _redact(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text[:300]
