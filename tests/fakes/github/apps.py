"""The App and its installations: `GET /app`, installation lookups and installation repos."""

from __future__ import annotations

from typing import Any

from tests.fakes.github.calls import _Call, _not_found, _Reply
from tests.fakes.github.repos import ReposMixin
from tests.fakes.github.shapes import HTML_BASE, _iso, _node_id, _now, example
from tests.fakes.github.state import FakeInstallation

DEFAULT_PERMISSIONS: dict[str, str] = {
    "contents": "write",
    "issues": "write",
    "pull_requests": "write",
    "checks": "write",
    "metadata": "read",
}


class AppsMixin(ReposMixin):
    """Installations of the App on accounts, and the App endpoints that list and find them."""

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

    # ------------------------------------------------------------------ endpoints

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
                    "check_run",
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

    def _list_installations(self, call: _Call) -> _Reply:
        self._verify_app_jwt(call)
        installations = sorted(self._installations.values(), key=lambda i: i.id)
        return self._paginate(
            call, [self._installation_json(i, call.api_base) for i in installations]
        )

    def _list_installation_repos(self, call: _Call) -> _Reply:
        token = self._live_token(call)
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

    # ------------------------------------------------------------------ renderers

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
