"""Lenient views of webhook payloads: only the fields we use, so old deliveries still parse."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Account(Lenient):
    login: str
    type: str = "User"


class Repository(Lenient):
    id: int | None = None
    name: str
    full_name: str | None = None
    owner: Account
    clone_url: str | None = None
    default_branch: str | None = None
    private: bool = False


class InstallationRef(Lenient):
    id: int


class Comment(Lenient):
    id: int
    body: str | None = None
    user: Account
    created_at: str | None = None
    path: str | None = None
    line: int | None = None
    original_line: int | None = None
    diff_hunk: str | None = None


class Label(Lenient):
    name: str


class Issue(Lenient):
    number: int
    title: str | None = None
    body: str | None = None
    user: Account | None = None
    pull_request: dict[str, Any] | None = None


class Ref(Lenient):
    ref: str
    sha: str
    repo: Repository | None = None


class PullRequest(Lenient):
    number: int
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
    full_name: str


class InstallationBody(Lenient):
    id: int
    account: Account | None = None


class InstallationEvent(Lenient):
    action: str
    sender: Account
    installation: InstallationBody
    repositories: list[InstallationRepo] = Field(default_factory=list)
    repositories_added: list[InstallationRepo] = Field(default_factory=list)
    repositories_removed: list[InstallationRepo] = Field(default_factory=list)
