"""Checks that FakeGitHub answers in shapes githubkit parses and enforces auth like GitHub."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any, cast

import httpx
import jwt
import pytest
from githubkit import AppAuthStrategy, GitHub, TokenAuthStrategy
from githubkit.cache import MemCacheStrategy
from githubkit.exception import RequestFailed

from tests.fakes.github import FakeGitHub
from tests.helpers import rsa_key_pair
from tests.paths import PAYLOADS

APP_ID = 424242
INSTALLATION_ID = 77
WIDGETS = "acme/widgets"
GADGETS = "acme/gadgets"


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return rsa_key_pair()


@pytest.fixture
def fake(keys: tuple[str, str]) -> Iterator[FakeGitHub]:
    github = FakeGitHub(APP_ID, keys[1], app_slug="openhands-test")
    github.add_repo(WIDGETS, clone_url="file:///tmp/widgets.git", default_branch="trunk")
    github.add_repo(GADGETS, private=True)
    github.add_installation(
        INSTALLATION_ID, "acme", [WIDGETS, GADGETS], account_type="Organization"
    )
    github.set_permission(WIDGETS, "alice", "maintain")
    github.add_issue(WIDGETS, 1, "Crash on start", "It crashes.", "alice")
    github.add_pull(
        WIDGETS,
        2,
        "feature",
        "a" * 40,
        "trunk",
        "mallory",
        fork_full_name="mallory/widgets",
        title="Add feature",
        body="Please merge",
        files=[{"filename": "src/app.py", "status": "modified", "additions": 3, "deletions": 1}],
    )
    with github.serving():
        yield github


def _client(fake: FakeGitHub, auth: Any) -> GitHub[Any]:
    return GitHub(auth, base_url=fake.url, cache_strategy=MemCacheStrategy(), trust_env=False)


def _app(fake: FakeGitHub, private_pem: str) -> GitHub[Any]:
    return _client(fake, AppAuthStrategy(APP_ID, private_pem))


def _installation(fake: FakeGitHub, private_pem: str, **narrowing: Any) -> GitHub[Any]:
    app = _app(fake, private_pem)  # keep a reference: githubkit's namespaces hold a weak one
    token = app.rest.apps.create_installation_access_token(INSTALLATION_ID, **narrowing)
    return _client(fake, TokenAuthStrategy(token.parsed_data.token))


def _jwt(private_pem: str, **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": str(APP_ID), "iat": now - 30, "exp": now + 540, **overrides}
    return jwt.encode(claims, private_pem, algorithm="RS256")


def test_app_endpoints_parse(fake: FakeGitHub, keys: tuple[str, str]) -> None:
    app = _app(fake, keys[0])

    integration = app.rest.apps.get_authenticated().parsed_data
    assert integration is not None
    assert (integration.id, integration.slug) == (APP_ID, "openhands-test")

    installation = app.rest.apps.get_repo_installation("acme", "widgets").parsed_data
    assert installation.id == INSTALLATION_ID
    assert installation.app_id == APP_ID

    token = app.rest.apps.create_installation_access_token(INSTALLATION_ID).parsed_data
    assert token.token.startswith("ghs_")
    assert len(token.token) >= 40
    assert token.expires_at.endswith("Z")
    assert token.repository_selection == "all"

    claims = fake.jwt_claims[0]
    assert claims["iss"] == str(APP_ID)
    assert claims["exp"] - claims["iat"] <= 600
    assert fake.token_log[0]["repositories"] is None
    fake.assert_no_unexpected()


def test_repo_and_issue_endpoints_parse(fake: FakeGitHub, keys: tuple[str, str]) -> None:
    gh = _installation(fake, keys[0])

    repo = gh.rest.repos.get("acme", "widgets").parsed_data
    assert (repo.full_name, repo.default_branch) == (WIDGETS, "trunk")
    assert repo.clone_url == "file:///tmp/widgets.git"
    assert repo.owner.login == "acme"

    alice = gh.rest.repos.get_collaborator_permission_level("acme", "widgets", "alice").parsed_data
    assert (alice.permission, alice.role_name) == ("write", "maintain")
    stranger = gh.rest.repos.get_collaborator_permission_level("acme", "widgets", "bob")
    assert stranger.parsed_data.permission == "read"
    with pytest.raises(RequestFailed) as excinfo:
        gh.rest.repos.get_collaborator_permission_level("acme", "gadgets", "bob")
    assert excinfo.value.response.status_code == 404

    issue = gh.rest.issues.get("acme", "widgets", 1).parsed_data
    assert (issue.number, issue.title, issue.user and issue.user.login) == (
        1,
        "Crash on start",
        "alice",
    )
    assert not issue.pull_request
    assert gh.rest.issues.get("acme", "widgets", 2).parsed_data.pull_request

    created = gh.rest.issues.create_comment("acme", "widgets", 1, body="On it").parsed_data
    assert created.user is not None
    assert created.user.login == "openhands-test[bot]"
    assert created.user.type == "Bot"
    updated = gh.rest.issues.update_comment("acme", "widgets", created.id, body="Done").parsed_data
    assert updated.body == "Done"
    assert gh.rest.issues.get_comment("acme", "widgets", created.id).parsed_data.body == "Done"
    assert fake.comments[created.id]["history"] == ["On it", "Done"]
    with pytest.raises(RequestFailed) as excinfo:
        gh.rest.issues.get("acme", "widgets", 99)
    assert excinfo.value.response.status_code == 404
    fake.assert_no_unexpected()


def test_comment_pagination(fake: FakeGitHub, keys: tuple[str, str]) -> None:
    for index in range(5):
        fake.add_comment(WIDGETS, 1, f"comment {index}", "alice")
    gh = _installation(fake, keys[0])

    first = gh.rest.issues.list_comments("acme", "widgets", 1, per_page=2)
    # githubkit's `list[...]` annotations resolve to its `list` methods under mypy: cast them.
    page = cast(list[Any], first.parsed_data)
    assert [comment.body for comment in page] == ["comment 0", "comment 1"]
    assert 'rel="next"' in first.headers["link"]
    assert fake.url in first.headers["link"]

    everything: Iterator[Any] = gh.rest.paginate(
        gh.rest.issues.list_comments, owner="acme", repo="widgets", issue_number=1, per_page=2
    )
    assert [comment.body for comment in everything] == [f"comment {i}" for i in range(5)]
    assert len(fake.requests_to("GET", r"/issues/1/comments$")) == 4


def test_reactions(fake: FakeGitHub, keys: tuple[str, str]) -> None:
    comment_id = fake.add_comment(WIDGETS, 1, "@openhands-test fix it", "alice")
    review_comment_id = fake.add_review_comment(WIDGETS, 2, "@openhands-test rename", "alice")
    gh = _installation(fake, keys[0])

    first = gh.rest.reactions.create_for_issue_comment(
        "acme", "widgets", comment_id, content="eyes"
    )
    assert first.status_code == 201
    assert first.parsed_data.content == "eyes"
    again = gh.rest.reactions.create_for_issue_comment(
        "acme", "widgets", comment_id, content="eyes"
    )
    assert again.status_code == 200
    assert again.parsed_data.id == first.parsed_data.id

    on_issue = gh.rest.reactions.create_for_issue("acme", "widgets", 1, content="+1")
    assert on_issue.status_code == 201
    on_review = gh.rest.reactions.create_for_pull_request_review_comment(
        "acme", "widgets", review_comment_id, content="rocket"
    )
    assert on_review.parsed_data.content == "rocket"

    assert [(r["target_kind"], r["target_id"], r["content"]) for r in fake.reactions] == [
        ("issue_comment", comment_id, "eyes"),
        ("issue", 1, "+1"),
        ("pull_request_review_comment", review_comment_id, "rocket"),
    ]
    fake.assert_no_unexpected()


def test_pull_endpoints_parse(fake: FakeGitHub, keys: tuple[str, str]) -> None:
    gh = _installation(fake, keys[0])

    pull = gh.rest.pulls.get("acme", "widgets", 2).parsed_data
    assert (pull.head.ref, pull.head.sha, pull.base.ref) == ("feature", "a" * 40, "trunk")
    assert pull.head.repo is not None
    assert pull.head.repo.full_name == "mallory/widgets"
    assert pull.base.repo.full_name == WIDGETS
    assert pull.user.login == "mallory"
    assert pull.links.html.href.endswith("/acme/widgets/pull/2")

    files = cast(list[Any], gh.rest.pulls.list_files("acme", "widgets", 2).parsed_data)
    assert [(f.filename, f.changes) for f in files] == [("src/app.py", 4)]

    created = gh.rest.pulls.create(
        "acme", "widgets", title="Fix crash", head="fix-crash", base="trunk", body="Fixes #1"
    )
    assert created.status_code == 201
    assert created.parsed_data.number == 3
    assert created.parsed_data.user.login == "openhands-test[bot]"
    assert fake.created_pulls[0]["head"] == "fix-crash"
    with pytest.raises(RequestFailed) as excinfo:
        gh.rest.pulls.create("acme", "widgets", title="Again", head="fix-crash", base="trunk")
    assert excinfo.value.response.status_code == 422

    review = gh.rest.pulls.create_review(
        "acme", "widgets", 2, body="Looks good", event="COMMENT"
    ).parsed_data
    assert (review.state, review.body) == ("COMMENTED", "Looks good")
    assert fake.reviews[0]["pull_number"] == 2
    fake.assert_no_unexpected()


def test_narrowed_token_cannot_read_other_repo(fake: FakeGitHub, keys: tuple[str, str]) -> None:
    app = _app(fake, keys[0])
    response = app.rest.apps.create_installation_access_token(
        INSTALLATION_ID, repositories=["widgets"]
    )
    token = response.parsed_data
    assert token.repository_selection == "selected"
    assert token.repositories
    assert [repo.full_name for repo in token.repositories] == [WIDGETS]
    assert fake.token_log[-1]["repositories"] == ["widgets"]
    assert fake.token_log[-1]["repository_full_names"] == [WIDGETS]

    gh = _client(fake, TokenAuthStrategy(token.token))
    assert gh.rest.repos.get("acme", "widgets").parsed_data.full_name == WIDGETS
    with pytest.raises(RequestFailed) as excinfo:
        gh.rest.repos.get("acme", "gadgets")
    assert excinfo.value.response.status_code == 404


def test_narrowing_to_a_foreign_repo_is_rejected(fake: FakeGitHub, keys: tuple[str, str]) -> None:
    app = _app(fake, keys[0])
    with pytest.raises(RequestFailed) as excinfo:
        app.rest.apps.create_installation_access_token(INSTALLATION_ID, repositories=["elsewhere"])
    assert excinfo.value.response.status_code == 422


def test_read_only_token_cannot_comment(fake: FakeGitHub, keys: tuple[str, str]) -> None:
    gh = _installation(fake, keys[0], permissions={"contents": "read", "metadata": "read"})
    assert fake.token_log[-1]["permissions"] == {"contents": "read", "metadata": "read"}
    assert gh.rest.issues.get("acme", "widgets", 1).parsed_data.number == 1
    with pytest.raises(RequestFailed) as excinfo:
        gh.rest.issues.create_comment("acme", "widgets", 1, body="hello")
    assert excinfo.value.response.status_code == 403
    assert excinfo.value.response.json()["message"] == "Resource not accessible by integration"
    assert fake.comments == {}


def test_missing_or_expired_token_is_401(fake: FakeGitHub, keys: tuple[str, str]) -> None:
    gh = _installation(fake, keys[0])
    fake.expire_tokens()
    with pytest.raises(RequestFailed) as excinfo:
        gh.rest.repos.get("acme", "widgets")
    assert excinfo.value.response.status_code == 401
    anonymous = httpx.get(f"{fake.url}/repos/acme/widgets", trust_env=False)
    assert anonymous.status_code == 401


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"iss": "1"}, "iss"),
        # Times are offsets from when the test runs, not from collection (minutes earlier).
        ({"iat": 120}, "iat"),
        ({"exp": -10}, "exp"),
        ({"exp": 1200}, "exp"),
    ],
)
def test_bad_jwt_is_401(
    fake: FakeGitHub, keys: tuple[str, str], claims: dict[str, Any], reason: str
) -> None:
    now = int(time.time())
    token = _jwt(keys[0], **{k: now + v if k in ("iat", "exp") else v for k, v in claims.items()})
    response = httpx.get(
        f"{fake.url}/app", headers={"Authorization": f"Bearer {token}"}, trust_env=False
    )
    assert response.status_code == 401
    assert set(response.json()) >= {"message", "documentation_url"}
    assert reason in fake.jwt_rejections[-1]


def test_jwt_signed_by_another_key_is_401(fake: FakeGitHub) -> None:
    other_private, _ = rsa_key_pair()
    response = httpx.post(
        f"{fake.url}/app/installations/{INSTALLATION_ID}/access_tokens",
        headers={"Authorization": f"Bearer {_jwt(other_private)}"},
        trust_env=False,
    )
    assert response.status_code == 401
    assert response.json()["message"] == "A JSON web token could not be decoded"
    assert fake.token_log == []


def test_unknown_route_is_501_and_reported(fake: FakeGitHub) -> None:
    response = httpx.get(f"{fake.url}/repos/acme/widgets/branches", trust_env=False)
    assert response.status_code == 501
    assert fake.unexpected == ["GET /repos/acme/widgets/branches"]
    with pytest.raises(AssertionError, match="branches"):
        fake.assert_no_unexpected()


def test_fail_next_then_normal(fake: FakeGitHub, keys: tuple[str, str]) -> None:
    gh = _installation(fake, keys[0])
    fake.fail_next("GET", r"^/repos/acme/widgets$", 502, times=2)
    url = f"{fake.url}/repos/acme/widgets"
    auth = {"Authorization": f"token {fake.token_log[-1]['token']}"}
    assert httpx.get(url, headers=auth, trust_env=False).status_code == 502
    assert httpx.get(url, headers=auth, trust_env=False).status_code == 502
    assert httpx.get(url, headers=auth, trust_env=False).status_code == 200

    # githubkit waits out a secondary rate limit (Retry-After) and retries once.
    # Not "retry-after: 0": githubkit treats a zero wait as falsy and sleeps 60 s instead.
    fake.fail_next(
        "POST",
        r"/issues/1/comments$",
        403,
        headers={"retry-after": "1"},
        body={"message": "You have exceeded a secondary rate limit."},
    )
    gh.rest.issues.create_comment("acme", "widgets", 1, body="hi")
    attempts = fake.requests_to("POST", r"/issues/1/comments$")
    assert [attempt.status for attempt in attempts] == [403, 201]
    assert attempts[0].json == {"body": "hi"}
    assert attempts[0].headers["authorization"].startswith("token ghs_")


def test_fail_next_applied_does_the_write_then_fails(
    fake: FakeGitHub, keys: tuple[str, str]
) -> None:
    _installation(fake, keys[0])
    auth = {"Authorization": f"token {fake.token_log[-1]['token']}"}
    url = f"{fake.url}/repos/acme/widgets/issues/1/comments"
    fake.fail_next("POST", r"/issues/1/comments$", 502, applied=True)

    lost = httpx.post(url, json={"body": "once"}, headers=auth, trust_env=False)
    assert lost.status_code == 502
    assert lost.json()["message"] == "Injected 502"
    assert [c["body"] for c in fake.comments.values()] == ["once"]  # done, all the same

    # The failure is used up; a refused write is not done either way.
    assert httpx.post(url, json={"body": "twice"}, headers=auth, trust_env=False).is_success
    fake.fail_next("POST", r"/issues/1/comments$", 502, applied=True)
    refused = httpx.post(url, json={"body": ""}, headers=auth, trust_env=False)
    assert refused.status_code == 502
    assert [c["body"] for c in fake.comments.values()] == ["once", "twice"]


def test_lists_that_find_the_bot_s_own_writes(fake: FakeGitHub, keys: tuple[str, str]) -> None:
    gh = _installation(fake, keys[0])
    made = gh.rest.issues.create("acme", "widgets", title="Report", body="marked").parsed_data
    gh.rest.issues.update("acme", "widgets", 1, state="closed")

    def numbers(**query: Any) -> list[int]:
        listed = gh.rest.issues.list_for_repo("acme", "widgets", **query).parsed_data
        return [issue.number for issue in cast(list[Any], listed)]

    assert numbers() == [made.number, 2]  # open, newest first, the PR's issue included
    assert numbers(state="all") == [made.number, 2, 1]
    assert numbers(state="all", direction="asc", per_page=2, page=1) == [1, 2]
    with pytest.raises(RequestFailed) as excinfo:
        numbers(state="all", sort="comments")
    assert excinfo.value.response.status_code == 422

    gh.rest.pulls.create_review("acme", "widgets", 2, body="First", event="COMMENT")
    reviews = cast(list[Any], gh.rest.pulls.list_reviews("acme", "widgets", 2).parsed_data)
    assert [(r.body, r.state, r.user.login) for r in reviews] == [
        ("First", "COMMENTED", "openhands-test[bot]")
    ]

    asked = fake.add_review_comment(WIDGETS, 2, "why?", "alice", path="src/app.py")
    gh.rest.pulls.create_reply_for_review_comment("acme", "widgets", 2, asked, body="because")
    comments = cast(list[Any], gh.rest.pulls.list_review_comments("acme", "widgets", 2).parsed_data)
    assert [(c.body, c.in_reply_to_id or None) for c in comments] == [
        ("why?", None),
        ("because", asked),
    ]
    one = gh.rest.pulls.get_review_comment("acme", "widgets", asked).parsed_data
    assert (one.id, one.body, one.user.login if one.user else None) == (asked, "why?", "alice")
    with pytest.raises(RequestFailed) as excinfo:
        gh.rest.pulls.get_review_comment("acme", "gadgets", asked)  # another repo's id
    assert excinfo.value.response.status_code == 404
    with pytest.raises(RequestFailed) as excinfo:
        gh.rest.pulls.list_reviews("acme", "widgets", 99)
    assert excinfo.value.response.status_code == 404
    fake.assert_no_unexpected()


def test_delay(fake: FakeGitHub, keys: tuple[str, str]) -> None:
    gh = _installation(fake, keys[0])
    fake.delay("GET", r"/issues/1$", 0.3, times=1)
    started = time.monotonic()
    gh.rest.issues.get("acme", "widgets", 1)
    assert time.monotonic() - started >= 0.3


def test_seeding_from_webhook_payloads(keys: tuple[str, str]) -> None:
    fake = FakeGitHub(APP_ID, keys[1])
    payloads = {
        name: json.loads((PAYLOADS / name).read_text())
        for name in (
            "issue_comment/created.json",
            "pull_request/opened.json",
            "pull_request_review_comment/created.json",
        )
    }
    for payload in payloads.values():
        fake.add_from_webhook(payload)
    fake.add_installation(INSTALLATION_ID, "Codertocat", ["Codertocat/Hello-World"])
    comment = payloads["issue_comment/created.json"]["comment"]
    review_comment = payloads["pull_request_review_comment/created.json"]["comment"]
    pull = payloads["pull_request/opened.json"]["pull_request"]

    with fake.serving():
        gh = _installation(fake, keys[0])
        owner, repo = "Codertocat", "Hello-World"
        assert (
            gh.rest.issues.get_comment(owner, repo, comment["id"]).parsed_data.body
            == (comment["body"])
        )
        gh.rest.reactions.create_for_issue_comment(owner, repo, comment["id"], content="eyes")
        gh.rest.reactions.create_for_pull_request_review_comment(
            owner, repo, review_comment["id"], content="eyes"
        )
        fetched = gh.rest.pulls.get(owner, repo, pull["number"]).parsed_data
        assert (fetched.head.sha, fetched.base.ref) == (pull["head"]["sha"], pull["base"]["ref"])
        # New ids never collide with the seeded ones.
        created = gh.rest.issues.create_comment(owner, repo, 1, body="On it").parsed_data
        assert created.id > comment["id"]

    assert [r["target_id"] for r in fake.reactions] == [comment["id"], review_comment["id"]]
    fake.assert_no_unexpected()
