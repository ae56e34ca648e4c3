"""One factory for GitHub clients: App or installation auth, retries that honour rate limits, and
content writes paced per installation as GitHub's secondary limits ask (`bot.github.pacing`).

Docs: https://docs.github.com/rest/using-the-rest-api/best-practices-for-using-the-rest-api
"""

from __future__ import annotations

import logging
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from datetime import timedelta
from typing import Any

import httpx
from githubkit import GitHub
from githubkit.auth.base import BaseAuthStrategy
from githubkit.exception import (
    GitHubException,
    RateLimitExceeded,
    RequestError,
    RequestFailed,
    RequestTimeout,
)
from githubkit.retry import RetryOption
from githubkit.throttling import BaseThrottler
from pydantic import BaseModel
from redis.asyncio import Redis

from bot.config import Settings
from bot.github.auth import AppJwt, InstallationToken, TokenCache, parse_expiry
from bot.github.pacing import RateLimitBlocker, WritePacer
from bot.runs.metrics import RateLimitRecorder

log = logging.getLogger(__name__)

INSTALLATION_MEMORY_SECONDS = 60.0


class _Bearer(httpx.Auth):
    def __init__(self, token: Callable[[], str]) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token()}"
        yield request


class SharedTransport(httpx.AsyncBaseTransport):
    """One connection pool under every client the App makes: TLS is set up once and connections
    to GitHub are kept alive (githubkit makes a new httpx client, and so a new pool and SSL
    context, for each request otherwise). A client's own close leaves it open."""

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        self._pool = httpx.AsyncHTTPTransport(verify=ssl_context)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pool.handle_async_request(request)

    async def aclose(self) -> None:
        """Called by every client at its end: the pool outlives them (`close` ends it)."""

    async def close(self) -> None:
        await self._pool.aclose()


class AppJwtStrategy(BaseAuthStrategy):
    """Authenticate as the App itself with our own JWT (claims we control and test)."""

    def __init__(self, jwt: AppJwt) -> None:
        self._jwt = jwt

    def get_auth_flow(self, github: Any) -> httpx.Auth:
        return _Bearer(self._jwt)


class InstallationTokenStrategy(BaseAuthStrategy):
    """Authenticate with an installation token we minted and cached."""

    def __init__(self, token: InstallationToken) -> None:
        self._token = token

    def get_auth_flow(self, github: Any) -> httpx.Auth:
        return _Bearer(lambda: self._token.token)


# The POSTs that may be sent again when their answer was lost; every other POST creates
# something new each time, so it is never repeated blindly (see `bot.github.once`).
REPEATABLE_POSTS = (
    # Another installation token: the first one just expires unused.
    re.compile(r"/app/installations/\d+/access_tokens$"),
    # Git objects are content-addressed: the same blob, tree or commit (its dates come from the
    # run) gets the same sha, however often it is written.
    re.compile(r"/repos/[^/]+/[^/]+/git/(?:blobs|trees|commits)$"),
    # GitHub answers a reaction the App already added with 200 and that reaction.
    re.compile(r"/reactions$"),
)


