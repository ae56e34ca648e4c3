"""Who may drive the bot: the sender's collaborator permission, asked of GitHub and cached briefly.

`author_association` is not enough: it says MEMBER for an org member with read access only.
Docs: https://docs.github.com/rest/collaborators/collaborators#get-repository-permissions-for-a-user
"""

from __future__ import annotations

from typing import Any

from githubkit import GitHub
from githubkit.exception import RequestFailed
from redis.asyncio import Redis

from bot import keys
from bot.queue.tasks import RepoRef

WRITE_ROLES = frozenset({"admin", "maintain", "write"})


async def role_of(
    gh: GitHub[Any], redis: Redis, repo: RepoRef, username: str, *, cache_seconds: int
) -> str:
    """The user's role: `admin`, `maintain`, `write`, `triage`, `read` or `none`."""
    key = f"{keys.PERMISSION_PREFIX}{repo.full_name.lower()}:{username.lower()}"
    cached = await redis.get(key)
    if cached is not None:
        return cached.decode() if isinstance(cached, bytes) else str(cached)
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
    await redis.set(key, role, ex=cache_seconds)
    return role


async def can_write(
    gh: GitHub[Any], redis: Redis, repo: RepoRef, username: str, *, cache_seconds: int
) -> bool:
    """True when the user may push to the repository: only such users can start runs."""
    return await role_of(gh, redis, repo, username, cache_seconds=cache_seconds) in WRITE_ROLES
