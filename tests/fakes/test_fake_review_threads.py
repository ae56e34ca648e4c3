"""The fake's compare, GraphQL review threads and review edits: in shapes githubkit parses, with
GitHub's rules (a thread is resolved once, by whoever did it; a token without write cannot)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from githubkit import AppAuthStrategy, GitHub, TokenAuthStrategy
from githubkit.cache import MemCacheStrategy
from githubkit.exception import GraphQLFailed

from bot.github.threads import RESOLVE_THREAD, THREADS_QUERY, BotIdentity, _thread
from tests.fakes.git_host import FakeGitHost
from tests.fakes.github import FakeGitHub
from tests.helpers import rsa_key_pair

APP_ID = 424242
INSTALLATION_ID = 77
REPO = "acme/widgets"


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return rsa_key_pair()


@pytest.fixture
def fake(keys: tuple[str, str]) -> Iterator[FakeGitHub]:
    github = FakeGitHub(APP_ID, keys[1], app_slug="openhands-test")
    with github.serving():
        yield github


@pytest.fixture
def host(fake: FakeGitHub, tmp_path: Path) -> Iterator[FakeGitHost]:
    """A repo whose `feature` branch adds a line, and PR #2 of it."""
    with FakeGitHost(fake, tmp_path / "git").serving() as git_host:
        git_host.create_repo(REPO, {"app.py": "one\ntwo\n"})
        fake.add_installation(INSTALLATION_ID, "acme", [REPO])
        head = git_host.commit(REPO, {"app.py": "one\ntwo\nthree\n"}, branch="feature")
        fake.add_pull(REPO, 2, "feature", head, "main", "alice")
        yield git_host


def _client(fake: FakeGitHub, pem: str, **narrowing: Any) -> GitHub[Any]:
    # A cache of its own: githubkit's shared one would hand out another test's App JWT.
    cache = MemCacheStrategy()
    app = GitHub(
        AppAuthStrategy(APP_ID, pem), base_url=fake.url, cache_strategy=cache, trust_env=False
    )
    token = app.rest.apps.create_installation_access_token(INSTALLATION_ID, **narrowing)
    auth = TokenAuthStrategy(token.parsed_data.token)
    return GitHub(auth, base_url=fake.url, cache_strategy=cache, trust_env=False)


def test_compare_lists_the_commits_and_files_between_two_heads(
    fake: FakeGitHub, host: FakeGitHost, keys: tuple[str, str]
) -> None:
    gh = _client(fake, keys[0])
    base = host.rev_parse(REPO, "refs/heads/main")
    head = host.rev_parse(REPO, "refs/heads/feature")
    compared = gh.rest.repos.compare_commits("acme", "widgets", f"{base}...{head}").parsed_data
    assert compared.status == "ahead"
    assert compared.ahead_by == compared.total_commits == 1
    (changed,) = compared.files or []
    assert changed.filename == "app.py"
    assert changed.patch is not None
    assert "+three" in changed.patch
    same = gh.rest.repos.compare_commits("acme", "widgets", f"{head}...{head}").parsed_data
    assert same.status == "identical"
    assert not same.files


def test_review_threads_resolve_and_edit(
    fake: FakeGitHub, host: FakeGitHost, keys: tuple[str, str]
) -> None:
    gh = _client(fake, keys[0])
    review = gh.rest.pulls.create_review(
        "acme",
        "widgets",
        2,
        body="Summary",
        event="COMMENT",
        comments=[{"path": "app.py", "line": 3, "body": "Finding"}],
    ).parsed_data
    (root,) = fake.review_comments
    fake.add_review_comment(REPO, 2, "won't fix", "alice", in_reply_to_id=root)
    fake.react_as(root, "-1", "bob")
    variables = {"owner": "acme", "name": "widgets", "number": 2}
    data = gh.graphql.request(THREADS_QUERY, variables)
    (node,) = data["repository"]["pullRequest"]["reviewThreads"]["nodes"]
    thread = _thread(node)
    assert [c.author for c in thread.comments] == ["openhands-test", "alice"]  # GraphQL logins
    assert thread.comments[0].thumbs_down == 1
    assert BotIdentity("openhands-test").dismissed(thread)
    gh.graphql.request(RESOLVE_THREAD, {"threadId": thread.id})
    assert fake.resolved_threads == {root: fake.bot_login}
    edited = gh.rest.pulls.update_review("acme", "widgets", 2, review.id, body="New summary")
    assert edited.parsed_data.body == "New summary"
    with pytest.raises(GraphQLFailed):
        gh.graphql.request(RESOLVE_THREAD, {"threadId": "PRRT_unknown"})


def test_a_read_only_token_cannot_resolve_a_thread(
    fake: FakeGitHub, host: FakeGitHost, keys: tuple[str, str]
) -> None:
    fake.add_review_comment(REPO, 2, "Finding", fake.bot_login, line=3)
    reader = _client(fake, keys[0], permissions={"pull_requests": "read"})
    data = reader.graphql.request(THREADS_QUERY, {"owner": "acme", "name": "widgets", "number": 2})
    (node,) = data["repository"]["pullRequest"]["reviewThreads"]["nodes"]
    with pytest.raises(GraphQLFailed):
        reader.graphql.request(RESOLVE_THREAD, {"threadId": node["id"]})
    assert fake.resolved_threads == {}
