"""Pull requests: seeding, get/list/create and changed files, following bare repos' branches."""

from __future__ import annotations

import copy
from typing import Any

from tests.fakes.github.calls import _Call, _not_found, _Reply, _validation_failed
from tests.fakes.github.git import GitMixin
from tests.fakes.github.issues import IssuesMixin
from tests.fakes.github.shapes import (
    EXAMPLE_API_BASE,
    HTML_BASE,
    _iso,
    _node_id,
    _now,
    _replace_strings,
    _sha,
    example,
)
from tests.fakes.github.state import FakePull, FakeRepo

MAX_LISTED_FILES = 3000  # `GET /pulls/{n}/files` stops here (GitHub's documented limit)


class PullsMixin(IssuesMixin, GitMixin):
    """PRs and their issues; on a repo with a bare repository they need real head/base branches."""

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

    @property
    def created_pulls(self) -> list[dict[str, Any]]:
        """PRs opened through the API: {repo, number, title, body, head, base, draft, user}."""
        with self._lock:
            return copy.deepcopy(self._created_pulls)

    # ------------------------------------------------------------------ endpoints

    def _get_pull(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call)
        return _Reply(200, self._pull_json(self._pull_for(call, repo), call.api_base))

    def _list_pull_files(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call)
        pull = self._pull_for(call, repo)
        listed = pull.files[:MAX_LISTED_FILES]  # GitHub lists no more, whatever the PR holds
        return self._paginate(
            call, [self._file_json(repo, pull, item, call.api_base) for item in listed]
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

    def _pull_for(self, call: _Call, repo: FakeRepo) -> FakePull:
        pull = self._pulls.get((repo.full_name.lower(), call.int_param("n")))
        if pull is None:
            raise _not_found()
        return pull

    # ------------------------------------------------------------------ renderers

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
