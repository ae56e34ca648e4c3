"""GitHub's documented REST examples filled with the fake's state: the bodies githubkit parses."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import math
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import urlencode

from tests.fakes.github.calls import _Call, _Reply
from tests.fakes.github.state import FakeRepo, GitHubState
from tests.paths import REST_EXAMPLES

# GitHub's documented response examples, copied into tests/fixtures (see their SOURCE.md).
EXAMPLES_DIR = REST_EXAMPLES
HTML_BASE = "https://github.com"
EXAMPLE_API_BASE = "https://api.github.com"


@cache
def _load_example(operation_id: str) -> Any:
    return json.loads((EXAMPLES_DIR / f"{operation_id}.json").read_text())


def example(operation_id: str) -> Any:
    """A fresh copy of GitHub's documented example body for `operation_id`."""
    return copy.deepcopy(_load_example(operation_id))


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _node_id(kind: str, number: int) -> str:
    return base64.b64encode(f"{kind}{number}".encode()).decode()


def _sha(*parts: str) -> str:
    return hashlib.sha1(":".join(parts).encode()).hexdigest()


def _replace_strings(value: Any, replacements: list[tuple[str, str]]) -> Any:
    """Apply substring replacements to every string inside a JSON value."""
    if isinstance(value, str):
        for old, new in replacements:
            value = value.replace(old, new)
        return value
    if isinstance(value, list):
        return [_replace_strings(item, replacements) for item in value]
    if isinstance(value, dict):
        return {key: _replace_strings(item, replacements) for key, item in value.items()}
    return value


def _int_or(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


class ShapesMixin(GitHubState):
    """Users, repositories and pages of results, as every resource's answers embed them.

    Each body starts from GitHub's example (`example`) and takes the fake's state; fields that
    githubkit's models require but an example lacks are patched in where the body is built.
    Each resource module renders its own objects the same way.
    """

    def _user(self, login: str, api_base: str, user_type: str | None = None) -> dict[str, Any]:
        user_id = self._user_id(login)
        user: dict[str, Any] = _replace_strings(
            example("repos/get-collaborator-permission-level")["user"],
            [(EXAMPLE_API_BASE, api_base), ("octocat", login)],
        )
        user.update(
            id=user_id,
            node_id=_node_id("04:User", user_id),
            avatar_url=f"https://avatars.githubusercontent.com/u/{user_id}?v=4",
            html_url=f"{HTML_BASE}/{login}",
            type=user_type or ("Bot" if login.endswith("[bot]") else self._owner_type(login)),
        )
        return user

    def _repo_json(self, repo: FakeRepo, api_base: str, *, full: bool) -> dict[str, Any]:
        """A repository object: `full` is the GET /repos shape, else the summary shape."""
        if full:
            data: dict[str, Any] = example("repos/get")
            for key in ("parent", "source", "organization"):
                data.pop(key, None)
            data["template_repository"] = None
        else:
            data = example("apps/create-installation-access-token")["repositories"][0]
        data = _replace_strings(
            data, [("octocat/Hello-World", repo.full_name), (EXAMPLE_API_BASE, api_base)]
        )
        owner = self._user(repo.owner, api_base)
        if full and owner["type"] == "Organization":
            data["organization"] = owner
        stamp = _iso(repo.created_at)
        data.update(
            id=repo.id,
            node_id=_node_id("010:Repository", repo.id),
            name=repo.name,
            full_name=repo.full_name,
            owner=owner,
            private=repo.private,
            visibility="private" if repo.private else "public",
            fork=repo.fork,
            description=repo.description,
            default_branch=repo.default_branch,
            clone_url=repo.clone_url or f"{HTML_BASE}/{repo.full_name}.git",
            language=None,  # repos/get's example omits it, but githubkit requires it
            mirror_url=None,
            homepage=None,
            topics=[],
            is_template=False,
            created_at=stamp,
            updated_at=stamp,
            pushed_at=stamp,
        )
        return data

    def _paginate(self, call: _Call, items: list[Any]) -> _Reply:
        """One page of `items` per `per_page`/`page`, with GitHub's `Link` header."""
        query = call.request.query
        per_page = min(max(_int_or(query.get("per_page"), 30), 1), 100)
        page = max(_int_or(query.get("page"), 1), 1)
        last = max(math.ceil(len(items) / per_page), 1)

        def link(number: int, rel: str) -> str:
            params = urlencode({**query, "per_page": per_page, "page": number})
            return f'<{call.api_base}{call.request.path}?{params}>; rel="{rel}"'

        links = []
        if page > 1:
            links += [link(min(page - 1, last), "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        headers = {"link": ", ".join(links)} if links else {}
        return _Reply(200, items[(page - 1) * per_page : page * per_page], headers)
