"""Who may drive the bot: the sender's collaborator permission, asked of GitHub and cached briefly.

`author_association` is not enough: it says MEMBER for an org member with read access only.
A cached role carries an HMAC over the repository, user, role and expiry (`signing`): an entry
planted in Redis, or one copied from another user, is ignored and GitHub is asked again.
Docs: https://docs.github.com/rest/collaborators/collaborators#get-repository-permissions-for-a-user
"""

from __future__ import annotations

import time
from typing import Any

from githubkit import GitHub
from githubkit.exception import RequestFailed
from redis.asyncio import Redis

from bot import keys
from bot.queue import signing
from bot.queue.tasks import RepoRef

WRITE_ROLES = frozenset({"admin", "maintain", "write"})


def _signed(key: bytes, name: str, role: str, expires: int) -> bytes:
    return f"{role}|{expires}|{signing.mac(key, f'{name}|{role}|{expires}'.encode())}".encode()


def _trusted(key: bytes, name: str, raw: bytes | str) -> str | None:
    """The cached role when this bot signed it for this user and it has not expired, else None."""
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    role, _, rest = text.partition("|")
    expires, _, claimed = rest.partition("|")
    if not expires.isdigit() or int(expires) < time.time():
        return None
    if not signing.matches(key, f"{name}|{role}|{expires}".encode(), claimed):
        return None
    return role


async def role_of(
    gh: GitHub[Any],
    redis: Redis,
    repo: RepoRef,
    username: str,
    *,
    cache_seconds: int,
    key: bytes,
) -> str:
    """The user's role: `admin`, `maintain`, `write`, `triage`, `read` or `none`.

    `key` is `signing.Keys.permissions`."""
    name = f"{repo.full_name.lower()}:{username.lower()}"
    cached = await redis.get(keys.PERMISSION_PREFIX + name)
    if cached is not None:
        role = _trusted(key, name, cached)
        if role is not None:
            return role
    try:
        response = await gh.rest.repos.async_get_collaborator_permission_level(
            repo.owner, repo.name, username
        )
    except RequestFailed as exc:
        if exc.response.status_code != 404:  # 404: not a collaborator at all
            raise
        role = "none"
    else:
        data = response.parsed_data
        role = (data.role_name or data.permission or "none").lower()
    expires = int(time.time()) + cache_seconds
    value = _signed(key, name, role, expires)
    await redis.set(keys.PERMISSION_PREFIX + name, value, ex=cache_seconds)
    return role


async def can_write(
    gh: GitHub[Any],
    redis: Redis,
    repo: RepoRef,
    username: str,
    *,
    cache_seconds: int,
    key: bytes,
) -> bool:
    """True when the user may push to the repository: only such users can start runs."""
    role = await role_of(gh, redis, repo, username, cache_seconds=cache_seconds, key=key)
    return role in WRITE_ROLES
