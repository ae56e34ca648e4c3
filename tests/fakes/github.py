"""A fake GitHub REST API on a real loopback port, so the bot's HTTP client is tested end to end."""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import math
import re
import secrets
import string
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from tests.fakes.git_data import BareRepo, GitDataApi, GitDataError, GitRequest
from tests.fakes.manifest import convert_manifest_code
from tests.paths import REST_EXAMPLES
from tests.servers import ServerThread

# GitHub's documented response examples, copied into tests/fixtures (see their SOURCE.md).
EXAMPLES_DIR = REST_EXAMPLES
DOCS = "https://docs.github.com/rest"
HTML_BASE = "https://github.com"
EXAMPLE_API_BASE = "https://api.github.com"

DEFAULT_PERMISSIONS: dict[str, str] = {
    "contents": "write",
    "issues": "write",
    "pull_requests": "write",
    "metadata": "read",
}
ROLES = ("admin", "maintain", "write", "triage", "read", "none")
# The permission endpoint's legacy `permission` field only knows admin/write/read/none.
LEGACY_PERMISSION = {
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
    "none": "none",
}
REACTIONS = frozenset({"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"})
REVIEW_STATES = {
    "APPROVE": "APPROVED",
    "REQUEST_CHANGES": "CHANGES_REQUESTED",
    "COMMENT": "COMMENTED",
}
MAX_BODY = 65536
JWT_MAX_LIFETIME = 600  # GitHub: exp at most 10 minutes after iat
CLOCK_SLACK = 5  # seconds of leeway for the client's clock
TOKEN_LIFETIME = timedelta(hours=1)

_OWNER = r"(?P<owner>[^/]+)"
_REPO = r"(?P<repo>[^/]+)"
_R = f"/repos/{_OWNER}/{_REPO}"


@cache
def _load_example(operation_id: str) -> Any:
    return json.loads((EXAMPLES_DIR / f"{operation_id}.json").read_text())


def example(operation_id: str) -> Any:
    """A fresh copy of GitHub's documented example body for `operation_id`."""
    return copy.deepcopy(_load_example(operation_id))


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _node_id(kind: str, number: int) -> str:
    return base64.b64encode(f"{kind}{number}".encode()).decode()


def _sha(*parts: str) -> str:
    return hashlib.sha1(":".join(parts).encode()).hexdigest()


def _replace_strings(value: Any, replacements: list[tuple[str, str]]) -> Any:
    """Apply substring replacements to every string inside a JSON value."""
    if isinstance(value, str):
        for old, new in replacements:
            value = value.replace(old, new)
        return value
    if isinstance(value, list):
        return [_replace_strings(item, replacements) for item in value]
    if isinstance(value, dict):
        return {key: _replace_strings(item, replacements) for key, item in value.items()}
    return value


@dataclass
class RecordedRequest:
    """One request the fake received, and the status it answered."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    status: int = 0


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


@dataclass
class _Failure:
    method: str
    path: re.Pattern[str]
    status: int
    headers: dict[str, str]
    body: Any
    times: int


@dataclass
class _Delay:
    method: str
    path: re.Pattern[str]
    seconds: float
    times: int | None


@dataclass
class _Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """Raised by a handler to answer with a GitHub-style error body."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(f"{status} {message}")
        self.reply = _Reply(
            status, {"message": message, "documentation_url": DOCS, **extra, "status": str(status)}
        )


def _not_found() -> ApiError:
    return ApiError(404, "Not Found")


def _validation_failed(*errors: dict[str, Any]) -> ApiError:
    return ApiError(422, "Validation Failed", errors=list(errors))


@dataclass
class _Call:
    """What a handler gets: the recorded request, the URL params and the fake's public base URL."""

    request: RecordedRequest
    params: dict[str, str]
    api_base: str

    @property
    def body(self) -> dict[str, Any]:
        data = self.request.json
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ApiError(400, "Problems parsing JSON")
        return data

    @property
    def full_name(self) -> str:
        return f"{self.params['owner']}/{self.params['repo']}"

    def int_param(self, name: str) -> int:
        return int(self.params[name])


Handler = Callable[[_Call], _Reply]
GitOperation = Callable[[GitDataApi, GitRequest], tuple[int, Any]]


