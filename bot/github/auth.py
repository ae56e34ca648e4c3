"""GitHub App credentials: the App JWT and short-lived installation tokens, narrowed and cached."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt

JWT_BACKDATE_SECONDS = 60  # GitHub's clock may run behind ours
JWT_LIFETIME_SECONDS = 540  # under GitHub's 10-minute ceiling, with room for clock drift
TOKEN_REFRESH_MARGIN_SECONDS = 300  # never hand out a token with less than this left

# Everything the workspace may be given: it can read code, never write to GitHub.
READ_ONLY = {"contents": "read", "metadata": "read"}


def app_jwt(app_id: int, private_key_pem: str, *, now: float | None = None) -> str:
    """A signed App JWT (RS256): `iat` a minute in the past, `exp` nine minutes ahead."""
    issued = int(now if now is not None else time.time()) - JWT_BACKDATE_SECONDS
    claims = {"iat": issued, "exp": issued + JWT_LIFETIME_SECONDS, "iss": str(app_id)}
    return jwt.encode(claims, private_key_pem, algorithm="RS256")


class AppJwt:
    """Signs App JWTs and reuses one until it is close to expiry."""

    def __init__(self, app_id: int, private_key_pem: str) -> None:
        self._app_id = app_id
        self._key = private_key_pem
        self._token = ""
        self._expires = 0.0

    def __call__(self) -> str:
        now = time.time()
        if now > self._expires - 120:
            self._token = app_jwt(self._app_id, self._key, now=now)
            self._expires = now - JWT_BACKDATE_SECONDS + JWT_LIFETIME_SECONDS
        return self._token


@dataclass(frozen=True, slots=True)
class InstallationToken:
    """An installation access token and what it may touch. `repr` never shows the secret."""

    token: str
    expires_at: float
    repositories: tuple[str, ...] | None
    permissions: tuple[tuple[str, str], ...]

    def __repr__(self) -> str:
        return (
            f"InstallationToken(expires_at={self.expires_at}, repositories={self.repositories}, "
            f"permissions={dict(self.permissions)})"
        )

    def fresh(self, now: float | None = None) -> bool:
        return (now or time.time()) < self.expires_at - TOKEN_REFRESH_MARGIN_SECONDS


def parse_expiry(value: datetime | str) -> float:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


CacheKey = tuple[int, tuple[str, ...] | None, tuple[tuple[str, str], ...]]
Mint = Callable[[int, list[str] | None, dict[str, str] | None], Awaitable[InstallationToken]]


class TokenCache:
    """Process-local cache of installation tokens keyed by installation, repositories, permissions.

    Tokens are secrets: they stay in this process's memory, never in Redis or logs.
    """

    def __init__(self, mint: Mint) -> None:
        self._mint = mint
        self._tokens: dict[CacheKey, InstallationToken] = {}
        self._locks: dict[CacheKey, asyncio.Lock] = {}

    async def get(
        self,
        installation_id: int,
        *,
        repositories: list[str] | None = None,
        permissions: Mapping[str, str] | None = None,
    ) -> InstallationToken:
        repos = tuple(sorted(repositories)) if repositories is not None else None
        perms = tuple(sorted((permissions or {}).items()))
        key: CacheKey = (installation_id, repos, perms)
        cached = self._tokens.get(key)
        if cached is not None and cached.fresh():
            return cached
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(key)
            if cached is not None and cached.fresh():
                return cached
            token = await self._mint(
                installation_id,
                list(repos) if repos is not None else None,
                dict(perms) if perms else None,
            )
            self._tokens[key] = token
            return token

    def forget(self, installation_id: int) -> None:
        """Drop an installation's tokens (e.g. after a 401 or an uninstall)."""
        for key in [k for k in self._tokens if k[0] == installation_id]:
            del self._tokens[key]
