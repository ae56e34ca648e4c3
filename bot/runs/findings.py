"""What a pull request's reviews found, kept per PR: stable fingerprints, so a finding is raised
once, a dismissed one never again, and the last reviewed head, so a push reviews only its commits.

A fingerprint is the path, the code the finding points at (whitespace folded, so re-indenting
keeps it) and its rule: it survives line numbers moving and changes when the code does.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable
from dataclasses import asdict, dataclass
from typing import Literal, cast

from redis.asyncio import Redis

from bot import keys

Status = Literal["open", "resolved", "dismissed", "fixed"]
KEEP_SECONDS = 90 * 24 * 3600  # a PR's findings outlive a long review cycle
MARKER = "<!-- openhands-finding:{fingerprint} -->"
_MARKER = re.compile(r"<!-- openhands-finding:([0-9a-f]{16}) -->")


def fingerprint(path: str, code: str, rule: str) -> str:
    """Stable id of a finding: the file, the code it points at, the rule it breaks."""
    folded = "\n".join(" ".join(line.split()) for line in code.strip().splitlines())
    text = "\0".join((path, folded, " ".join(rule.lower().split())))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def marker(print_: str) -> str:
    return MARKER.format(fingerprint=print_)


def marker_in(body: str) -> str | None:
    """The fingerprint a comment's body carries, if any (trust it only on the bot's comments)."""
    found = _MARKER.search(body)
    return found.group(1) if found else None


@dataclass(frozen=True, slots=True)
class Finding:
    fingerprint: str
    path: str
    line: int
    code: str  # the lines it pointed at, when raised
    rule: str
    severity: str
    body: str
    head: str  # the commit it was raised on
    status: Status = "open"

    def but(self, status: Status) -> Finding:
        return Finding(**(asdict(self) | {"status": status}))


@dataclass(frozen=True, slots=True)
class ReviewState:
    """Where the PR's reviews stand: the last head reviewed, and the review holding the summary."""

    last_head: str | None = None
    summary_review_id: int | None = None
    summary_key: str | None = None  # its `once` key, which an edit keeps in its body
    reviews: int = 0


class PullFindings:
    """The findings and review state of one pull request, in Redis."""

    def __init__(self, redis: Redis, repo: str, number: int) -> None:
        self.redis = redis
        thread = keys.thread(repo, number)
        self.findings_key = keys.FINDINGS_PREFIX + thread
        self.state_key = keys.REVIEW_STATE_PREFIX + thread

    async def all(self) -> dict[str, Finding]:
        raw = await cast(Awaitable[dict[bytes, bytes]], self.redis.hgetall(self.findings_key))
        found: dict[str, Finding] = {}
        for key, value in raw.items():
            try:
                found[key.decode()] = Finding(**json.loads(value))
            except (ValueError, TypeError):
                continue  # written by another version: forgotten rather than trusted
        return found

    async def save(self, *findings: Finding) -> None:
        if not findings:
            return
        mapping = {f.fingerprint: json.dumps(asdict(f)) for f in findings}
        await cast(Awaitable[int], self.redis.hset(self.findings_key, mapping=mapping))
        await self.redis.expire(self.findings_key, KEEP_SECONDS)

    async def state(self) -> ReviewState:
        raw = await cast(Awaitable[dict[bytes, bytes]], self.redis.hgetall(self.state_key))
        head = raw.get(b"last_head", b"").decode() or None
        summary = raw.get(b"summary_review_id", b"").decode()
        reviews = raw.get(b"reviews", b"0").decode()
        return ReviewState(
            last_head=head,
            summary_review_id=int(summary) if summary.isdigit() else None,
            summary_key=raw.get(b"summary_key", b"").decode() or None,
            reviews=int(reviews) if reviews.isdigit() else 0,
        )

    async def reviewed(self, head: str, summary_review_id: int | None, key: str | None) -> None:
        """`head` is reviewed; the summary lives in review `summary_review_id` (posted with the
        `once` key `key`), when that is new."""
        mapping: dict[str, str | int] = {"last_head": head}
        if summary_review_id is not None and key is not None:
            mapping |= {"summary_review_id": summary_review_id, "summary_key": key}
        await cast(Awaitable[int], self.redis.hset(self.state_key, mapping=mapping))
        await cast(Awaitable[int], self.redis.hincrby(self.state_key, "reviews", 1))
        await self.redis.expire(self.state_key, KEEP_SECONDS)
