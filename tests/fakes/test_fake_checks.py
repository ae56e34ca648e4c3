"""FakeGitHub's check runs and 3,000-file listing answer in shapes githubkit parses, with
GitHub's rules: the `checks` permission, a conclusion for `completed`, and one list limit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from githubkit import AppAuthStrategy, GitHub, TokenAuthStrategy
from githubkit.exception import RequestFailed

from tests.fakes.github import FakeGitHub
from tests.helpers import rsa_key_pair

APP_ID = 424243
INSTALLATION_ID = 78
REPO = "acme/widgets"


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return rsa_key_pair()  # one per module: githubkit caches the App's JWT by its id


@pytest.fixture
def fake(keys: tuple[str, str]) -> Iterator[tuple[FakeGitHub, str]]:
    private, public = keys
    github = FakeGitHub(APP_ID, public, app_slug="openhands-test")
    github.add_installation(INSTALLATION_ID, "acme", [REPO])
    files = [{"filename": f"f{n}.py", "additions": 1} for n in range(3005)]
    github.add_pull(REPO, 2, "feature", "a" * 40, files=files)
    with github.serving():
        yield github, private


def _client(fake: FakeGitHub, private: str, **narrowing: Any) -> GitHub[Any]:
    app = GitHub(AppAuthStrategy(APP_ID, private), base_url=fake.url, trust_env=False)
    token = app.rest.apps.create_installation_access_token(INSTALLATION_ID, **narrowing)
    return GitHub(TokenAuthStrategy(token.parsed_data.token), base_url=fake.url, trust_env=False)


def test_a_check_run_is_created_and_completed(fake: tuple[FakeGitHub, str]) -> None:
    github, private = fake
    gh = _client(github, private, permissions={"checks": "write"})
    made = gh.rest.checks.create(
        "acme",
        "widgets",
        name="review",
        head_sha="b" * 40,
        status="in_progress",
        external_id="x-1",
        details_url="https://bot.example/runs/1",
        output={"title": "reviewing", "summary": "under way"},
    ).parsed_data
    assert (made.status, made.conclusion, made.external_id) == ("in_progress", None, "x-1")
    assert made.app is not None
    done = gh.rest.checks.update(
        "acme",
        "widgets",
        made.id,
        status="completed",
        conclusion="success",
        completed_at=datetime.now(UTC),
        output={"title": "no findings", "summary": "ok"},
    ).parsed_data
    assert (done.status, done.conclusion, done.output.title) == (
        "completed",
        "success",
        "no findings",
    )
    (run,) = github.check_runs
    assert [h["status"] for h in run["history"]] == ["in_progress", "completed"]
    github.assert_no_unexpected()


def test_check_runs_need_the_permission_and_a_conclusion(fake: tuple[FakeGitHub, str]) -> None:
    github, private = fake
    reader = _client(github, private, permissions={"pull_requests": "read"})
    with pytest.raises(RequestFailed) as refused:
        reader.rest.checks.create("acme", "widgets", name="review", head_sha="b" * 40)
    assert refused.value.response.status_code == 403
    gh = _client(github, private, permissions={"checks": "write"})
    with pytest.raises(RequestFailed) as invalid:
        gh.request(  # githubkit itself would refuse this body
            "POST",
            "/repos/acme/widgets/check-runs",
            json={"name": "review", "head_sha": "b" * 40, "status": "completed"},
        )
    assert invalid.value.response.status_code == 422


def test_pull_request_files_stop_at_3000(fake: tuple[FakeGitHub, str]) -> None:
    github, private = fake
    gh = _client(github, private)
    page = cast(
        list[Any], gh.rest.pulls.list_files("acme", "widgets", 2, per_page=100, page=30).parsed_data
    )
    assert [f.filename for f in page][-1] == "f2999.py"
    beyond = cast(
        list[Any], gh.rest.pulls.list_files("acme", "widgets", 2, per_page=100, page=31).parsed_data
    )
    assert beyond == []
