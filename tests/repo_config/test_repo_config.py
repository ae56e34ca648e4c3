"""`.openhands/config.yml`: validation with located errors, discovery (push, installation,
start-up resync), one report per invalid version, and the last valid config kept running."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from redis.asyncio import Redis

from bot import keys
from bot.config import Settings
from bot.errors import InvalidConfig
from bot.jobs.worker import Clock
from bot.repo_config import schema, store
from bot.repo_config.schema import CONFIG_PATH, parse
from tests.conftest import Deliverer, load_payload, run_worker
from tests.fakes.git_host import FakeGitHost
from tests.fakes.github import FakeGitHub

REPO = "octo/app"
OWNER, NAME = REPO.split("/")
INSTALLATION = 41

VALID = """\
review:
  on_push: true
  instructions: Focus on error handling.
automations:
  - name: nightly
    schedule: "0 3 * * *"
    timezone: Europe/Paris
    prompt: Update the changelog from yesterday's merged pull requests.
    output: pr
  - name: weekly-report
    schedule: "0 9 * * mon"
    prompt: Summarize open issues by label.
    output: comment
    issue: 12
"""

INVALID = """\
automations:
  - name: nightly
    schedule: "0 27 * * *"
    prompt: Update the changelog.
    colour: blue
"""


def test_a_full_config_parses() -> None:
    config = parse(VALID)
    assert config.review.on_push is True
    assert config.review.instructions == "Focus on error handling."
    nightly = config.automation("Nightly")
    assert nightly is not None
    assert nightly.timezone == "Europe/Paris"
    assert nightly.output == "pr"
    report = config.automation("weekly-report")
    assert report is not None
    assert (report.output, report.issue) == ("comment", 12)


def test_an_empty_file_is_the_defaults() -> None:
    config = parse("")
    assert config.automations == []
    assert config.review.enabled is True
    assert (config.review.min_inline_severity, config.review.max_inline_comments) == (
        "important",
        7,
    )


def test_the_noise_budget_is_read() -> None:
    review = parse("review:\n  min_inline_severity: critical\n  max_inline_comments: 0\n").review
    assert (review.min_inline_severity, review.max_inline_comments) == ("critical", 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (INVALID, "automations[0] (nightly).schedule: '0 27 * * *': hour: '27' is outside 0-23"),
        (
            "automations:\n  - {name: a, schedule: '@daily', prompt: p, timezone: Mars/Base}\n",
            "automations[0] (a).timezone: unknown time zone 'Mars/Base'",
        ),
        (INVALID, "automations[0] (nightly).colour: Extra inputs are not permitted"),
        ("automations:\n  - name: x\n    schedule: '@daily'\n", "automations[0] (x).prompt"),
        (
            "automations:\n  - {name: a, schedule: '@daily', prompt: p, output: comment}\n",
            schema.COMMENT_NEEDS_ISSUE,
        ),
        (
            "automations:\n  - {name: a, schedule: '@daily', prompt: p}\n"
            "  - {name: A, schedule: '@daily', prompt: q}\n",
            schema.NAMES_NOT_UNIQUE.format(names="a"),
        ),
        ("review: [1, 2", schema.NOT_VALID_YAML.partition("{error}")[0]),
        ("- just\n- a list\n", schema.NOT_A_MAPPING),
        ("review:\n  enabled: maybe\n", "review.enabled"),
        ("review:\n  min_inline_severity: nitpick\n", "review.min_inline_severity"),
        ("review:\n  max_inline_comments: -1\n", "review.max_inline_comments"),
        ("x: " + "y" * 70_000, schema.FILE_TOO_LARGE.format(kib=64)),
        ("automations: [nightly]\n", "automations[0]: Input should be a valid dictionary"),
        (
            "automations:\n  - {name: a, schedule: '@daily', prompt: p, timezone: America}\n",
            "unknown time zone 'America'",
        ),
        (
            "automations:\n  - {name: a, schedule: '@daily', prompt: p, timezone: "
            + "x" * 300
            + "}\n",
            "unknown time zone",
        ),
        ("automations: " + "[" * 5000 + "]" * 5000 + "\n", "YAML"),
    ],
)
def test_invalid_configs_list_every_problem_with_its_place(text: str, expected: str) -> None:
    with pytest.raises(InvalidConfig) as raised:
        parse(text)
    joined = "\n".join(raised.value.errors).replace("Value error, ", "")
    assert expected.replace("Value error, ", "") in joined, joined


@pytest.fixture
def repo_world(fake_github: FakeGitHub, git_host: FakeGitHost) -> FakeGitHost:
    git_host.create_repo(REPO, {"README.md": "# app\n", CONFIG_PATH: VALID})
    fake_github.add_installation(INSTALLATION, OWNER, [REPO])
    return git_host


def push_payload(sha: str) -> dict[str, Any]:
    payload = copy.deepcopy(load_payload("push/with-new-branch.json"))
    payload["repository"].update(name=NAME, full_name=REPO, default_branch="main")
    payload["repository"]["owner"]["login"] = OWNER
    payload.update(
        ref="refs/heads/main",
        after=sha,
        deleted=False,
        installation={"id": INSTALLATION},
        commits=[{"added": [], "modified": [CONFIG_PATH], "removed": []}],
    )
    return payload


async def push(
    deliver: Deliverer, settings: Settings, sha: str, clock: Clock | None = None
) -> None:
    """Push `sha` to the default branch and let a worker read the config (at `clock`'s time)."""
    response = deliver.post("push", push_payload(sha))
    assert response.status_code == 202, response.text
    assert response.json()["task"] == "config"
    await run_worker(settings, clock=clock)


async def automation_names(redis: Redis) -> list[str]:
    stored = await store.load(redis, REPO)
    return [a.name for a in stored.config.automations]


async def test_an_invalid_version_is_reported_once_and_the_last_valid_one_keeps_running(
    repo_world: FakeGitHost,
    fake_github: FakeGitHub,
    deliver: Deliverer,
    settings: Settings,
    redis: Redis,
) -> None:
    first = repo_world.rev_parse(REPO, "refs/heads/main")
    await push(deliver, settings, first)
    assert await automation_names(redis) == ["nightly", "weekly-report"]
    assert await redis.sismember(keys.CONFIG_REPOS, REPO.lower())
    assert fake_github.issues == []

    broken = repo_world.commit(REPO, {CONFIG_PATH: INVALID}, message="Break the config")
    await push(deliver, settings, broken)
    # One issue, naming the commit and each problem with its place in the file...
    (issue,) = fake_github.issues
    assert issue["title"] == f"OpenHands: {CONFIG_PATH} is invalid"
    assert broken in issue["body"]
    assert "automations[0] (nightly)" in issue["body"]
    assert "hour: '27' is outside 0-23" in issue["body"]
    assert "colour: Extra inputs are not permitted" in issue["body"]
    assert schema.KEEPS_RUNNING in issue["body"]
    # ... while the previous configuration stays in effect.
    assert await automation_names(redis) == ["nightly", "weekly-report"]

    # The same version again (a redelivery, a resync): no second report.
    await push(deliver, settings, broken)
    assert len(fake_github.issues) == 1
    assert len(fake_github.requests_to("POST", r"/issues/\d+/comments$")) == 0

    # Another invalid version: reported on the same open issue, not a new one.
    worse = repo_world.commit(REPO, {CONFIG_PATH: "automations: 3\n"}, message="Worse")
    await push(deliver, settings, worse)
    assert len(fake_github.issues) == 1
    (comment,) = [c for c in fake_github.comments.values() if c["issue_number"] == 1]
    assert "automations: Input should be a valid list" in comment["body"]

    # Fixed: the new config takes effect and the report is closed.
    fixed = VALID.replace("name: nightly", "name: nightly-v2")
    repo_world.commit(REPO, {CONFIG_PATH: fixed}, message="Fix the config")
    await push(deliver, settings, repo_world.rev_parse(REPO, "refs/heads/main"))
    assert await automation_names(redis) == ["nightly-v2", "weekly-report"]
    assert fake_github.issues[0]["state"] == "closed"


async def test_a_removed_config_stops_its_automations(
    repo_world: FakeGitHost, deliver: Deliverer, settings: Settings, redis: Redis
) -> None:
    await push(deliver, settings, repo_world.rev_parse(REPO, "refs/heads/main"))
    assert await automation_names(redis)
    gone = repo_world.commit(REPO, {CONFIG_PATH: None}, message="Remove the config")
    await push(deliver, settings, gone)
    assert await automation_names(redis) == []
    assert not await redis.sismember(keys.CONFIG_REPOS, REPO.lower())


async def test_an_installation_reads_the_configs_of_its_repositories(
    repo_world: FakeGitHost, deliver: Deliverer, settings: Settings, redis: Redis
) -> None:
    payload = copy.deepcopy(load_payload("installation_repositories/added.json"))
    payload["installation"]["id"] = INSTALLATION
    payload["repositories_added"] = [{"full_name": REPO, "name": NAME}]
    assert deliver.post("installation_repositories", payload).status_code == 202
    await run_worker(settings)
    assert await automation_names(redis) == ["nightly", "weekly-report"]


async def test_a_worker_start_resyncs_installations_and_configs(
    repo_world: FakeGitHost, fake_github: FakeGitHub, settings: Settings, redis: Redis
) -> None:
    # Nothing was delivered (the bot was deployed after the App was installed).
    await run_worker(settings, scheduled=True)
    assert fake_github.requests_to("GET", r"/app/installations$")
    assert (
        await redis.hget("openhands-bot:repo-installation", REPO.lower())
        == str(INSTALLATION).encode()
    )
    assert await automation_names(redis) == ["nightly", "weekly-report"]

    # The next resync (hourly, or another worker starting) leaves a repository read within the
    # last day alone: pushes keep it current, and GitHub's rate limits are shared.
    reads = len(fake_github.requests_to("GET", r"/contents/"))
    await run_worker(settings, scheduled=True)
    assert len(fake_github.requests_to("GET", r"/app/installations$")) == 2
    assert len(fake_github.requests_to("GET", r"/contents/")) == reads


async def test_reverting_to_the_last_valid_version_closes_the_report(
    repo_world: FakeGitHost,
    fake_github: FakeGitHub,
    deliver: Deliverer,
    settings: Settings,
    redis: Redis,
) -> None:
    await push(deliver, settings, repo_world.rev_parse(REPO, "refs/heads/main"))
    broken = repo_world.commit(REPO, {CONFIG_PATH: INVALID}, message="Break the config")
    await push(deliver, settings, broken)
    assert fake_github.issues[0]["state"] == "open"
    # The same bytes as before: the same blob, so the stored config is "unchanged".
    reverted = repo_world.commit(REPO, {CONFIG_PATH: VALID}, message="Revert")
    await push(deliver, settings, reverted)
    (issue,) = fake_github.issues
    assert issue["state"] == "closed"
    assert await automation_names(redis) == ["nightly", "weekly-report"]
