"""Repositories and collaborators: registering repos, `GET /repos/{o}/{r}`, permission levels."""

from __future__ import annotations

from typing import Any

from tests.fakes.github.auth import AuthMixin
from tests.fakes.github.calls import _Call, _not_found, _Reply
from tests.fakes.github.shapes import _now, example
from tests.fakes.github.state import FakeRepo

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


class ReposMixin(AuthMixin):
    """Repos (ids count up, looked up case-insensitively) and users' roles on them."""

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

    def set_permission(self, full_name: str, username: str, role: str) -> None:
        """Give `username` a role on the repo: admin, maintain, write, triage, read or none."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        with self._lock:
            self._roles[(full_name.lower(), username.lower())] = role

    def set_clone_url(self, full_name: str, url: str) -> None:
        """Set the repo's `clone_url` (registering the repo if unknown)."""
        with self._lock:
            repo = self._repos.get(full_name.lower())
            if repo is None:
                self.add_repo(full_name, clone_url=url)
            else:
                repo.clone_url = url

    # ------------------------------------------------------------------ endpoints

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
