"""Git Data, contents and branch endpoints answered from a real bare repository, and PR refs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fakes.git_data import BareRepo, GitDataApi, GitDataError, GitRequest
from tests.fakes.github.calls import _R, ApiError, Handler, _Call, _Reply
from tests.fakes.github.repos import ReposMixin
from tests.fakes.github.state import FakePull, FakeRepo

GitOperation = Callable[[GitDataApi, GitRequest], tuple[int, Any]]


class GitMixin(ReposMixin):
    """Repos backed by a bare repository (`attach_git`), whose branches PRs then follow."""

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

    # ------------------------------------------------------------------ endpoints

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

    # ------------------------------------------------------------------ branches and PR refs

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