class FakeGitHub:
    """A stateful fake of the GitHub REST endpoints the bot uses, answered in GitHub's shapes.

    Bodies start from GitHub's documented examples (`EXAMPLES_DIR`) and carry the fake's state.
    The rules it enforces:

    - App endpoints (`/app...`, `/repos/{o}/{r}/installation`) need a valid RS256 App JWT.
    - Every other endpoint needs a live installation token (`token` or `Bearer` scheme) whose
      installation, and narrowed repository list if any, includes the repo, else 401/404. Unlike
      GitHub, public repos are not readable without such a token: stricter on purpose.
    - Writes need the matching permission (`issues`, `pull_requests`) at `write`, else 403.
    - Git Data (`/git/...`), contents and branch endpoints are answered from the repo's real bare
      repository (`attach_git`; FakeGitHost's `create_repo` attaches it): they need `contents`
      (read to read, write to write), and answer 409 and note an unexpected call for a repo
      without one. PRs on such a repo follow its branches: creating one needs its head and base
      branches there, its `head.sha` is the branch's tip, and `refs/pull/N/head` follows it.
    - Issues, PRs and comments must be seeded (`add_issue`, `add_comment`, `add_from_webhook`,
      ...) before they are read or reacted to; unknown ones answer 404 as on GitHub.
    - Collaborator permission of a user never given a role: `read` on a public repo and 404 on a
      private one (GitHub answers 404 for non-collaborators it may not disclose).
    - Anything not implemented answers 501 and is listed in `unexpected`.

    State is guarded by one lock: the server thread mutates it while tests read snapshots.
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
        self._server: ServerThread | None = None
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
        self._requests: list[RecordedRequest] = []
        self._unexpected: list[str] = []
        self._failures: list[_Failure] = []
        self._delays: list[_Delay] = []
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = [
            (method, re.compile(pattern), handler)
            for method, pattern, handler in [
                ("GET", r"/app", self._get_app),
                (
                    "POST",
                    r"/app-manifests/(?P<code>[^/]+)/conversions",
                    convert_manifest_code(self),
                ),
                ("POST", r"/app/installations/(?P<id>\d+)/access_tokens", self._create_token),
                ("GET", rf"{_R}/installation", self._get_repo_installation),
                ("GET", _R, self._get_repo),
                ("GET", rf"{_R}/collaborators/(?P<user>[^/]+)/permission", self._get_permission),
                ("GET", r"/app/installations", self._list_installations),
                ("GET", r"/installation/repositories", self._list_installation_repos),
                ("POST", rf"{_R}/issues", self._create_issue),
                ("GET", rf"{_R}/issues/(?P<n>\d+)", self._get_issue),
                ("PATCH", rf"{_R}/issues/(?P<n>\d+)", self._update_issue),
                ("GET", rf"{_R}/issues/(?P<n>\d+)/comments", self._list_comments),
                ("POST", rf"{_R}/issues/(?P<n>\d+)/comments", self._create_comment),
                ("GET", rf"{_R}/issues/comments/(?P<id>\d+)", self._get_comment),
                ("PATCH", rf"{_R}/issues/comments/(?P<id>\d+)", self._update_comment),
                ("POST", rf"{_R}/issues/comments/(?P<id>\d+)/reactions", self._react_comment),
                ("POST", rf"{_R}/issues/(?P<n>\d+)/reactions", self._react_issue),
                ("POST", rf"{_R}/pulls/comments/(?P<id>\d+)/reactions", self._react_review_comment),
                ("GET", rf"{_R}/pulls/(?P<n>\d+)", self._get_pull),
                ("GET", rf"{_R}/pulls/(?P<n>\d+)/files", self._list_pull_files),
                ("GET", rf"{_R}/pulls", self._list_pulls),
                ("POST", rf"{_R}/pulls", self._create_pull),
                ("POST", rf"{_R}/pulls/(?P<n>\d+)/reviews", self._create_review),
                (
                    "POST",
                    rf"{_R}/pulls/(?P<n>\d+)/comments/(?P<id>\d+)/replies",
                    self._reply_review_comment,
                ),
                *self._git_routes(),
            ]
        ]

    def _git_routes(self) -> list[tuple[str, str, Handler]]:
        """The endpoints answered from the repo's bare repository (`attach_git`)."""
        git = self._git_route
        api = GitDataApi
        return [
            ("POST", rf"{_R}/git/blobs", git(api.create_blob, write=True)),
            ("GET", rf"{_R}/git/blobs/(?P<sha>[^/]+)", git(api.get_blob)),
            ("POST", rf"{_R}/git/trees", git(api.create_tree, write=True)),
            ("GET", rf"{_R}/git/trees/(?P<sha>[^/]+)", git(api.get_tree)),
            ("POST", rf"{_R}/git/commits", git(api.create_commit, write=True)),
            ("GET", rf"{_R}/git/commits/(?P<sha>[^/]+)", git(api.get_commit)),
            ("GET", rf"{_R}/git/ref/(?P<ref>.+)", git(api.get_ref)),
            ("GET", rf"{_R}/git/matching-refs/(?P<ref>.*)", git(api.list_matching_refs)),
            ("POST", rf"{_R}/git/refs", git(api.create_ref, write=True)),
            ("PATCH", rf"{_R}/git/refs/(?P<ref>.+)", git(api.update_ref, write=True)),
            ("DELETE", rf"{_R}/git/refs/(?P<ref>.+)", git(api.delete_ref, write=True)),
            ("GET", rf"{_R}/contents(?:/(?P<path>.*))?", git(api.get_content)),
            ("GET", rf"{_R}/branches/(?P<branch>.+)", git(api.get_branch)),
        ]

    # ------------------------------------------------------------------ serving

    @contextmanager
    def serving(self) -> Iterator[FakeGitHub]:
        """Serve on a loopback port for the duration of the block; `url` is set inside it."""
        with ServerThread(self) as server:
            self._server = server
            try:
                yield self
            finally:
                self._server = None

    @property
    def url(self) -> str:
        """The API base URL, e.g. ``http://127.0.0.1:54321`` (use as `GITHUB_API_URL`)."""
        if self._server is None:
            raise RuntimeError("FakeGitHub is not serving; use `with fake.serving():`")
        return self._server.url

    @property
    def bot_login(self) -> str:
        return f"{self.app_slug}[bot]"

    # ------------------------------------------------------------------ configuration

    def add_repo(
        self,
        full_name: str,
        *,
        default_branch: str = "main",
        private: bool = False,
        clone_url: str | None = None,
        description: str | None = None,
        fork: bool = False,
    ) -> FakeRepo:
        """Register a repo (ids count up). Calling again replaces its settings, keeping its id."""
        with self._lock:
            existing = self._repos.get(full_name.lower())
            repo = FakeRepo(
                id=existing.id if existing else self._new_id(),
                full_name=full_name,
                default_branch=default_branch,
                private=private,
                clone_url=clone_url,
                description=description,
                fork=fork,
                created_at=existing.created_at if existing else _now(),
            )
            self._repos[full_name.lower()] = repo
            return repo

    def add_installation(
        self,
        installation_id: int,
        account_login: str,
        repos: list[str],
        *,
        account_type: str = "User",
        permissions: dict[str, str] | None = None,
        repository_selection: str = "all",
    ) -> None:
        """Install the App on `account_login` for `repos` ("owner/name"), adding unknown repos."""
        with self._lock:
            for full_name in repos:
                if full_name.lower() not in self._repos:
                    self.add_repo(full_name)
            self._installations[installation_id] = FakeInstallation(
                id=installation_id,
                account_login=account_login,
                account_type=account_type,
                repos=[self._repos[name.lower()].full_name for name in repos],
                permissions=dict(permissions or DEFAULT_PERMISSIONS),
                repository_selection=repository_selection,
                created_at=_now(),
            )

    def set_permission(self, full_name: str, username: str, role: str) -> None:
        """Give `username` a role on the repo: admin, maintain, write, triage, read or none."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        with self._lock:
            self._roles[(full_name.lower(), username.lower())] = role

    def add_issue(
        self,
        full_name: str,
        number: int,
        title: str = "An issue",
        body: str | None = "",
        user: str = "octocat",
        is_pr: bool = False,
        *,
        issue_id: int | None = None,
    ) -> None:
        """Add an open issue (`is_pr` marks a PR's issue; `add_pull` sets it for you)."""
        with self._lock:
            repo = self._require_repo(full_name)
            self._issues[(repo.full_name.lower(), number)] = FakeIssue(
                id=self._claim_id(issue_id),
                repo=repo.full_name,
                number=number,
                title=title,
                body=body,
                user=user,
                is_pr=is_pr,
                created_at=_now(),
            )

    def add_pull(
        self,
        full_name: str,
        number: int,
        head_ref: str,
        head_sha: str,
        base_ref: str = "main",
        user: str = "octocat",
        *,
        draft: bool = False,
        fork_full_name: str | None = None,
        title: str = "A pull request",
        body: str | None = "",
        base_sha: str | None = None,
        files: list[dict[str, Any]] | None = None,
    ) -> None:
        """Add an open PR (and its issue). `files` items: filename, status, additions, ..."""
        with self._lock:
            repo = self._require_repo(full_name)
            if fork_full_name and fork_full_name.lower() not in self._repos:
                self.add_repo(fork_full_name, fork=True)
            self.add_issue(repo.full_name, number, title, body, user, is_pr=True)
            self._pulls[(repo.full_name.lower(), number)] = FakePull(
                id=self._new_id(),
                repo=repo.full_name,
                number=number,
                head_ref=head_ref,
                head_sha=head_sha,
                base_ref=base_ref,
                base_sha=base_sha or _sha(repo.full_name, base_ref),
                draft=draft,
                fork_full_name=fork_full_name,
                files=[dict(item) for item in files or []],
                created_at=_now(),
            )

    def add_comment(
        self,
        full_name: str,
        issue_number: int,
        body: str,
        user: str,
        *,
        comment_id: int | None = None,
    ) -> int:
        """Seed an issue or PR conversation comment; returns its id (`comment_id` if given)."""
        with self._lock:
            issue = self._require_issue(full_name, issue_number)
            return self._store_comment(issue, body, user, comment_id)

    def add_review_comment(
        self,
        full_name: str,
        pull_number: int,
        body: str,
        user: str,
        *,
        comment_id: int | None = None,
        path: str = "README.md",
        line: int | None = 1,
        diff_hunk: str = "@@ -1 +1 @@\n-old\n+new",
        commit_id: str | None = None,
        in_reply_to_id: int | None = None,
    ) -> int:
        """Seed a PR review (diff) comment, to react or reply to; returns its id.

        `commit_id` defaults to the PR's head sha when the PR is known.
        """
        with self._lock:
            repo = self._require_repo(full_name)
            pull = self._pulls.get((repo.full_name.lower(), pull_number))
            comment_id = self._claim_id(comment_id)
            stamp = _iso(_now())
            self._review_comments[comment_id] = {
                "id": comment_id,
                "repo": repo.full_name,
                "pull_number": pull_number,
                "body": body,
                "user": user,
                "path": path,
                "line": line,
                "diff_hunk": diff_hunk,
                "commit_id": commit_id or (self._head_sha(pull) if pull else _sha(path)),
                "in_reply_to_id": in_reply_to_id,
                "review_id": self._new_id(),
                "created_at": stamp,
                "updated_at": stamp,
            }
            return comment_id

    def attach_git(
        self, full_name: str, bare_path: Path, *, default_branch: str = "main"
    ) -> FakeRepo:
        """Back the repo's Git Data, contents, branch and PR endpoints by a bare repository.

        Registers the repo (`add_repo(full_name, default_branch=...)`) if unknown. FakeGitHost's
        `create_repo` calls this for you.
        """
        with self._lock:
            repo = self._repos.get(full_name.lower()) or self.add_repo(
                full_name, default_branch=default_branch
            )
            self._git_repos[full_name.lower()] = BareRepo(Path(bare_path))
            return repo

    def git_path(self, full_name: str) -> Path | None:
        """The bare repository attached to the repo, None if none is."""
        with self._lock:
            bare = self._git_repos.get(full_name.lower())
            return bare.path if bare else None

    def set_clone_url(self, full_name: str, url: str) -> None:
        """Set the repo's `clone_url` (registering the repo if unknown)."""
        with self._lock:
            repo = self._repos.get(full_name.lower())
            if repo is None:
                self.add_repo(full_name, clone_url=url)
            else:
                repo.clone_url = url

    def token_scope(self, token: str) -> TokenScope | None:
        """What this fake minted `token` for, None if it did not mint it."""
        with self._lock:
            issued = self._tokens.get(token)
            if issued is None:
                return None
            installation = self._installations.get(issued.installation_id)
            return TokenScope(
                installation_id=issued.installation_id,
                installation_repos=list(installation.repos) if installation else [],
                repositories=copy.copy(issued.repositories),
                permissions=dict(issued.permissions),
                expired=issued.expired,
            )

    def sync_pull_refs(self, full_name: str) -> None:
        """Point `refs/pull/N/head` of every PR whose head is in `full_name` at its head branch.

        GitHub keeps these refs in the base repository; this fake moves them when a PR is opened,
        when a ref moves through the API, and when FakeGitHost sees a push or commit. PRs whose
        head branch is not in an attached bare repository are left alone.
        """
        with self._lock:
            for pull in self._pulls.values():
                if full_name.lower() in {pull.repo.lower(), (pull.fork_full_name or "").lower()}:
                    self._sync_pull_ref(pull)

    def add_from_webhook(self, payload: dict[str, Any]) -> None:
        """Seed the repo, issue or PR, and comment a webhook payload talks about, with its ids.

        Handles `issue_comment`, `issues`, `pull_request`, `pull_request_review_comment` payloads.
        Installations are not touched: call `add_installation` yourself.
        """
        with self._lock:
            repository = payload["repository"]
            full_name = repository["full_name"]
            if full_name.lower() not in self._repos:
                self.add_repo(
                    full_name,
                    default_branch=repository.get("default_branch", "main"),
                    private=bool(repository.get("private", False)),
                )
            if pull := payload.get("pull_request"):
                head_repo = (pull["head"].get("repo") or {}).get("full_name") or full_name
                self.add_pull(
                    full_name,
                    pull["number"],
                    pull["head"]["ref"],
                    pull["head"]["sha"],
                    pull["base"]["ref"],
                    pull["user"]["login"],
                    draft=bool(pull.get("draft", False)),
                    fork_full_name=head_repo if head_repo.lower() != full_name.lower() else None,
                    title=pull.get("title", ""),
                    body=pull.get("body"),
                    base_sha=pull["base"].get("sha"),
                )
            if issue := payload.get("issue"):
                key = (full_name.lower(), issue["number"])
                if key not in self._issues:
                    self.add_issue(
                        full_name,
                        issue["number"],
                        issue.get("title", ""),
                        issue.get("body"),
                        issue["user"]["login"],
                        is_pr="pull_request" in issue,
                        issue_id=issue.get("id"),
                    )
            comment = payload.get("comment")
            if comment and pull and "diff_hunk" in comment:
                self.add_review_comment(
                    full_name,
                    pull["number"],
                    comment["body"],
                    comment["user"]["login"],
                    comment_id=comment["id"],
                    path=comment.get("path", "README.md"),
                    line=comment.get("line"),
                    diff_hunk=comment.get("diff_hunk", ""),
                    commit_id=comment.get("commit_id"),
                    in_reply_to_id=comment.get("in_reply_to_id"),
                )
            elif comment and issue:
                self.add_comment(
                    full_name,
                    issue["number"],
                    comment["body"],
                    comment["user"]["login"],
                    comment_id=comment["id"],
                )

    def expire_tokens(self) -> None:
        """Make every issued installation token expired, as after an hour."""
        with self._lock:
            for token in self._tokens.values():
                token.expires_at = datetime.now(UTC) - timedelta(seconds=1)

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        body: Any = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests matching (`re.search` on the path) with `status`."""
        with self._lock:
            self._failures.append(
                _Failure(
                    method=method.upper(),
                    path=re.compile(path_regex),
                    status=status,
                    headers={key.lower(): value for key, value in (headers or {}).items()},
                    body=body,
                    times=times,
                )
            )

    def delay(
        self, method: str, path_regex: str, seconds: float, *, times: int | None = None
    ) -> None:
        """Wait `seconds` before answering matching requests (all of them unless `times`)."""
        with self._lock:
            self._delays.append(_Delay(method.upper(), re.compile(path_regex), seconds, times))

    # ------------------------------------------------------------------ inspection

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return copy.deepcopy(self._requests)

    def requests_to(self, method: str, path_regex: str) -> list[RecordedRequest]:
        """Recorded requests with this method whose path matches (`re.search`)."""
        pattern = re.compile(path_regex)
        return [
            request
            for request in self.requests
            if request.method == method.upper() and pattern.search(request.path)
        ]

    @property
    def unexpected(self) -> list[str]:
        with self._lock:
            return list(self._unexpected)

    def assert_no_unexpected(self) -> None:
        unexpected = self.unexpected
        if unexpected:
            raise AssertionError("FakeGitHub got unexpected requests:\n" + "\n".join(unexpected))

    @property
    def comments(self) -> dict[int, dict[str, Any]]:
        """id → {id, repo, issue_number, body, user, created_at, updated_at, history}.

        `history` lists every body the comment had, oldest first (the last one is `body`).
        """
        with self._lock:
            return copy.deepcopy(self._comments)

    @property
    def reactions(self) -> list[dict[str, Any]]:
        """Dicts {id, target_kind, target_id, content, repo, user}; target_kind is one of
        issue_comment, issue, pull_request_review_comment."""
        with self._lock:
            return copy.deepcopy(self._reactions)

    @property
    def token_log(self) -> list[dict[str, Any]]:
        """Every token minted: {token, installation_id, repositories, repository_ids,
        repository_full_names, permissions, expires_at}.

        `repositories` and `repository_ids` are the narrowing as requested (None when absent);
        `repository_full_names` what it resolved to; `permissions` what was granted.
        """
        with self._lock:
            return copy.deepcopy(self._token_log)

    @property
    def jwt_claims(self) -> list[dict[str, Any]]:
        """Claims of every App JWT the fake accepted."""
        with self._lock:
            return copy.deepcopy(self._jwt_claims)

    @property
    def jwt_rejections(self) -> list[str]:
        """Why each rejected App JWT was rejected."""
        with self._lock:
            return list(self._jwt_rejections)

    @property
    def issues(self) -> list[dict[str, Any]]:
        """Every issue (not PR): {repo, number, title, body, user, state}, in creation order."""
        with self._lock:
            return [
                {
                    "repo": i.repo,
                    "number": i.number,
                    "title": i.title,
                    "body": i.body,
                    "user": i.user,
                    "state": i.state,
                }
                for i in sorted(self._issues.values(), key=lambda i: i.id)
                if not i.is_pr
            ]

    @property
    def created_pulls(self) -> list[dict[str, Any]]:
        """PRs opened through the API: {repo, number, title, body, head, base, draft, user}."""
        with self._lock:
            return copy.deepcopy(self._created_pulls)

    @property
    def review_comments(self) -> dict[int, dict[str, Any]]:
        """id → {id, repo, pull_number, body, user, path, line, diff_hunk, commit_id,
        in_reply_to_id, review_id, created_at, updated_at}: seeded ones and replies."""
        with self._lock:
            return copy.deepcopy(self._review_comments)

    @property
    def reviews(self) -> list[dict[str, Any]]:
        """Reviews submitted: {id, repo, pull_number, body, event, state, comments, commit_id}."""
        with self._lock:
            return copy.deepcopy(self._reviews)

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await self._respond(request)
        await response(scope, receive, send)

    async def _respond(self, request: Request) -> Response:
        raw = await request.body()
        record = RecordedRequest(
            method=request.method.upper(),
            path=request.url.path,
            query=dict(request.query_params),
            headers=dict(request.headers),
            json=None,
        )
        with self._lock:
            self._requests.append(record)
        api_base = f"{request.url.scheme}://{request.url.netloc}"
        if (seconds := self._take_delay(record)) is not None:
            await asyncio.sleep(seconds)
        reply = self._dispatch(record, raw, api_base)
        with self._lock:
            record.status = reply.status
        headers = {**self._standard_headers(), **reply.headers}
        if reply.body is None:
            return Response(status_code=reply.status, headers=headers)
        return JSONResponse(reply.body, status_code=reply.status, headers=headers)

    def _dispatch(self, record: RecordedRequest, raw: bytes, api_base: str) -> _Reply:
        with self._lock:
            try:
                record.json = json.loads(raw) if raw else None
                parsed = True
            except ValueError:
                parsed = False
            if (failure := self._take_failure(record)) is not None:
                return failure
            if not parsed:
                return ApiError(400, "Problems parsing JSON").reply
            for method, pattern, handler in self._routes:
                match = pattern.fullmatch(record.path)
                if match and method == record.method:
                    try:
                        return handler(_Call(record, match.groupdict(), api_base))
                    except ApiError as error:
                        return error.reply
                    except Exception:
                        self._unexpected.append(
                            f"{record.method} {record.path} crashed the fake:\n"
                            + traceback.format_exc()
                        )
                        return ApiError(500, "FakeGitHub handler crashed").reply
            self._unexpected.append(f"{record.method} {record.path}")
            return ApiError(
                501, f"FakeGitHub does not implement {record.method} {record.path}"
            ).reply

    def _take_failure(self, record: RecordedRequest) -> _Reply | None:
        for failure in self._failures:
            if failure.method == record.method and failure.path.search(record.path):
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
                body = failure.body
                if body is None:
                    body = {"message": f"Injected {failure.status}", "documentation_url": DOCS}
                return _Reply(failure.status, body, dict(failure.headers))
        return None

    def _take_delay(self, record: RecordedRequest) -> float | None:
        with self._lock:
            for item in self._delays:
                if item.method == record.method and item.path.search(record.path):
                    if item.times is not None:
                        item.times -= 1
                        if item.times <= 0:
                            self._delays.remove(item)
                    return item.seconds
        return None

    @staticmethod
    def _standard_headers() -> dict[str, str]:
        return {
            "x-github-media-type": "github.v3; format=json",
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "4999",
            "x-ratelimit-reset": str(int(time.time()) + 3600),
            "x-ratelimit-used": "1",
            "x-ratelimit-resource": "core",
        }

    # ------------------------------------------------------------------ auth

    def _verify_app_jwt(self, call: _Call) -> dict[str, Any]:
        scheme, _, credential = call.request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise self._jwt_error("no Bearer JWT", "A JSON web token could not be decoded")
        try:
            claims: dict[str, Any] = jwt.decode(
                credential.strip(),
                self._public_key,  # type: ignore[arg-type]
                algorithms=["RS256"],
                options={
                    "require": ["iat", "exp", "iss"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_iss": False,
                },
            )
        except jwt.InvalidTokenError as error:
            raise self._jwt_error(
                f"decode: {error}", "A JSON web token could not be decoded"
            ) from None
        now = time.time()
        iat, exp = claims["iat"], claims["exp"]
        if str(claims["iss"]) != str(self.app_id):
            raise self._jwt_error(
                f"iss {claims['iss']!r} is not {self.app_id}",
                "A JSON web token could not be decoded",
            )
        if not isinstance(iat, int | float) or iat > now + CLOCK_SLACK:
            raise self._jwt_error(
                f"iat {iat} is in the future",
                "'Issued at' claim ('iat') must be an Integer representing a time in the past.",
            )
        if not isinstance(exp, int | float) or exp <= now:
            raise self._jwt_error(
                f"exp {exp} has passed",
                "'Expiration time' claim ('exp') must be a numeric value representing the future"
                " time at which the assertion expires.",
            )
        if exp - iat > JWT_MAX_LIFETIME + CLOCK_SLACK or exp > now + JWT_MAX_LIFETIME + CLOCK_SLACK:
            raise self._jwt_error(
                f"exp {exp} is more than {JWT_MAX_LIFETIME}s ahead",
                "'Expiration time' claim ('exp') is too far in the future",
            )
        self._jwt_claims.append(claims)
        return claims

    def _jwt_error(self, reason: str, message: str) -> ApiError:
        self._jwt_rejections.append(reason)
        return ApiError(401, message)

    def _token_for_repo(
        self, call: _Call, write: tuple[str, ...] = (), *, read: tuple[str, ...] = ()
    ) -> tuple[FakeRepo, IssuedToken]:
        """The repo and the caller's token, if that token may see it, and if it holds one of
        the `read` permissions (at read or write) and one of the `write` ones at write."""
        scheme, _, credential = call.request.headers.get("authorization", "").partition(" ")
        if not credential.strip():
            raise ApiError(401, "Requires authentication")
        token = self._tokens.get(credential.strip())
        if scheme.lower() not in {"token", "bearer"} or token is None or token.expired:
            raise ApiError(401, "Bad credentials")
        repo = self._repos.get(call.full_name.lower())
        installation = self._installations.get(token.installation_id)
        if repo is None or installation is None or repo.full_name not in installation.repos:
            raise _not_found()
        if token.repositories is not None and repo.full_name not in token.repositories:
            raise _not_found()
        if write and not any(token.permissions.get(name) == "write" for name in write):
            raise ApiError(403, "Resource not accessible by integration")
        if read and not any(token.permissions.get(name) in {"read", "write"} for name in read):
            raise ApiError(403, "Resource not accessible by integration")
        return repo, token

    # ------------------------------------------------------------------ git-backed helpers

    def _git_route(self, operation: GitOperation, *, write: bool = False) -> Handler:
        """A handler running `operation` on the repo's bare repository, after `contents` auth."""

        def handle(call: _Call) -> _Reply:
            repo, _ = self._token_for_repo(call, ("contents",) if write else (), read=("contents",))
            bare = self._git_repos.get(repo.full_name.lower())
            if bare is None:
                self._unexpected.append(
                    f"{call.request.method} {call.request.path}: {repo.full_name} has no bare"
                    " repository; create it with FakeGitHost.create_repo or attach_git"
                )
                raise ApiError(409, "Git Repository is empty.")
            api = GitDataApi(
                repo=bare,
                full_name=repo.full_name,
                default_branch=repo.default_branch,
                api_base=call.api_base,
                actor=(self.bot_login, self._noreply_email(self.bot_login)),
                on_ref_change=lambda: self.sync_pull_refs(repo.full_name),
            )
            params = {key: value for key, value in call.params.items() if value is not None}
            try:
                status, data = operation(api, GitRequest(params, call.request.query, call.body))
            except GitDataError as error:
                raise ApiError(error.status, error.message, **error.extra) from None
            return _Reply(status, data)

        return handle

    def _noreply_email(self, login: str) -> str:
        return f"{self._user_id(login)}+{login}@users.noreply.github.com"

    def _branch_tip(self, full_name: str, branch: str) -> str | None:
        """The branch's sha in the repo's bare repository, None if either is missing."""
        bare = self._git_repos.get(full_name.lower())
        if bare is None:
            return None
        return bare.refs(f"refs/heads/{branch}").get(f"refs/heads/{branch}")

    def _head_sha(self, pull: FakePull) -> str:
        """The PR's head: its branch's tip when that is in a bare repository, else as seeded."""
        return self._branch_tip(pull.fork_full_name or pull.repo, pull.head_ref) or pull.head_sha

    def _sync_pull_ref(self, pull: FakePull) -> None:
        base = self._git_repos.get(pull.repo.lower())
        head_repo = pull.fork_full_name or pull.repo
        tip = self._branch_tip(head_repo, pull.head_ref)
        if base is None or tip is None:
            return
        ref = f"refs/pull/{pull.number}/head"
        if base.refs(ref).get(ref) == tip:
            return
        if head_repo.lower() != pull.repo.lower():  # bring the fork's commits over first
            head = self._git_repos[head_repo.lower()]
            base.output(
                "fetch", "--quiet", "--no-tags", str(head.path), f"refs/heads/{pull.head_ref}"
            )
        base.output("update-ref", ref, tip)

    # ------------------------------------------------------------------ state helpers

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

    def _store_comment(
        self, issue: FakeIssue, body: str, user: str, comment_id: int | None = None
    ) -> int:
        comment_id = self._claim_id(comment_id)
        stamp = _iso(_now())
        self._comments[comment_id] = {
            "id": comment_id,
            "repo": issue.repo,
            "issue_number": issue.number,
            "body": body,
            "user": user,
            "created_at": stamp,
            "updated_at": stamp,
            "history": [body],
        }
        return comment_id

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

    def _issue_write_permissions(self, issue: FakeIssue) -> tuple[str, ...]:
        return ("issues", "pull_requests") if issue.is_pr else ("issues",)

    def _issue_for(self, call: _Call, repo: FakeRepo) -> FakeIssue:
        issue = self._issues.get((repo.full_name.lower(), call.int_param("n")))
        if issue is None:
            raise _not_found()
        return issue

    def _comment_for(self, call: _Call, repo: FakeRepo) -> dict[str, Any]:
        comment = self._comments.get(call.int_param("id"))
        if comment is None or comment["repo"] != repo.full_name:
            raise _not_found()
        return comment

    def _owner_type(self, login: str) -> str:
        for installation in self._installations.values():
            if installation.account_login.lower() == login.lower():
                return installation.account_type
        return "User"

    # ------------------------------------------------------------------ renderers

    def _user(self, login: str, api_base: str, user_type: str | None = None) -> dict[str, Any]:
        user_id = self._user_id(login)
        user: dict[str, Any] = _replace_strings(
            example("repos/get-collaborator-permission-level")["user"],
            [(EXAMPLE_API_BASE, api_base), ("octocat", login)],
        )
        user.update(
            id=user_id,
            node_id=_node_id("04:User", user_id),
            avatar_url=f"https://avatars.githubusercontent.com/u/{user_id}?v=4",
            html_url=f"{HTML_BASE}/{login}",
            type=user_type or ("Bot" if login.endswith("[bot]") else self._owner_type(login)),
        )
        return user

    def _repo_json(self, repo: FakeRepo, api_base: str, *, full: bool) -> dict[str, Any]:
        """A repository object: `full` is the GET /repos shape, else the summary shape."""
        if full:
            data: dict[str, Any] = example("repos/get")
            for key in ("parent", "source", "organization"):
                data.pop(key, None)
            data["template_repository"] = None
        else:
            data = example("apps/create-installation-access-token")["repositories"][0]
        data = _replace_strings(
            data, [("octocat/Hello-World", repo.full_name), (EXAMPLE_API_BASE, api_base)]
        )
        owner = self._user(repo.owner, api_base)
        if full and owner["type"] == "Organization":
            data["organization"] = owner
        stamp = _iso(repo.created_at)
        data.update(
            id=repo.id,
            node_id=_node_id("010:Repository", repo.id),
            name=repo.name,
            full_name=repo.full_name,
            owner=owner,
            private=repo.private,
            visibility="private" if repo.private else "public",
            fork=repo.fork,
            description=repo.description,
            default_branch=repo.default_branch,
            clone_url=repo.clone_url or f"{HTML_BASE}/{repo.full_name}.git",
            language=None,  # repos/get's example omits it, but githubkit requires it
            mirror_url=None,
            homepage=None,
            topics=[],
            is_template=False,
            created_at=stamp,
            updated_at=stamp,
            pushed_at=stamp,
        )
        return data

    def _installation_json(self, installation: FakeInstallation, api_base: str) -> dict[str, Any]:
        data: dict[str, Any] = example("apps/get-repo-installation")
        account = self._user(installation.account_login, api_base, installation.account_type)
        settings = (
            f"{HTML_BASE}/organizations/{installation.account_login}/settings"
            if installation.account_type == "Organization"
            else f"{HTML_BASE}/settings"
        )
        stamp = _iso(installation.created_at)
        data.update(
            id=installation.id,
            account=account,
            repository_selection=installation.repository_selection,
            access_tokens_url=f"{api_base}/app/installations/{installation.id}/access_tokens",
            repositories_url=f"{api_base}/installation/repositories",
            html_url=f"{settings}/installations/{installation.id}",
            app_id=self.app_id,
            client_id=f"Iv1.fake{self.app_id}",
            target_id=account["id"],
            target_type=installation.account_type,
            permissions=dict(installation.permissions),
            events=["issue_comment", "issues", "pull_request", "pull_request_review_comment"],
            created_at=stamp,
            updated_at=stamp,
            single_file_name=None,
            has_multiple_single_files=False,
            single_file_paths=[],
            app_slug=self.app_slug,
        )
        return data

    def _issue_json(self, issue: FakeIssue, api_base: str) -> dict[str, Any]:
        repo = self._require_repo(issue.repo)
        data: dict[str, Any] = _replace_strings(
            example("issues/get"),
            [
                ("octocat/Hello-World", repo.full_name),
                ("/1347", f"/{issue.number}"),
                (EXAMPLE_API_BASE, api_base),
            ],
        )
        if issue.is_pr:
            data["pull_request"]["merged_at"] = None
        else:
            data.pop("pull_request", None)
        stamp = _iso(issue.created_at)
        data.update(
            id=issue.id,
            node_id=_node_id("05:Issue", issue.id),
            number=issue.number,
            title=issue.title,
            body=issue.body,
            user=self._user(issue.user, api_base),
            state=issue.state,
            labels=[],
            assignee=None,
            assignees=[],
            milestone=None,
            locked=False,
            active_lock_reason=None,
            comments=len(self._issue_comments(issue)),
            closed_at=None,
            closed_by=None,
            created_at=stamp,
            updated_at=stamp,
            author_association=self._author_association(repo, issue.user),
            state_reason=None,
            pinned_comment=None,
        )
        return data

    def _comment_json(self, comment: dict[str, Any], api_base: str) -> dict[str, Any]:
        repo = self._require_repo(comment["repo"])
        issue = self._require_issue(repo.full_name, comment["issue_number"])
        kind = "pull" if issue.is_pr else "issues"
        data: dict[str, Any] = example("issues/create-comment")
        data.update(
            id=comment["id"],
            node_id=_node_id("012:IssueComment", comment["id"]),
            url=f"{api_base}/repos/{repo.full_name}/issues/comments/{comment['id']}",
            html_url=(
                f"{HTML_BASE}/{repo.full_name}/{kind}/{issue.number}#issuecomment-{comment['id']}"
            ),
            body=comment["body"],
            user=self._user(comment["user"], api_base),
            created_at=comment["created_at"],
            updated_at=comment["updated_at"],
            issue_url=f"{api_base}/repos/{repo.full_name}/issues/{issue.number}",
            author_association=self._author_association(repo, comment["user"]),
        )
        return data

    def _pull_json(self, pull: FakePull, api_base: str) -> dict[str, Any]:
        repo = self._require_repo(pull.repo)
        issue = self._require_issue(pull.repo, pull.number)
        head_sha = self._head_sha(pull)
        data: dict[str, Any] = _replace_strings(
            example("pulls/get"),
            [
                ("octocat/Hello-World", repo.full_name),
                ("/1347", f"/{pull.number}"),
                ("6dcb09b5b57875f334f61aebed695e2e4193db5e", head_sha),
                (EXAMPLE_API_BASE, api_base),
            ],
        )
        head_repo = self._require_repo(pull.fork_full_name or pull.repo)
        stamp = _iso(pull.created_at)
        data.update(
            id=pull.id,
            node_id=_node_id("011:PullRequest", pull.id),
            number=pull.number,
            state=issue.state,
            locked=False,
            title=issue.title,
            user=self._user(issue.user, api_base),
            body=issue.body,
            labels=[],
            milestone=None,
            active_lock_reason=None,
            created_at=stamp,
            updated_at=stamp,
            closed_at=None,
            merged_at=None,
            merge_commit_sha=None,
            assignee=None,
            assignees=[],
            requested_reviewers=[],
            requested_teams=[],
            head={
                "label": f"{head_repo.owner}:{pull.head_ref}",
                "ref": pull.head_ref,
                "sha": head_sha,
                "user": self._user(head_repo.owner, api_base),
                "repo": self._repo_json(head_repo, api_base, full=False),
            },
            base={
                "label": f"{repo.owner}:{pull.base_ref}",
                "ref": pull.base_ref,
                "sha": pull.base_sha,
                "user": self._user(repo.owner, api_base),
                "repo": self._repo_json(repo, api_base, full=False),
            },
            author_association=self._author_association(repo, issue.user),
            auto_merge=None,
            draft=pull.draft,
            merged=False,
            mergeable=True,
            rebaseable=True,
            mergeable_state="clean",
            merged_by=None,
            comments=len(self._issue_comments(issue)),
            review_comments=sum(
                1
                for comment in self._review_comments.values()
                if comment["repo"] == repo.full_name and comment["pull_number"] == pull.number
            ),
            maintainer_can_modify=pull.fork_full_name is not None,
            commits=1,
            additions=sum(int(item.get("additions", 0)) for item in pull.files),
            deletions=sum(int(item.get("deletions", 0)) for item in pull.files),
            changed_files=len(pull.files),
        )
        return data

    def _pull_simple_json(self, pull: FakePull, api_base: str) -> dict[str, Any]:
        """A PR as list endpoints give it: without the merge and count fields."""
        data = self._pull_json(pull, api_base)
        for key in (
            "merged",
            "mergeable",
            "rebaseable",
            "mergeable_state",
            "merged_by",
            "comments",
            "review_comments",
            "maintainer_can_modify",
            "commits",
            "additions",
            "deletions",
            "changed_files",
        ):
            data.pop(key, None)
        return data

    def _review_comment_json(self, comment: dict[str, Any], api_base: str) -> dict[str, Any]:
        repo = self._require_repo(comment["repo"])
        number, comment_id = comment["pull_number"], comment["id"]
        api = f"{api_base}/repos/{repo.full_name}/pulls/comments/{comment_id}"
        html = f"{HTML_BASE}/{repo.full_name}/pull/{number}#discussion_r{comment_id}"
        pull_url = f"{api_base}/repos/{repo.full_name}/pulls/{number}"
        data: dict[str, Any] = {
            "url": api,
            "pull_request_review_id": comment["review_id"],
            "id": comment_id,
            "node_id": _node_id("024:PullRequestReviewComment", comment_id),
            "diff_hunk": comment["diff_hunk"],
            "path": comment["path"],
            "position": comment["line"],
            "original_position": comment["line"],
            "commit_id": comment["commit_id"],
            "original_commit_id": comment["commit_id"],
            "user": self._user(comment["user"], api_base),
            "body": comment["body"],
            "created_at": comment["created_at"],
            "updated_at": comment["updated_at"],
            "html_url": html,
            "pull_request_url": pull_url,
            "author_association": self._author_association(repo, comment["user"]),
            "_links": {
                "self": {"href": api},
                "html": {"href": html},
                "pull_request": {"href": pull_url},
            },
            "start_line": None,
            "original_start_line": None,
            "start_side": None,
            "line": comment["line"],
            "original_line": comment["line"],
            "side": "RIGHT",
            "subject_type": "line" if comment["line"] is not None else "file",
        }
        if comment["in_reply_to_id"] is not None:
            data["in_reply_to_id"] = comment["in_reply_to_id"]
        return data

    def _file_json(
        self, repo: FakeRepo, pull: FakePull, item: dict[str, Any], api_base: str
    ) -> dict[str, Any]:
        data: dict[str, Any] = example("pulls/list-files")[0]
        filename = item["filename"]
        head_sha = self._head_sha(pull)
        additions = int(item.get("additions", 0))
        deletions = int(item.get("deletions", 0))
        data.update(
            sha=item.get("sha", _sha(repo.full_name, head_sha, filename)),
            filename=filename,
            status=item.get("status", "modified"),
            additions=additions,
            deletions=deletions,
            changes=additions + deletions,
            blob_url=f"{HTML_BASE}/{repo.full_name}/blob/{head_sha}/{filename}",
            raw_url=f"{HTML_BASE}/{repo.full_name}/raw/{head_sha}/{filename}",
            contents_url=f"{api_base}/repos/{repo.full_name}/contents/{filename}?ref={head_sha}",
            patch=item.get("patch", ""),
        )
        if "previous_filename" in item:
            data["previous_filename"] = item["previous_filename"]
        return data

    def _reaction_json(self, reaction: dict[str, Any], api_base: str) -> dict[str, Any]:
        data: dict[str, Any] = example("reactions/create-for-issue-comment")
        data.update(
            id=reaction["id"],
            node_id=_node_id("08:Reaction", reaction["id"]),
            user=self._user(reaction["user"], api_base),
            content=reaction["content"],
            created_at=reaction["created_at"],
        )
        return data

    def _paginate(self, call: _Call, items: list[Any]) -> _Reply:
        """One page of `items` per `per_page`/`page`, with GitHub's `Link` header."""
        query = call.request.query
        per_page = min(max(_int_or(query.get("per_page"), 30), 1), 100)
        page = max(_int_or(query.get("page"), 1), 1)
        last = max(math.ceil(len(items) / per_page), 1)

        def link(number: int, rel: str) -> str:
            params = urlencode({**query, "per_page": per_page, "page": number})
            return f'<{call.api_base}{call.request.path}?{params}>; rel="{rel}"'

        links = []
        if page > 1:
            links += [link(min(page - 1, last), "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        headers = {"link": ", ".join(links)} if links else {}
        return _Reply(200, items[(page - 1) * per_page : page * per_page], headers)

    # ------------------------------------------------------------------ App endpoints

    def _get_app(self, call: _Call) -> _Reply:
        self._verify_app_jwt(call)
        stamp = "2024-01-01T00:00:00Z"
        return _Reply(
            200,
            {
                "id": self.app_id,
                "slug": self.app_slug,
                "node_id": _node_id("03:Integration", self.app_id),
                "client_id": f"Iv1.fake{self.app_id}",
                "owner": self._user(self.app_owner, call.api_base),
                "name": self.app_slug.replace("-", " ").title(),
                "description": "A fake GitHub App",
                "external_url": f"{HTML_BASE}/{self.app_owner}",
                "html_url": f"{HTML_BASE}/apps/{self.app_slug}",
                "created_at": stamp,
                "updated_at": stamp,
                "permissions": dict(DEFAULT_PERMISSIONS),
                # As app-manifest.yml subscribes them.
                "events": [
                    "issue_comment",
                    "issues",
                    "pull_request",
                    "pull_request_review_comment",
                    "push",
                ],
                "installations_count": len(self._installations),
            },
        )

    def _get_repo_installation(self, call: _Call) -> _Reply:
        self._verify_app_jwt(call)
        for installation in self._installations.values():
            if call.full_name.lower() in (name.lower() for name in installation.repos):
                return _Reply(200, self._installation_json(installation, call.api_base))
        raise _not_found()

    def _create_token(self, call: _Call) -> _Reply:
        self._verify_app_jwt(call)
        installation = self._installations.get(call.int_param("id"))
        if installation is None:
            raise _not_found()
        body = call.body
        repos = self._narrowed_repos(installation, body)
        requested = body.get("permissions")
        permissions = dict(requested) if requested else dict(installation.permissions)
        levels = {"read": 1, "write": 2}
        for name, level in permissions.items():
            if levels.get(installation.permissions.get(name, ""), 0) < levels.get(level, 3):
                raise ApiError(
                    422, "The permissions requested are not granted to this installation."
                )
        token = IssuedToken(
            token="ghs_"
            + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36)),
            installation_id=installation.id,
            repositories=[repo.full_name for repo in repos] if repos is not None else None,
            permissions=permissions,
            expires_at=_now() + TOKEN_LIFETIME,
        )
        self._tokens[token.token] = token
        self._token_log.append(
            {
                "token": token.token,
                "installation_id": installation.id,
                "repositories": body.get("repositories"),
                "repository_ids": body.get("repository_ids"),
                "repository_full_names": copy.copy(token.repositories),
                "permissions": dict(permissions),
                "expires_at": _iso(token.expires_at),
            }
        )
        data: dict[str, Any] = example("apps/create-installation-access-token")
        data.update(
            token=token.token,
            expires_at=_iso(token.expires_at),
            permissions=permissions,
            repository_selection="selected"
            if repos is not None
            else installation.repository_selection,
        )
        if repos is None:
            data.pop("repositories", None)
        else:
            data["repositories"] = [
                self._repo_json(repo, call.api_base, full=False) for repo in repos
            ]
        return _Reply(201, data)

    def _narrowed_repos(
        self, installation: FakeInstallation, body: dict[str, Any]
    ) -> list[FakeRepo] | None:
        names = body.get("repositories")
        ids = body.get("repository_ids")
        if not names and not ids:
            return None
        installed = [self._require_repo(name) for name in installation.repos]
        chosen: list[FakeRepo] = []
        for name in names or []:
            match = [repo for repo in installed if repo.name.lower() == str(name).lower()]
            if not match:
                raise _validation_failed(
                    {"resource": "Repository", "field": "repositories", "code": "invalid"}
                )
            chosen += match
        for repo_id in ids or []:
            match = [repo for repo in installed if repo.id == repo_id]
            if not match:
                raise _validation_failed(
                    {"resource": "Repository", "field": "repository_ids", "code": "invalid"}
                )
            chosen += match
        return list({repo.id: repo for repo in chosen}.values())

    # ------------------------------------------------------------------ repo endpoints

    def _get_repo(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call)
        return _Reply(200, self._repo_json(repo, call.api_base, full=True))

    def _get_permission(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call)
        login = call.params["user"]
        role = self._role(repo, login)
        if role is None:
            if repo.private:
                raise _not_found()
            role = "read"
        data: dict[str, Any] = example("repos/get-collaborator-permission-level")
        user = self._user(login, call.api_base)
        rank = ROLES.index(role)
        user.update(
            role_name=role,  # githubkit's Collaborator model requires it; the example lacks it
            permissions={
                "admin": rank <= ROLES.index("admin"),
                "maintain": rank <= ROLES.index("maintain"),
                "push": rank <= ROLES.index("write"),
                "triage": rank <= ROLES.index("triage"),
                "pull": rank <= ROLES.index("read"),
            },
        )
        data.update(permission=LEGACY_PERMISSION[role], role_name=role, user=user)
        return _Reply(200, data)

    def _list_installations(self, call: _Call) -> _Reply:
        self._verify_app_jwt(call)
        installations = sorted(self._installations.values(), key=lambda i: i.id)
        return self._paginate(
            call, [self._installation_json(i, call.api_base) for i in installations]
        )

    def _list_installation_repos(self, call: _Call) -> _Reply:
        scheme, _, credential = call.request.headers.get("authorization", "").partition(" ")
        token = self._tokens.get(credential.strip())
        if scheme.lower() not in {"token", "bearer"} or token is None or token.expired:
            raise ApiError(401, "Bad credentials")
        installation = self._installations[token.installation_id]
        names = token.repositories if token.repositories is not None else installation.repos
        repos = [self._repo_json(self._require_repo(n), call.api_base, full=False) for n in names]
        page = self._paginate(call, repos)
        return _Reply(
            200,
            {
                "total_count": len(repos),
                "repository_selection": installation.repository_selection,
                "repositories": page.body,
            },
            page.headers,
        )

    def _create_issue(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call, ("issues",))
        body = call.body
        title = body.get("title")
        if not isinstance(title, str) or not title:
            raise _validation_failed({"resource": "Issue", "field": "title", "code": "missing"})
        numbers = [n for (name, n) in self._issues if name == repo.full_name.lower()]
        issue = FakeIssue(
            id=self._new_id(),
            repo=repo.full_name,
            number=max(numbers, default=0) + 1,
            title=title,
            body=body.get("body"),
            user=self.bot_login,
            is_pr=False,
            created_at=_now(),
        )
        self._issues[(repo.full_name.lower(), issue.number)] = issue
        return _Reply(201, self._issue_json(issue, call.api_base))

    def _update_issue(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call)
        issue = self._issue_for(call, repo)
        self._token_for_repo(call, self._issue_write_permissions(issue))
        body = call.body
        if body.get("state") not in (None, "open", "closed"):
            raise _validation_failed({"resource": "Issue", "field": "state", "code": "invalid"})
        issue.state = body.get("state") or issue.state
        issue.title = body.get("title") or issue.title
        if "body" in body:
            issue.body = body["body"]
        return _Reply(200, self._issue_json(issue, call.api_base))

    def _get_issue(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call)
        return _Reply(200, self._issue_json(self._issue_for(call, repo), call.api_base))

    def _list_comments(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call)
        issue = self._issue_for(call, repo)
        comments = sorted(self._issue_comments(issue), key=lambda comment: comment["id"])
        return self._paginate(call, [self._comment_json(c, call.api_base) for c in comments])

    def _create_comment(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call)
        issue = self._issue_for(call, repo)
        self._token_for_repo(call, self._issue_write_permissions(issue))
        body = _comment_body(call)
        comment_id = self._store_comment(issue, body, self.bot_login)
        return _Reply(201, self._comment_json(self._comments[comment_id], call.api_base))

    def _get_comment(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call)
        return _Reply(200, self._comment_json(self._comment_for(call, repo), call.api_base))

    def _update_comment(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call)
        comment = self._comment_for(call, repo)
        issue = self._require_issue(repo.full_name, comment["issue_number"])
        self._token_for_repo(call, self._issue_write_permissions(issue))
        body = _comment_body(call)
        comment.update(body=body, updated_at=_iso(_now()))
        comment["history"].append(body)
        return _Reply(200, self._comment_json(comment, call.api_base))

    def _react_comment(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call)
        comment = self._comment_for(call, repo)
        issue = self._require_issue(repo.full_name, comment["issue_number"])
        self._token_for_repo(call, self._issue_write_permissions(issue))
        return self._react(call, repo, "issue_comment", comment["id"])

    def _react_issue(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call)
        issue = self._issue_for(call, repo)
        self._token_for_repo(call, self._issue_write_permissions(issue))
        return self._react(call, repo, "issue", issue.number)

    def _react_review_comment(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call)
        comment = self._review_comments.get(call.int_param("id"))
        if comment is None or comment["repo"] != repo.full_name:
            raise _not_found()
        self._token_for_repo(call, ("pull_requests",))
        return self._react(call, repo, "pull_request_review_comment", comment["id"])

    def _react(self, call: _Call, repo: FakeRepo, kind: str, target_id: int) -> _Reply:
        content = call.body.get("content")
        if content not in REACTIONS:
            raise _validation_failed(
                {"resource": "Reaction", "field": "content", "code": "invalid"}
            )
        for reaction in self._reactions:
            if (reaction["repo"], reaction["target_kind"], reaction["target_id"]) == (
                repo.full_name,
                kind,
                target_id,
            ) and (reaction["content"], reaction["user"]) == (content, self.bot_login):
                return _Reply(200, self._reaction_json(reaction, call.api_base))
        reaction = {
            "id": self._new_id(),
            "target_kind": kind,
            "target_id": target_id,
            "content": content,
            "repo": repo.full_name,
            "user": self.bot_login,
            "created_at": _iso(_now()),
        }
        self._reactions.append(reaction)
        return _Reply(201, self._reaction_json(reaction, call.api_base))

    def _pull_for(self, call: _Call, repo: FakeRepo) -> FakePull:
        pull = self._pulls.get((repo.full_name.lower(), call.int_param("n")))
        if pull is None:
            raise _not_found()
        return pull

    def _get_pull(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call)
        return _Reply(200, self._pull_json(self._pull_for(call, repo), call.api_base))

    def _list_pull_files(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call)
        pull = self._pull_for(call, repo)
        return self._paginate(
            call, [self._file_json(repo, pull, item, call.api_base) for item in pull.files]
        )

    def _list_pulls(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call)
        query = call.request.query
        state = query.get("state", "open")
        if state not in {"open", "closed", "all"}:
            raise _validation_failed({"resource": "Search", "field": "state", "code": "invalid"})
        # GitHub ignores a `head` without its "owner:" part (and so returns every PR).
        head_owner, _, head_ref = query.get("head", "").rpartition(":")

        def wanted(pull: FakePull) -> bool:
            issue = self._require_issue(pull.repo, pull.number)
            head_repo = self._require_repo(pull.fork_full_name or pull.repo)
            head = (head_repo.owner.lower(), pull.head_ref)
            return (
                pull.repo == repo.full_name
                and state in {"all", issue.state}
                and query.get("base", pull.base_ref) == pull.base_ref
                and (not head_owner or (head_owner.lower(), head_ref) == head)
            )

        pulls = sorted(
            filter(wanted, self._pulls.values()), key=lambda pull: (pull.created_at, pull.number)
        )
        default_direction = "desc" if query.get("sort", "created") == "created" else "asc"
        if query.get("direction", default_direction) == "desc":
            pulls.reverse()
        return self._paginate(call, [self._pull_simple_json(pull, call.api_base) for pull in pulls])

    def _create_pull(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call, ("pull_requests",))
        body = call.body
        for name in ("title", "head", "base"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise _validation_failed(
                    {"resource": "PullRequest", "field": name, "code": "missing_field"}
                )
        head_owner, _, head_ref = body["head"].rpartition(":")
        base_ref = body["base"]
        fork = None
        if head_owner and head_owner.lower() != repo.owner.lower():
            fork = f"{head_owner}/{repo.name}"
        head_sha, base_sha = self._pull_tips(repo, fork, head_ref, base_ref)
        for pull in self._pulls.values():
            issue = self._issues[(pull.repo.lower(), pull.number)]
            if (
                pull.repo == repo.full_name
                and issue.state == "open"
                and (pull.head_ref, pull.base_ref, pull.fork_full_name)
                == (head_ref, base_ref, fork)
            ):
                raise _validation_failed(
                    {
                        "resource": "PullRequest",
                        "code": "custom",
                        "message": "A pull request already exists for "
                        f"{head_owner or repo.owner}:{head_ref}.",
                    }
                )
        base_git = self._git_repos.get(repo.full_name.lower())
        if (fork is None and head_ref == base_ref) or (
            base_git is not None and base_sha and base_git.is_ancestor(head_sha, base_sha)
        ):
            raise _validation_failed(
                {
                    "resource": "PullRequest",
                    "code": "custom",
                    "message": f"No commits between {base_ref} and {head_ref}",
                }
            )
        number = 1 + max(
            (number for name, number in self._issues if name == repo.full_name.lower()), default=0
        )
        self.add_pull(
            repo.full_name,
            number,
            head_ref,
            head_sha,
            base_ref,
            self.bot_login,
            draft=bool(body.get("draft", False)),
            fork_full_name=fork,
            title=body["title"],
            body=body.get("body"),
            base_sha=base_sha,
        )
        self._created_pulls.append(
            {
                "repo": repo.full_name,
                "number": number,
                "title": body["title"],
                "body": body.get("body"),
                "head": body["head"],
                "base": base_ref,
                "draft": bool(body.get("draft", False)),
                "user": self.bot_login,
            }
        )
        pull = self._pulls[(repo.full_name.lower(), number)]
        self._sync_pull_ref(pull)
        return _Reply(201, self._pull_json(pull, call.api_base))

    def _pull_tips(
        self, repo: FakeRepo, fork: str | None, head_ref: str, base_ref: str
    ) -> tuple[str, str | None]:
        """(head sha, base sha) of a new PR: real when the repos have bare repositories (422 if
        a branch is missing there), made up otherwise (base None: `add_pull` makes one)."""
        base_git = self._git_repos.get(repo.full_name.lower())
        if base_git is None:
            return _sha(fork or repo.full_name, head_ref), None
        base_sha = self._branch_tip(repo.full_name, base_ref)
        if base_sha is None:
            raise _validation_failed(
                {"resource": "PullRequest", "field": "base", "code": "invalid"}
            )
        head_repo = fork or repo.full_name
        if head_repo.lower() not in self._git_repos:  # a fork without a bare repository
            return _sha(head_repo, head_ref), base_sha
        head_sha = self._branch_tip(head_repo, head_ref)
        if head_sha is None:
            raise _validation_failed(
                {"resource": "PullRequest", "field": "head", "code": "invalid"}
            )
        if fork is not None:  # so that the ancestry check sees the fork's commits
            fork_path = self._git_repos[fork.lower()].path
            base_git.output(
                "fetch", "--quiet", "--no-tags", str(fork_path), f"refs/heads/{head_ref}"
            )
        return head_sha, base_sha

    def _reply_review_comment(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call, ("pull_requests",))
        pull = self._pull_for(call, repo)
        parent = self._review_comments.get(call.int_param("id"))
        if parent is None or (parent["repo"], parent["pull_number"]) != (
            repo.full_name,
            pull.number,
        ):
            raise _not_found()
        body = call.body.get("body")
        if not isinstance(body, str) or not body:
            raise _validation_failed(
                {"resource": "PullRequestReviewComment", "field": "body", "code": "missing_field"}
            )
        comment_id = self.add_review_comment(
            repo.full_name,
            pull.number,
            body,
            self.bot_login,
            path=parent["path"],
            line=parent["line"],
            diff_hunk=parent["diff_hunk"],
            commit_id=parent["commit_id"],
            in_reply_to_id=parent["in_reply_to_id"] or parent["id"],  # replies join the thread
        )
        return _Reply(
            201, self._review_comment_json(self._review_comments[comment_id], call.api_base)
        )

    def _create_review(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call, ("pull_requests",))
        pull = self._pull_for(call, repo)
        issue = self._require_issue(repo.full_name, pull.number)
        body = call.body
        event = body.get("event")
        if event is not None and event not in REVIEW_STATES:
            raise ApiError(422, "Unprocessable Entity", errors=[f"Invalid event {event!r}"])
        if event in {"REQUEST_CHANGES", "COMMENT"} and not body.get("body"):
            raise ApiError(
                422, "Unprocessable Entity", errors=[f"Review body is required for {event}"]
            )
        if event in {"APPROVE", "REQUEST_CHANGES"} and issue.user == self.bot_login:
            verb = "approve" if event == "APPROVE" else "request changes on"
            raise ApiError(
                422, "Unprocessable Entity", errors=[f"Can not {verb} your own pull request"]
            )
        state = REVIEW_STATES.get(event or "", "PENDING")
        review_id = self._new_id()
        commit_id = body.get("commit_id") or self._head_sha(pull)
        self._reviews.append(
            {
                "id": review_id,
                "repo": repo.full_name,
                "pull_number": pull.number,
                "body": body.get("body", ""),
                "event": event,
                "state": state,
                "comments": copy.deepcopy(body.get("comments", [])),
                "commit_id": commit_id,
            }
        )
        html = f"{HTML_BASE}/{repo.full_name}/pull/{pull.number}#pullrequestreview-{review_id}"
        api = f"{call.api_base}/repos/{repo.full_name}/pulls/{pull.number}"
        data: dict[str, Any] = example("pulls/create-review")
        data.update(
            id=review_id,
            node_id=_node_id("017:PullRequestReview", review_id),
            user=self._user(self.bot_login, call.api_base),
            body=body.get("body", ""),
            state=state,
            html_url=html,
            pull_request_url=api,
            _links={"html": {"href": html}, "pull_request": {"href": api}},
            submitted_at=None if state == "PENDING" else _iso(_now()),
            commit_id=commit_id,
            author_association=self._author_association(repo, self.bot_login),
        )
        if state == "PENDING":
            data.pop("submitted_at")
        return _Reply(200, data)


def _int_or(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _comment_body(call: _Call) -> str:
    body = call.body.get("body")
    if not isinstance(body, str) or not body:
        raise _validation_failed(
            {"resource": "IssueComment", "field": "body", "code": "missing_field"}
        )
    if len(body) > MAX_BODY:
        raise _validation_failed(
            {
                "resource": "IssueComment",
                "field": "body",
                "code": "custom",
                "message": f"Body is too long (maximum is {MAX_BODY} characters)",
            }
        )
    return body
