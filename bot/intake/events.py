"""Lenient views of webhook payloads: only the fields we use, so old deliveries still parse."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from bot.queue.tasks import Id

# A login as GitHub makes them (letters, digits, '-', '_' for managed users, '[bot]' for Apps):
# never a NUL, a newline or 100k characters that would reach URLs, prompts and logs.
Login = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}(\[bot\])?$")]
RepoName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,100}$")]
FullName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")
]
# A git ref or path: bounded, with no control characters (git and the prompts choke on them).
RefText = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{1,1024}$")]


def _timestamp(value: str | None) -> str | None:
    """An ISO 8601 time with its zone, as GitHub sends: the job compares it with GitHub's own."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise ValueError("an ISO 8601 time without its zone")
    return value


Timestamp = Annotated[str | None, AfterValidator(_timestamp)]


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Account(Lenient):
    login: Login
    type: str = "User"


class Repository(Lenient):
    id: Id | None = None
    name: RepoName
    full_name: FullName | None = None
    owner: Account
    clone_url: str | None = None
    default_branch: str | None = None
    private: bool = False


class InstallationRef(Lenient):
    id: Id


class Comment(Lenient):
    id: Id
    body: str | None = None
    user: Account
    created_at: Timestamp = None
    path: RefText | None = None
    line: Id | None = None
    original_line: Id | None = None
    diff_hunk: str | None = None
    in_reply_to_id: Id | None = None  # review comments: the thread's first comment


class Label(Lenient):
    name: str


class Issue(Lenient):
    number: Id
    title: str | None = None
    body: str | None = None
    user: Account | None = None
    pull_request: dict[str, Any] | None = None


class Ref(Lenient):
    ref: RefText
    sha: str
    repo: Repository | None = None


class PullRequest(Lenient):
    number: Id
    draft: bool = False
    state: str | None = None
    user: Account
    head: Ref
    base: Ref


class _Event(Lenient):
    action: str | None = None
    sender: Account
    repository: Repository
    installation: InstallationRef | None = None


class IssueCommentEvent(_Event):
    issue: Issue
    comment: Comment


class ReviewCommentEvent(_Event):
    pull_request: PullRequest
    comment: Comment


class IssuesEvent(_Event):
    issue: Issue
    label: Label | None = None


class PullRequestEvent(_Event):
    pull_request: PullRequest


class CheckRunPull(Lenient):
    number: Id


class CheckRun(Lenient):
    name: str
    head_sha: str
    external_id: str | None = None
    pull_requests: list[CheckRunPull] = Field(default_factory=list)


class CheckRunEvent(_Event):
    check_run: CheckRun


class PushCommit(Lenient):
    added: list[str] = Field(default_factory=list)
    modified: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)


class PushEvent(_Event):
    ref: str
    after: str | None = None
    deleted: bool = False
    commits: list[PushCommit] = Field(default_factory=list)
    head_commit: PushCommit | None = None


class InstallationRepo(Lenient):
    full_name: FullName


class InstallationBody(Lenient):
    id: Id
    account: Account | None = None


class InstallationEvent(Lenient):
    action: str
    sender: Account
    installation: InstallationBody
    repositories: list[InstallationRepo] = Field(default_factory=list)
    repositories_added: list[InstallationRepo] = Field(default_factory=list)
    repositories_removed: list[InstallationRepo] = Field(default_factory=list)
