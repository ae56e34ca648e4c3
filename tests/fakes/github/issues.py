"""Issues and their conversation comments: seeding, the issue and comment endpoints, shapes."""

from __future__ import annotations

import copy
from typing import Any

from tests.fakes.github.calls import _Call, _not_found, _Reply, _validation_failed
from tests.fakes.github.repos import ReposMixin
from tests.fakes.github.shapes import (
    EXAMPLE_API_BASE,
    HTML_BASE,
    _iso,
    _node_id,
    _now,
    _replace_strings,
    example,
)
from tests.fakes.github.state import FakeIssue, FakeRepo

MAX_BODY = 65536


class IssuesMixin(ReposMixin):
    """Issues (a PR's issue too) and their comments; unknown ones answer 404 as on GitHub."""

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
    def comments(self) -> dict[int, dict[str, Any]]:
        """id → {id, repo, issue_number, body, user, created_at, updated_at, history}.

        `history` lists every body the comment had, oldest first (the last one is `body`).
        """
        with self._lock:
            return copy.deepcopy(self._comments)

    # ------------------------------------------------------------------ endpoints

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

    def _list_issues(self, call: _Call) -> _Reply:
        """A repository's issues and pull requests (as issues), newest first unless asked."""
        repo, _ = self._token_for_repo(call)
        query = call.request.query
        state = query.get("state", "open")
        sort = query.get("sort", "created")
        direction = query.get("direction", "desc")
        if state not in {"open", "closed", "all"}:
            raise _validation_failed({"resource": "Issue", "field": "state", "code": "invalid"})
        if sort != "created" or direction not in {"asc", "desc"}:  # the fake orders by creation
            raise _validation_failed({"resource": "Issue", "field": "sort", "code": "invalid"})
        issues = sorted(
            (
                issue
                for issue in self._issues.values()
                if issue.repo == repo.full_name and state in {"all", issue.state}
            ),
            key=lambda issue: (issue.created_at, issue.number),
            reverse=direction == "desc",
        )
        return self._paginate(call, [self._issue_json(issue, call.api_base) for issue in issues])

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

    # ------------------------------------------------------------------ helpers

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

    # ------------------------------------------------------------------ renderers

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
