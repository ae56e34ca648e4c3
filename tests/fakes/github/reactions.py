"""Reactions the bot adds to issues, issue comments and PR review comments."""

from __future__ import annotations

import copy
from typing import Any

from tests.fakes.github.calls import _Call, _not_found, _Reply, _validation_failed
from tests.fakes.github.issues import IssuesMixin
from tests.fakes.github.shapes import _iso, _node_id, _now, example
from tests.fakes.github.state import FakeRepo

REACTIONS = frozenset({"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"})


class ReactionsMixin(IssuesMixin):
    """`POST .../reactions` on the three targets; a repeated reaction answers 200 with the first."""

    @property
    def reactions(self) -> list[dict[str, Any]]:
        """Dicts {id, target_kind, target_id, content, repo, user}; target_kind is one of
        issue_comment, issue, pull_request_review_comment."""
        with self._lock:
            return copy.deepcopy(self._reactions)

    # ------------------------------------------------------------------ endpoints

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

    # ------------------------------------------------------------------ renderers

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
