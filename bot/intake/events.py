"""Lenient views of webhook payloads: only the fields we use, so old deliveries still parse.

msgspec, not pydantic: a delivery is validated straight from its bytes on every request, and
msgspec skips the many fields we do not read at several times pydantic's speed."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct, field

from bot.queue.tasks import MAX_ID

Id = Annotated[int, Meta(ge=0, le=MAX_ID)]
# Patterns are searched, so they are anchored with \A and \Z: `$` would let a trailing newline in.
# A login as GitHub makes them (letters, digits, '-', '_' for managed users, '[bot]' for Apps):
# never a NUL, a newline or 100k characters that would reach URLs, prompts and logs.
Login = Annotated[str, Meta(pattern=r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}(\[bot\])?\Z")]
RepoName = Annotated[str, Meta(pattern=r"\A[A-Za-z0-9_.-]{1,100}\Z")]
FullName = Annotated[str, Meta(pattern=r"\A[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}\Z")]
# A git ref or path: bounded, with no control characters (git and the prompts choke on them).
RefText = Annotated[str, Meta(pattern=r"\A[^\x00-\x1f\x7f]{1,1024}\Z")]


class Unusable(ValueError):
    """A field whose value we refuse, named so the answer can say which (`field: why`)."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"{name}: {why}")


def _check_timestamp(name: str, value: str | None) -> None:
    """An ISO 8601 time with its zone, as GitHub sends: the job compares it with GitHub's own."""
    if value is None:
        return
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Unusable(name, "not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise Unusable(name, "an ISO 8601 time without its zone")


class Lenient(Struct, frozen=True, kw_only=True):
    """Unknown fields are skipped; missing optional ones take their defaults."""


class Account(Lenient, frozen=True, kw_only=True):
    login: Login
    type: str = "User"


class Repository(Lenient, frozen=True, kw_only=True):
    id: Id | None = None
    name: RepoName
    full_name: FullName | None = None
    owner: Account
    clone_url: str | None = None
    default_branch: str | None = None
    private: bool = False


class InstallationRef(Lenient, frozen=True, kw_only=True):
    id: Id


class Comment(Lenient, frozen=True, kw_only=True):
    id: Id
    body: str | None = None
    user: Account
    created_at: str | None = None
    path: RefText | None = None
    line: Id | None = None
    original_line: Id | None = None
    diff_hunk: str | None = None
    in_reply_to_id: Id | None = None  # review comments: the thread's first comment

    def __post_init__(self) -> None:
        _check_timestamp("created_at", self.created_at)


class Label(Lenient, frozen=True, kw_only=True):
    name: str


class Issue(Lenient, frozen=True, kw_only=True):
    number: Id
    title: str | None = None
    body: str | None = None
    user: Account | None = None
    pull_request: dict[str, Any] | None = None


class Ref(Lenient, frozen=True, kw_only=True):
    ref: RefText
    sha: str
    repo: Repository | None = None


class PullRequest(Lenient, frozen=True, kw_only=True):
    number: Id
    draft: bool = False
    state: str | None = None
    user: Account
    head: Ref
    base: Ref


class _Event(Lenient, frozen=True, kw_only=True):
    action: str | None = None
    sender: Account
    repository: Repository
    installation: InstallationRef | None = None


class IssueCommentEvent(_Event, frozen=True, kw_only=True):
    issue: Issue
    comment: Comment


class ReviewCommentEvent(_Event, frozen=True, kw_only=True):
    pull_request: PullRequest
    comment: Comment


class IssuesEvent(_Event, frozen=True, kw_only=True):
    issue: Issue
    label: Label | None = None


class PullRequestEvent(_Event, frozen=True, kw_only=True):
    pull_request: PullRequest


class CheckRunPull(Lenient, frozen=True, kw_only=True):
    number: Id


class CheckRun(Lenient, frozen=True, kw_only=True):
    name: str
    head_sha: str
    external_id: str | None = None
    pull_requests: list[CheckRunPull] = field(default_factory=list)


class CheckRunEvent(_Event, frozen=True, kw_only=True):
    check_run: CheckRun


class PushCommit(Lenient, frozen=True, kw_only=True):
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


class PushEvent(_Event, frozen=True, kw_only=True):
    ref: str
    after: str | None = None
    deleted: bool = False
    commits: list[PushCommit] = field(default_factory=list)
    head_commit: PushCommit | None = None


class InstallationRepo(Lenient, frozen=True, kw_only=True):
    full_name: FullName


class InstallationBody(Lenient, frozen=True, kw_only=True):
    id: Id
    account: Account | None = None


class InstallationEvent(Lenient, frozen=True, kw_only=True):
    action: str
    sender: Account
    installation: InstallationBody
    repositories: list[InstallationRepo] = field(default_factory=list)
    repositories_added: list[InstallationRepo] = field(default_factory=list)
    repositories_removed: list[InstallationRepo] = field(default_factory=list)


Invalid = msgspec.ValidationError
Malformed = msgspec.DecodeError  # not JSON, or JSON that does not fit (Invalid is one of these)


def decoder[E: Lenient](model: type[E]) -> msgspec.json.Decoder[E]:
    """Validates `model` straight from JSON bytes, with the same coercions as `view`."""
    return msgspec.json.Decoder(model, strict=False)


def view[E: Lenient](model: type[E], payload: dict[str, Any] | Lenient) -> E:
    """The payload as `model`: already one, or validated from parsed JSON; raises Invalid."""
    if isinstance(payload, model):
        return payload
    return msgspec.convert(payload, model, strict=False)


def problem(exc: msgspec.ValidationError) -> tuple[bool, str]:
    """(whether a field is missing, its dotted path) from msgspec's one-line message."""
    message, _, where = str(exc).partition(" - at `")
    path = where.rstrip("`").removeprefix("$").lstrip(".")
    path = path.replace("[", ".").replace("]", "")
    missing = message.startswith("Object missing required field `")
    if missing:
        name = message.removeprefix("Object missing required field `").rstrip("`")
    else:
        name, colon, _ = message.partition(": ")
        name = name if colon and name.isidentifier() else ""
    return missing, ".".join(part for part in (path, name) if part)
