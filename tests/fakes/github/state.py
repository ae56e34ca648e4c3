"""The fake's records of GitHub objects, and the stores and lookups every resource mixin shares."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_public_key

from tests.fakes.git_data import BareRepo


@dataclass
class IssuedToken:
    """A minted installation token; `repositories` holds full names, None if not narrowed."""

    token: str
    installation_id: int
    repositories: list[str] | None
    permissions: dict[str, str]
    expires_at: datetime

    @property
    def expired(self) -> bool:
        return self.expires_at <= datetime.now(UTC)


@dataclass
class TokenScope:
    """What an installation token was minted for (see `FakeGitHub.token_scope`).

    `installation_repos` are the installation's repos now; `repositories` the token's narrowing
    (full names, None if not narrowed); `permissions` what it was granted.
    """

    installation_id: int
    installation_repos: list[str]
    repositories: list[str] | None
    permissions: dict[str, str]
    expired: bool


@dataclass
class FakeRepo:
    id: int
    full_name: str
    default_branch: str
    private: bool
    clone_url: str | None
    description: str | None
    fork: bool
    created_at: datetime

    @property
    def owner(self) -> str:
        return self.full_name.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/", 1)[1]


@dataclass
class FakeInstallation:
    id: int
    account_login: str
    account_type: str
    repos: list[str]
    permissions: dict[str, str]
    repository_selection: str
    created_at: datetime


@dataclass
class FakeIssue:
    id: int
    repo: str
    number: int
    title: str
    body: str | None
    user: str
    is_pr: bool
    created_at: datetime
    state: str = "open"


@dataclass
class FakePull:
    id: int
    repo: str
    number: int
    head_ref: str
    head_sha: str
    base_ref: str
    base_sha: str
    draft: bool
    fork_full_name: str | None
    files: list[dict[str, Any]]
    created_at: datetime


class GitHubState:
    """The App's identity and the fake's stores, guarded by one lock (see `FakeGitHub`).

    Each resource mixin adds the configuration, inspection and endpoints for its part of the
    API on top of these; the routes and the request recording are `FakeGitHub`'s own.
    """

    def __init__(
        self,
        app_id: int,
        public_key_pem: str,
        *,
        app_slug: str = "fake-bot",
        app_owner: str = "fake-owner",
    ) -> None:
        self.app_id = app_id
        self.app_slug = app_slug
        self.app_owner = app_owner
        self._public_key = load_pem_public_key(public_key_pem.encode())
        self._lock = threading.RLock()
        self._next_id = 1000
        self._user_ids: dict[str, int] = {}
        self._repos: dict[str, FakeRepo] = {}
        self._installations: dict[int, FakeInstallation] = {}
        self._roles: dict[tuple[str, str], str] = {}
        self._tokens: dict[str, IssuedToken] = {}
        self._token_log: list[dict[str, Any]] = []
        self._jwt_claims: list[dict[str, Any]] = []
        self._jwt_rejections: list[str] = []
        self._issues: dict[tuple[str, int], FakeIssue] = {}
        self._pulls: dict[tuple[str, int], FakePull] = {}
        self._comments: dict[int, dict[str, Any]] = {}
        self._review_comments: dict[int, dict[str, Any]] = {}
        self._git_repos: dict[str, BareRepo] = {}  # lower-cased full name → its bare repository
        self._reactions: list[dict[str, Any]] = []
        self._created_pulls: list[dict[str, Any]] = []
        self._reviews: list[dict[str, Any]] = []
        self._unexpected: list[str] = []

    @property
    def bot_login(self) -> str:
        return f"{self.app_slug}[bot]"

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _claim_id(self, wanted: int | None) -> int:
        """`wanted` (keeping later ids above it), or a fresh id."""
        if wanted is None:
            return self._new_id()
        self._next_id = max(self._next_id, wanted)
        return wanted

    def _user_id(self, login: str) -> int:
        return self._user_ids.setdefault(login.lower(), len(self._user_ids) + 1)

    def _noreply_email(self, login: str) -> str:
        return f"{self._user_id(login)}+{login}@users.noreply.github.com"

    def _require_repo(self, full_name: str) -> FakeRepo:
        repo = self._repos.get(full_name.lower())
        if repo is None:
            raise KeyError(f"unknown repo {full_name}; call add_repo first")
        return repo

    def _require_issue(self, full_name: str, number: int) -> FakeIssue:
        issue = self._issues.get((full_name.lower(), number))
        if issue is None:
            raise KeyError(f"unknown issue {full_name}#{number}; call add_issue first")
        return issue

    def _issue_comments(self, issue: FakeIssue) -> list[dict[str, Any]]:
        return [
            comment
            for comment in self._comments.values()
            if comment["repo"] == issue.repo and comment["issue_number"] == issue.number
        ]

    def _role(self, repo: FakeRepo, login: str) -> str | None:
        if login.lower() == repo.owner.lower():
            return "admin"
        return self._roles.get((repo.full_name.lower(), login.lower()))

    def _author_association(self, repo: FakeRepo, login: str) -> str:
        if login.lower() == repo.owner.lower():
            return "OWNER"
        if self._role(repo, login) in {"admin", "maintain", "write", "triage"}:
            return "COLLABORATOR"
        return "NONE"

    def _owner_type(self, login: str) -> str:
        for installation in self._installations.values():
            if installation.account_login.lower() == login.lower():
                return installation.account_type
        return "User"
