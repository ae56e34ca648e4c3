"""PR reviews and review (diff) comments: seeding, replying in a thread, submitting a review."""

from __future__ import annotations

import copy
from typing import Any

from tests.fakes.github.calls import ApiError, _Call, _not_found, _Reply, _validation_failed
from tests.fakes.github.pulls import PullsMixin
from tests.fakes.github.shapes import HTML_BASE, _iso, _node_id, _now, _sha, example

REVIEW_STATES = {
    "APPROVE": "APPROVED",
    "REQUEST_CHANGES": "CHANGES_REQUESTED",
    "COMMENT": "COMMENTED",
}


class ReviewsMixin(PullsMixin):
    """Review comments (seeded, or the bot's replies) and the reviews the bot submits."""

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

    @property
    def review_comments(self) -> dict[int, dict[str, Any]]:
        """id → {id, repo, pull_number, body, user, path, line, diff_hunk, commit_id,
        in_reply_to_id, review_id, created_at, updated_at}: seeded ones and replies."""
        with self._lock:
            return copy.deepcopy(self._review_comments)

    @property
    def reviews(self) -> list[dict[str, Any]]:
        """Reviews submitted: {id, repo, pull_number, body, event, state, comments, commit_id,
        user, submitted_at}."""
        with self._lock:
            return copy.deepcopy(self._reviews)

    # ------------------------------------------------------------------ endpoints

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
        review = {
            "id": self._new_id(),
            "repo": repo.full_name,
            "pull_number": pull.number,
            "body": body.get("body", ""),
            "event": event,
            "state": state,
            "comments": copy.deepcopy(body.get("comments", [])),
            "commit_id": body.get("commit_id") or self._head_sha(pull),
            "user": self.bot_login,
            "submitted_at": None if state == "PENDING" else _iso(_now()),
        }
        self._reviews.append(review)
        for item in review["comments"]:  # each inline comment starts a thread, as on GitHub
            made = self.add_review_comment(
                repo.full_name,
                pull.number,
                item.get("body", ""),
                self.bot_login,
                path=item.get("path", ""),
                line=item.get("line"),
                diff_hunk="",
                commit_id=review["commit_id"],
            )
            self._review_comments[made]["review_id"] = review["id"]
        return _Reply(200, self._review_json(review, call.api_base))

    def _list_reviews(self, call: _Call) -> _Reply:
        """A pull request's reviews, oldest first (pending ones only to their author)."""
        repo, _ = self._token_for_repo(call)
        pull = self._pull_for(call, repo)
        reviews = [
            review
            for review in self._reviews
            if (review["repo"], review["pull_number"]) == (repo.full_name, pull.number)
            and (review["state"] != "PENDING" or review["user"] == self.bot_login)
        ]
        return self._paginate(call, [self._review_json(r, call.api_base) for r in reviews])

    def _list_review_comments(self, call: _Call) -> _Reply:
        """A pull request's review (diff) comments, replies included, oldest first."""
        repo, _ = self._token_for_repo(call)
        pull = self._pull_for(call, repo)
        comments = sorted(
            (
                comment
                for comment in self._review_comments.values()
                if (comment["repo"], comment["pull_number"]) == (repo.full_name, pull.number)
            ),
            key=lambda comment: comment["id"],
        )
        return self._paginate(call, [self._review_comment_json(c, call.api_base) for c in comments])

    def _get_review_comment(self, call: _Call) -> _Reply:
        """One review (diff) comment: GET /repos/{owner}/{repo}/pulls/comments/{comment_id}."""
        repo, _ = self._token_for_repo(call)
        comment = self._review_comments.get(call.int_param("id"))
        if comment is None or comment["repo"] != repo.full_name:
            raise _not_found()
        return _Reply(200, self._review_comment_json(comment, call.api_base))

    # ------------------------------------------------------------------ renderers

    def _review_json(self, review: dict[str, Any], api_base: str) -> dict[str, Any]:
        repo = self._require_repo(review["repo"])
        number, review_id = review["pull_number"], review["id"]
        html = f"{HTML_BASE}/{repo.full_name}/pull/{number}#pullrequestreview-{review_id}"
        api = f"{api_base}/repos/{repo.full_name}/pulls/{number}"
        data: dict[str, Any] = example("pulls/create-review")
        data.update(
            id=review_id,
            node_id=_node_id("017:PullRequestReview", review_id),
            user=self._user(review["user"], api_base),
            body=review["body"],
            state=review["state"],
            html_url=html,
            pull_request_url=api,
            _links={"html": {"href": html}, "pull_request": {"href": api}},
            submitted_at=review["submitted_at"],
            commit_id=review["commit_id"],
            author_association=self._author_association(repo, review["user"]),
        )
        if review["submitted_at"] is None:
            data.pop("submitted_at")
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