def repeatable(method: str, path: str) -> bool:
    """Whether sending a request again can do no more than sending it once did.

    Reads (GET, HEAD) are. PUT and DELETE are idempotent by definition (the bot sends neither
    today). Every PATCH the bot sends names a resource that exists and sets fields to given
    values, so a second one changes nothing: the tracking comment's body, a config report
    issue's state (closed), and a ref's sha, forced (the run's own branch) or fast-forward (a
    second fast-forward to where the first moved the ref is one of zero steps, and succeeds).
    A POST is repeatable only when it is in `REPEATABLE_POSTS`.
    """
    method = method.upper()
    if method in {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"}:
        return True
    return method == "POST" and any(pattern.search(path) for pattern in REPEATABLE_POSTS)


def _request_of(exc: GitHubException) -> httpx.Request | None:
    """The request that failed, when the error still knows it."""
    if isinstance(exc, RequestFailed | RequestTimeout):
        return exc.request
    inner = getattr(exc, "exc", None)
    if isinstance(inner, httpx.RequestError):
        try:
            return inner.request
        except RuntimeError:  # httpx raises when the request was never attached
            return None
    return None


class RetryPolicy:
    """What githubkit should do after a failed request: wait out rate limits, back off on 5xx.

    Rate limits carry their own wait (`Retry-After` or `x-ratelimit-reset`) and mean the request
    was not applied, so any request is sent again; a wait longer than `max_wait` is not worth
    holding a job for, so the error surfaces instead. A 5xx, a timeout or a lost connection
    leave it unknown whether GitHub applied the request: only `repeatable` ones are sent again.
    The others surface, and their callers look for what was made before creating it again
    (`bot.github.once`).
    """

    def __init__(
        self,
        *,
        max_wait: float = 60.0,
        rate_limit_retries: int = 2,
        server_retries: int = 3,
        base_delay: float = 1.0,
    ) -> None:
        self.max_wait = max_wait
        self.rate_limit_retries = rate_limit_retries
        self.server_retries = server_retries
        self.base_delay = base_delay

    def __call__(self, exc: GitHubException, retry_count: int) -> RetryOption:
        if isinstance(exc, RateLimitExceeded):
            wait = max(exc.retry_after.total_seconds(), 1.0)
            if retry_count < self.rate_limit_retries and wait <= self.max_wait:
                log.warning("GitHub rate limit hit; retrying in %.1fs", wait)
                return RetryOption(True, timedelta(seconds=wait))
            return RetryOption(False)
        if isinstance(exc, RequestFailed) and exc.response.status_code < 500:
            return RetryOption(False)
        if not isinstance(exc, RequestError) or retry_count >= self.server_retries:
            return RetryOption(False)
        request = _request_of(exc)
        if request is not None and repeatable(request.method, request.url.path):
            return RetryOption(True, self.backoff(retry_count))
        return RetryOption(False)

    def backoff(self, retry_count: int) -> timedelta:
        """The wait before retry `retry_count + 1`: doubling from `base_delay`, with jitter."""
        delay = self.base_delay * (2**retry_count)
        return timedelta(seconds=delay * (0.5 + random.random() / 2))


class GitHubApp:
    """Makes GitHub clients for the App and its installations from one Settings object."""

    def __init__(self, settings: Settings, redis: Redis, *, pooled: bool = False) -> None:
        """`pooled`: every client shares one connection pool, kept alive until `close` (the
        worker's); otherwise each request has its own connection. Either way the SSL context
        (tens of ms to build) is made once."""
        settings.require_app()
        assert settings.github_app_id is not None
        self.settings = settings
        self._redis = redis
        self._jwt = AppJwt(settings.github_app_id, settings.private_key_pem())
        self.tokens = TokenCache(self._mint)
        self._ssl = httpx.create_ssl_context()
        self.transport = SharedTransport(self._ssl) if pooled else None
        self.retry = RetryPolicy(
            max_wait=settings.github_max_retry_wait_seconds,
            base_delay=settings.github_retry_base_seconds,
        )
        self._login: str | None = None
        self._covering: dict[str, tuple[int, float]] = {}  # repo → (installation, asked at)

    def _client(
        self,
        auth: BaseAuthStrategy,
        throttler: BaseThrottler | None = None,
        *,
        installation: str = "app",
        hooks: Sequence[Callable[[httpx.Response], Awaitable[None]]] = (),
    ) -> GitHub[Any]:
        # Every response's x-ratelimit-* headers are kept in Redis for /metrics.
        recorder = RateLimitRecorder(self._redis, installation)
        return GitHub(
            auth,
            base_url=self.settings.github_api_url,
            user_agent="openhands-bot",
            timeout=self.settings.github_timeout_seconds,
            auto_retry=self.retry,
            throttler=throttler,
            http_cache=False,
            ssl_verify=self._ssl,
            async_transport=self.transport,
            async_event_hooks={"response": [recorder, *hooks]},
        )

    async def close(self) -> None:
        """Close the connections every client shared."""
        if self.transport is not None:
            await self.transport.close()

    def app_client(self) -> GitHub[Any]:
        """A client authenticated as the App (JWT): installations and tokens."""
        return self._client(AppJwtStrategy(self._jwt))

    async def _mint(
        self,
        installation_id: int,
        repositories: list[str] | None,
        permissions: dict[str, str] | None,
    ) -> InstallationToken:
        body: dict[str, Any] = {}
        if repositories is not None:
            body["repositories"] = repositories
        if permissions:
            body["permissions"] = permissions
        client = self.app_client()  # githubkit namespaces hold only a weak reference to it
        response = await client.rest.apps.async_create_installation_access_token(
            installation_id,
            data=body,  # type: ignore[call-overload]
        )
        data = response.parsed_data
        granted = (
            data.permissions.model_dump(exclude_none=True, exclude_unset=True)
            if isinstance(data.permissions, BaseModel)
            else {}
        )
        log.info(
            "minted installation token",
            extra={
                "installation_id": installation_id,
                "repositories": repositories,
                "permissions": granted,
            },
        )
        return InstallationToken(
            token=data.token,
            expires_at=parse_expiry(data.expires_at),
            repositories=tuple(repositories) if repositories is not None else None,
            permissions=tuple(sorted((k, str(v)) for k, v in granted.items())),
        )

    async def installation_token(
        self,
        installation_id: int,
        *,
        repositories: list[str] | None = None,
        permissions: Mapping[str, str] | None = None,
    ) -> InstallationToken:
        """A cached token, optionally narrowed to repositories (names) and a permission set."""
        return await self.tokens.get(
            installation_id, repositories=repositories, permissions=permissions
        )

    async def installation_client(
        self,
        installation_id: int,
        *,
        repositories: list[str] | None = None,
        permissions: Mapping[str, str] | None = None,
    ) -> GitHub[Any]:
        """A client acting as an installation, its writes paced per installation."""
        token = await self.installation_token(
            installation_id, repositories=repositories, permissions=permissions
        )
        pacer = WritePacer(
            self._redis,
            installation_id,
            self.settings.write_limits(),
            max_wait=self.settings.github_max_retry_wait_seconds,
            lock_seconds=self.settings.github_timeout_seconds + 5,
        )
        return self._client(
            InstallationTokenStrategy(token),
            pacer,
            installation=str(installation_id),
            hooks=[RateLimitBlocker(self._redis, installation_id)],
        )

    async def app_login(self) -> str:
        """The App's own login (`<slug>[bot]`), asked of GitHub (`GET /app`) once per process:
        the bot-loop guard must not depend on GITHUB_APP_SLUG being set, or set right."""
        if self._login is None:
            client = self.app_client()  # githubkit namespaces hold only a weak reference to it
            app = (await client.rest.apps.async_get_authenticated()).parsed_data
            if app is None or not app.slug:
                raise RequestError(ValueError("GET /app named no slug"))
            self._login = f"{app.slug}[bot]"
        return self._login

    async def find_installation(self, owner: str, repo: str) -> int:
        """The installation id covering a repository, asked of GitHub as the App (kept in this
        process for a minute: a job's claim or Redis's map is never the answer)."""
        name = f"{owner}/{repo}".lower()
        known = self._covering.get(name)
        if known is not None and time.monotonic() - known[1] < INSTALLATION_MEMORY_SECONDS:
            return known[0]
        client = self.app_client()
        response = await client.rest.apps.async_get_repo_installation(owner, repo)
        self._covering[name] = (response.parsed_data.id, time.monotonic())
        return response.parsed_data.id
