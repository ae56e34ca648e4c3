"""Review threads as GitHub's GraphQL API serves them (`reviewThreads`, `resolveReviewThread`),
editing a review's body, and what humans do to threads (resolve, react) for tests to seed.

Docs: https://docs.github.com/graphql/reference/objects#pullrequestreviewthread,
https://docs.github.com/graphql/reference/mutations#resolvereviewthread,
https://docs.github.com/rest/pulls/reviews#update-a-review-for-a-pull-request
"""

from __future__ import annotations

import base64
import copy
from typing import Any

from tests.fakes.github.calls import _R, ApiError, Handler, RecordedRequest, _Call, _Reply
from tests.fakes.github.reviews import ReviewsMixin
from tests.fakes.github.shapes import _iso, _now

# REST reaction content → GraphQL ReactionContent
REACTION_CONTENT = {
    "+1": "THUMBS_UP",
    "-1": "THUMBS_DOWN",
    "laugh": "LAUGH",
    "confused": "CONFUSED",
    "heart": "HEART",
    "hooray": "HOORAY",
    "rocket": "ROCKET",
    "eyes": "EYES",
}


def thread_id(root_comment_id: int) -> str:
    """The GraphQL node id of the thread a root review comment starts."""
    return "PRRT_" + base64.b64encode(f"thread:{root_comment_id}".encode()).decode()


