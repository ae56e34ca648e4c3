"""Who may call what: App JWTs, the installation tokens they mint, and the tokens' scopes."""

from __future__ import annotations

import copy
import secrets
import string
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from tests.fakes.github.calls import ApiError, _Call, _not_found, _Reply, _validation_failed
from tests.fakes.github.shapes import ShapesMixin, _iso, _now, example
from tests.fakes.github.state import FakeInstallation, FakeRepo, IssuedToken, TokenScope

JWT_MAX_LIFETIME = 600  # GitHub: exp at most 10 minutes after iat
CLOCK_SLACK = 5  # seconds of leeway for the client's clock
TOKEN_LIFETIME = timedelta(hours=1)


class AuthMixin(ShapesMixin):
    """App JWT checks, `POST /app/installations/{id}/access_tokens`, and token checks per repo."""

    def token_scope(self, token: str) -> TokenScope | None:
        """What this fake minted `token` for, None if it did not mint it."""
        with self._lock:
            issued = self._tokens.get(token)
            if issued is None:
                return None
            installation = self._installations.get(issued.installation_id)
            return TokenScope(
                installation_id=issued.installation_id,
                installation_repos=list(installation.repos) if installation else [],
                repositories=copy.copy(issued.repositories),
                permissions=dict(issued.permissions),
                expired=issued.expired,
            )

    def expire_tokens(self) -> None:
        """Make every issued installation token expired, as after an hour."""
        with self._lock:
            for token in self._tokens.values():
                token.expires_at = datetime.now(UTC) - timedelta(seconds=1)

    @property
    def token_log(self) -> list[dict[str, Any]]:
        """Every token minted: {token, installation_id, repositories, repository_ids,
        repository_full_names, permissions, expires_at}.

        `repositories` and `repository_ids` are the narrowing as requested (None when absent);
        `repository_full_names` what it resolved to; `permissions` what was granted.
        """
        with self._lock:
            return copy.deepcopy(self._token_log)

    @property
    def jwt_claims(self) -> list[dict[str, Any]]:
        """Claims of every App JWT the fake accepted."""
        with self._lock:
            return copy.deepcopy(self._jwt_claims)

    @property
    def jwt_rejections(self) -> list[str]:
        """Why each rejected App JWT was rejected."""
        with self._lock:
            return list(self._jwt_rejections)

    # ------------------------------------------------------------------ checks

    def _verify_app_jwt(self, call: _Call) -> dict[str, Any]:
        scheme, _, credential = call.request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise self._jwt_error("no Bearer JWT", "A JSON web token could not be decoded")
        try:
            claims: dict[str, Any] = jwt.decode(
                credential.strip(),
                self._public_key,  # type: ignore[arg-type]
                algorithms=["RS256"],
                options={
                    "require": ["iat", "exp", "iss"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_iss": False,
                },
            )
        except jwt.InvalidTokenError as error:
            raise self._jwt_error(
                f"decode: {error}", "A JSON web token could not be decoded"
            ) from None
        now = time.time()
        iat, exp = claims["iat"], claims["exp"]
        if str(claims["iss"]) != str(self.app_id):
            raise self._jwt_error(
                f"iss {claims['iss']!r} is not {self.app_id}",
                "A JSON web token could not be decoded",
            )
        if not isinstance(iat, int | float) or iat > now + CLOCK_SLACK:
            raise self._jwt_error(
                f"iat {iat} is in the future",
                "'Issued at' claim ('iat') must be an Integer representing a time in the past.",
            )
        if not isinstance(exp, int | float) or exp <= now:
            raise self._jwt_error(
                f"exp {exp} has passed",
                "'Expiration time' claim ('exp') must be a numeric value representing the future"
                " time at which the assertion expires.",
            )
        if exp - iat > JWT_MAX_LIFETIME + CLOCK_SLACK or exp > now + JWT_MAX_LIFETIME + CLOCK_SLACK:
            raise self._jwt_error(
                f"exp {exp} is more than {JWT_MAX_LIFETIME}s ahead",
                "'Expiration time' claim ('exp') is too far in the future",
            )
        self._jwt_claims.append(claims)
        return claims

    def _jwt_error(self, reason: str, message: str) -> ApiError:
        self._jwt_rejections.append(reason)
        return ApiError(401, message)

    def _token_for_repo(
        self, call: _Call, write: tuple[str, ...] = (), *, read: tuple[str, ...] = ()
    ) -> tuple[FakeRepo, IssuedToken]:
        """The repo and the caller's token, if that token may see it, and if it holds one of
        the `read` permissions (at read or write) and one of the `write` ones at write."""
        credential = call.request.headers.get("authorization", "").partition(" ")[2]
        if not credential.strip():
            raise ApiError(401, "Requires authentication")
        token = self._live_token(call)
        repo = self._repos.get(call.full_name.lower())
        installation = self._installations.get(token.installation_id)
        if repo is None or installation is None or repo.full_name not in installation.repos:
            raise _not_found()
        if token.repositories is not None and repo.full_name not in token.repositories:
            raise _not_found()
        if write and not any(token.permissions.get(name) == "write" for name in write):
            raise ApiError(403, "Resource not accessible by integration")
        if read and not any(token.permissions.get(name) in {"read", "write"} for name in read):
            raise ApiError(403, "Resource not accessible by integration")
        return repo, token

    def _live_token(self, call: _Call) -> IssuedToken:
        """The caller's installation token, if this fake minted it and it has not expired."""
        scheme, _, credential = call.request.headers.get("authorization", "").partition(" ")
        token = self._tokens.get(credential.strip())
        if scheme.lower() not in {"token", "bearer"} or token is None or token.expired:
            raise ApiError(401, "Bad credentials")
        return token

    # ------------------------------------------------------------------ minting

    def _create_token(self, call: _Call) -> _Reply:
        self._verify_app_jwt(call)
        installation = self._installations.get(call.int_param("id"))
        if installation is None:
            raise _not_found()
        body = call.body
        repos = self._narrowed_repos(installation, body)
        requested = body.get("permissions")
        permissions = dict(requested) if requested else dict(installation.permissions)
        levels = {"read": 1, "write": 2}
        for name, level in permissions.items():
            if levels.get(installation.permissions.get(name, ""), 0) < levels.get(level, 3):
                raise ApiError(
                    422, "The permissions requested are not granted to this installation."
                )
        token = IssuedToken(
            token="ghs_"
            + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36)),
            installation_id=installation.id,
            repositories=[repo.full_name for repo in repos] if repos is not None else None,
            permissions=permissions,
            expires_at=_now() + TOKEN_LIFETIME,
        )
        self._tokens[token.token] = token
        self._token_log.append(
            {
                "token": token.token,
                "installation_id": installation.id,
                "repositories": body.get("repositories"),
                "repository_ids": body.get("repository_ids"),
                "repository_full_names": copy.copy(token.repositories),
                "permissions": dict(permissions),
                "expires_at": _iso(token.expires_at),
            }
        )
        data: dict[str, Any] = example("apps/create-installation-access-token")
        data.update(
            token=token.token,
            expires_at=_iso(token.expires_at),
            permissions=permissions,
            repository_selection="selected"
            if repos is not None
            else installation.repository_selection,
        )
        if repos is None:
            data.pop("repositories", None)
        else:
            data["repositories"] = [
                self._repo_json(repo, call.api_base, full=False) for repo in repos
            ]
        return _Reply(201, data)

    def _narrowed_repos(
        self, installation: FakeInstallation, body: dict[str, Any]
    ) -> list[FakeRepo] | None:
        names = body.get("repositories")
        ids = body.get("repository_ids")
        if not names and not ids:
            return None
        installed = [self._require_repo(name) for name in installation.repos]
        chosen: list[FakeRepo] = []
        for name in names or []:
            match = [repo for repo in installed if repo.name.lower() == str(name).lower()]
            if not match:
                raise _validation_failed(
                    {"resource": "Repository", "field": "repositories", "code": "invalid"}
                )
            chosen += match
        for repo_id in ids or []:
            match = [repo for repo in installed if repo.id == repo_id]
            if not match:
                raise _validation_failed(
                    {"resource": "Repository", "field": "repository_ids", "code": "invalid"}
                )
            chosen += match
        return list({repo.id: repo for repo in chosen}.values())
