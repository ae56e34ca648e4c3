"""FakeGitHub assembled from its resource mixins: routing, recording, failure injection, ASGI."""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import re
import time
import traceback
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from tests.fakes.github.apps import AppsMixin
from tests.fakes.github.calls import _R, DOCS, ApiError, Handler, RecordedRequest, _Call, _Reply
from tests.fakes.github.checks import ChecksMixin
from tests.fakes.github.compare import CompareMixin
from tests.fakes.github.reactions import ReactionsMixin
from tests.fakes.github.review_threads import ReviewThreadsMixin
from tests.fakes.github.webhooks import WebhookSeedingMixin
from tests.fakes.manifest import convert_manifest_code
from tests.servers import FakeServer


@dataclass
class _Failure:
    method: str
    path: re.Pattern[str]
    status: int
    headers: dict[str, str]
    body: Any
    times: int
    applied: bool  # the request is carried out, and only its answer is the failure

    def reply(self) -> _Reply:
        body = self.body
        if body is None:
            body = {"message": f"Injected {self.status}", "documentation_url": DOCS}
        return _Reply(self.status, body, dict(self.headers))


@dataclass
class _Delay:
    method: str
    path: re.Pattern[str]
    seconds: float
    times: int | None


class FakeGitHub(
    AppsMixin,
    ChecksMixin,
    ReactionsMixin,
    ReviewThreadsMixin,
    CompareMixin,
    WebhookSeedingMixin,
    FakeServer,
):
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

    Inside `with fake.serving():`, `url` is the API base URL (use it as `GITHUB_API_URL`).
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
        super().__init__(app_id, public_key_pem, app_slug=app_slug, app_owner=app_owner)
        self._requests: list[RecordedRequest] = []
        self._failures: list[_Failure] = []
        self._delays: list[_Delay] = []
        self._events = itertools.count(1)  # arrivals and answers, in order
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
                ("GET", rf"{_R}/issues", self._list_issues),
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
                ("GET", rf"{_R}/pulls/comments/(?P<id>\d+)", self._get_review_comment),
                ("GET", rf"{_R}/pulls/(?P<n>\d+)", self._get_pull),
                ("GET", rf"{_R}/pulls/(?P<n>\d+)/files", self._list_pull_files),
                ("GET", rf"{_R}/pulls", self._list_pulls),
                ("POST", rf"{_R}/pulls", self._create_pull),
                ("GET", rf"{_R}/pulls/(?P<n>\d+)/reviews", self._list_reviews),
                ("POST", rf"{_R}/pulls/(?P<n>\d+)/reviews", self._create_review),
                ("GET", rf"{_R}/pulls/(?P<n>\d+)/comments", self._list_review_comments),
                (
                    "POST",
                    rf"{_R}/pulls/(?P<n>\d+)/comments/(?P<id>\d+)/replies",
                    self._reply_review_comment,
                ),
                *self._git_routes(),
                *self._checks_routes(),
                *self._compare_routes(),
                *self._review_thread_routes(),
            ]
        ]

    # ------------------------------------------------------------------ failure injection

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        body: Any = None,
        times: int = 1,
        applied: bool = False,
    ) -> None:
        """Answer the next `times` requests matching (`re.search` on the path) with `status`.

        With `applied`, each request is first carried out as usual (a comment is posted, a ref
        created) and only its answer is replaced: GitHub's 502 after it did the write.
        """
        with self._lock:
            self._failures.append(
                _Failure(
                    method=method.upper(),
                    path=re.compile(path_regex),
                    status=status,
                    headers={key.lower(): value for key, value in (headers or {}).items()},
                    body=body,
                    times=times,
                    applied=applied,
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
            at=time.time(),
        )
        with self._lock:
            record.arrived = next(self._events)
            self._requests.append(record)
        api_base = f"{request.url.scheme}://{request.url.netloc}"
        if (seconds := self._take_delay(record)) is not None:
            await asyncio.sleep(seconds)
        reply = self._dispatch(record, raw, api_base)
        with self._lock:
            record.status = reply.status
            record.answered = next(self._events)
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
            failure = self._take_failure(record)
            if failure is not None and not failure.applied:
                return failure.reply()
            if not parsed:
                return ApiError(400, "Problems parsing JSON").reply
            reply = self._route(record, api_base)
            return failure.reply() if failure is not None else reply

    def _route(self, record: RecordedRequest, api_base: str) -> _Reply:
        """The handler's answer to a request (under the lock), or 501 for an unknown route."""
        with self._lock:
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

    def _take_failure(self, record: RecordedRequest) -> _Failure | None:
        for failure in self._failures:
            if failure.method == record.method and failure.path.search(record.path):
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
                return failure
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