class ReviewThreadsMixin(ReviewsMixin):
    """Threads are the review comments grouped by their root; resolving one is remembered."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._resolved: dict[int, str] = {}  # root review comment id → who resolved its thread

    # ------------------------------------------------------------------ seeding, inspection

    def resolve_thread(self, root_comment_id: int, by: str) -> None:
        """`by` resolves the thread of a root review comment in GitHub's UI."""
        with self._lock:
            self._resolved[root_comment_id] = by

    def react_as(self, comment_id: int, content: str, user: str) -> None:
        """`user` reacts to a review comment (the REST endpoint only reacts as the bot)."""
        with self._lock:
            self._reactions.append(
                {
                    "id": self._new_id(),
                    "target_kind": "pull_request_review_comment",
                    "target_id": comment_id,
                    "content": content,
                    "repo": self._review_comments[comment_id]["repo"],
                    "user": user,
                    "created_at": _iso(_now()),
                }
            )

    def set_pull_files(self, full_name: str, number: int, files: list[dict[str, Any]]) -> None:
        """What `GET /pulls/{n}/files` lists after a push."""
        with self._lock:
            self._pulls[(full_name.lower(), number)].files = [dict(item) for item in files]

    @property
    def resolved_threads(self) -> dict[int, str]:
        """root review comment id → who resolved its thread."""
        with self._lock:
            return dict(self._resolved)

    def review_edits(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "PUT" and "/reviews/" in r.path]

    # ------------------------------------------------------------------ endpoints

    def _review_thread_routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("POST", r"/graphql", self._graphql),
            ("PUT", rf"{_R}/pulls/(?P<n>\d+)/reviews/(?P<id>\d+)", self._update_review),
        ]

    def _update_review(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call, ("pull_requests",))
        pull = self._pull_for(call, repo)
        body = call.body.get("body")
        if not isinstance(body, str) or not body:
            raise ApiError(422, "Unprocessable Entity", errors=["Body can't be blank"])
        for review in self._reviews:
            if review["id"] == call.int_param("id") and (
                review["repo"],
                review["pull_number"],
            ) == (repo.full_name, pull.number):
                if review["user"] != self.bot_login:
                    raise ApiError(403, "Resource not accessible by integration")
                review["body"] = body
                return _Reply(200, self._review_json(review, call.api_base))
        raise ApiError(404, "Not Found")

    def _graphql(self, call: _Call) -> _Reply:
        query = call.body.get("query")
        variables = call.body.get("variables") or {}
        if not isinstance(query, str) or not isinstance(variables, dict):
            raise ApiError(400, "Problems parsing JSON")
        if "resolveReviewThread" in query:
            return self._gql_resolve(call, variables)
        if "reviewThreads" in query:
            return self._gql_threads(call, variables)
        self._unexpected.append(f"GraphQL operation not implemented: {query[:200]}")
        return _gql_error("NOT_IMPLEMENTED", "FakeGitHub does not implement this operation")

    def _gql_call(self, call: _Call, full_name: str) -> _Call:
        owner, _, name = full_name.partition("/")
        return _Call(call.request, {"owner": owner, "repo": name}, call.api_base)

    def _gql_threads(self, call: _Call, variables: dict[str, Any]) -> _Reply:
        full_name = f"{variables.get('owner')}/{variables.get('name')}"
        try:
            repo, _ = self._token_for_repo(self._gql_call(call, full_name))
        except ApiError as error:
            if error.reply.status == 401:
                raise
            return _gql_error("NOT_FOUND", f"Could not resolve to a Repository '{full_name}'.")
        pull = self._pulls.get((repo.full_name.lower(), int(variables.get("number", 0))))
        if pull is None:
            return _gql_error("NOT_FOUND", "Could not resolve to a PullRequest.")
        comments = sorted(
            (
                c
                for c in self._review_comments.values()
                if (c["repo"], c["pull_number"]) == (repo.full_name, pull.number)
            ),
            key=lambda c: c["id"],
        )
        roots = [c for c in comments if c["in_reply_to_id"] is None]
        start = int(variables.get("after") or 0)
        page = roots[start : start + 100]
        nodes = []
        for root in page:
            thread = [root, *(c for c in comments if c["in_reply_to_id"] == root["id"])]
            resolver = self._resolved.get(root["id"])
            nodes.append(
                {
                    "id": thread_id(root["id"]),
                    "isResolved": resolver is not None,
                    "isOutdated": False,
                    "path": root["path"],
                    "line": root["line"],
                    "resolvedBy": None if resolver is None else {"login": _gql_login(resolver)},
                    "comments": {"nodes": [self._gql_comment(c) for c in thread[:100]]},
                }
            )
        more = start + 100 < len(roots)
        info = {"hasNextPage": more, "endCursor": str(start + 100) if more else None}
        threads = {"pageInfo": info, "nodes": nodes}
        return _Reply(200, {"data": {"repository": {"pullRequest": {"reviewThreads": threads}}}})

    def _gql_comment(self, comment: dict[str, Any]) -> dict[str, Any]:
        counts = dict.fromkeys(REACTION_CONTENT.values(), 0)
        for reaction in self._reactions:
            if (reaction["target_kind"], reaction["target_id"]) == (
                "pull_request_review_comment",
                comment["id"],
            ):
                counts[REACTION_CONTENT[reaction["content"]]] += 1
        user = comment["user"]
        return {
            "databaseId": comment["id"],
            "body": comment["body"],
            "author": {
                "__typename": "Bot" if user.endswith("[bot]") else "User",
                "login": _gql_login(user),
            },
            "reactionGroups": [
                {"content": content, "reactors": {"totalCount": count}}
                for content, count in counts.items()
            ],
        }

    def _gql_resolve(self, call: _Call, variables: dict[str, Any]) -> _Reply:
        wanted = variables.get("threadId")
        for root_id, comment in self._review_comments.items():
            if comment["in_reply_to_id"] is None and thread_id(root_id) == wanted:
                try:
                    self._token_for_repo(self._gql_call(call, comment["repo"]), ("pull_requests",))
                except ApiError as error:
                    if error.reply.status == 401:
                        raise
                    return _gql_error("FORBIDDEN", "Resource not accessible by integration")
                self._resolved.setdefault(root_id, self.bot_login)
                thread = {"id": wanted, "isResolved": True}
                return _Reply(200, {"data": {"resolveReviewThread": {"thread": thread}}})
        return _gql_error(
            "NOT_FOUND", f"Could not resolve to a node with the global id of '{wanted}'"
        )

    @property
    def review_threads_snapshot(self) -> list[dict[str, Any]]:
        """Each root review comment with its replies and resolver, for assertions."""
        with self._lock:
            comments = copy.deepcopy(self._review_comments)
            return [
                {
                    "root": root,
                    "replies": [c for c in comments.values() if c["in_reply_to_id"] == root["id"]],
                    "resolved_by": self._resolved.get(root["id"]),
                }
                for root in comments.values()
                if root["in_reply_to_id"] is None
            ]


def _gql_login(login: str) -> str:
    """GraphQL names an App's bot actor by its slug, without REST's `[bot]`."""
    return login.removesuffix("[bot]")


def _gql_error(kind: str, message: str) -> _Reply:
    return _Reply(200, {"data": None, "errors": [{"type": kind, "message": message}]})
