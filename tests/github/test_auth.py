"""App JWTs GitHub accepts, and installation tokens that are narrowed, cached and refreshed."""

from __future__ import annotations

import time

import jwt
import pytest
from redis.asyncio import Redis

from bot.config import Settings
from bot.github.auth import READ_ONLY, InstallationToken, TokenCache, app_jwt
from bot.github.client import GitHubApp
from tests.fakes.github import FakeGitHub

REPO = "octo/widgets"


def test_app_jwt_claims(rsa_keys: tuple[str, str]) -> None:
    now = 1_800_000_000
    token = app_jwt(77, rsa_keys[0], now=now)
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(
        token, rsa_keys[1], algorithms=["RS256"], options={"verify_exp": False, "verify_iat": False}
    )
    assert header["alg"] == "RS256"
    assert claims["iss"] == "77"
    assert claims["iat"] == now - 60
    assert claims["exp"] - now <= 600
    assert claims["exp"] > now


@pytest.fixture
def installed(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.add_repo(REPO)
    fake_github.add_repo("octo/other")
    fake_github.add_installation(5, "octo", [REPO, "octo/other"])
    return fake_github


async def test_github_accepts_our_jwt_and_mints_narrowed_tokens(
    installed: FakeGitHub, settings: Settings, redis: Redis
) -> None:
    app = GitHubApp(settings, redis)
    token = await app.installation_token(5, repositories=["widgets"], permissions=READ_ONLY)
    assert token.token.startswith("ghs_")
    assert token.repositories == ("widgets",)
    assert dict(token.permissions) == READ_ONLY
    assert token.token not in repr(token)

    (minted,) = installed.token_log
    assert minted["repositories"] == ["widgets"]
    assert minted["permissions"] == READ_ONLY

    # The narrowed token can read its repository and nothing else, and cannot write.
    gh = await app.installation_client(5, repositories=["widgets"], permissions=READ_ONLY)
    assert (await gh.rest.repos.async_get("octo", "widgets")).parsed_data.full_name == REPO
    with pytest.raises(Exception, match=r"404|401"):
        await gh.rest.repos.async_get("octo", "other")


async def test_tokens_are_cached_per_scope(
    installed: FakeGitHub, settings: Settings, redis: Redis
) -> None:
    app = GitHubApp(settings, redis)
    first = await app.installation_token(5, repositories=["widgets"], permissions=READ_ONLY)
    again = await app.installation_token(5, repositories=["widgets"], permissions=READ_ONLY)
    wider = await app.installation_token(5)
    assert first is again
    assert wider.token != first.token
    assert len(installed.token_log) == 2
    # Every call to the App endpoints carried a valid JWT.
    for claims in installed.jwt_claims:
        assert claims["iss"] == str(settings.github_app_id)


async def test_tokens_are_refreshed_before_they_expire() -> None:
    minted: list[float] = []

    async def mint(
        installation_id: int, repos: list[str] | None, perms: dict[str, str] | None
    ) -> InstallationToken:
        expires = time.time() + (200 if not minted else 3600)  # the first is nearly expired
        minted.append(expires)
        return InstallationToken(f"t{len(minted)}", expires, None, ())

    cache = TokenCache(mint)
    first = await cache.get(1)
    second = await cache.get(1)
    third = await cache.get(1)
    assert first.token == "t1"
    assert second.token == third.token == "t2"
    assert len(minted) == 2
