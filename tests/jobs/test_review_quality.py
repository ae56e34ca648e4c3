"""Reviews end to end, with the real agent-server and a scripted LLM: an honest check run, the
noise budget, a large pull request reviewed in passes with its coverage stated, and suggestions
that are committable only when they apply."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.agent.workspace.local import LocalProvider
from bot.config import Settings
from bot.github import pr_files
from bot.github.checks import CHECK_NAME
from bot.github.client import GitHubApp
from bot.github.review_format import BADGES
from bot.github.suggestions import BREAKS_PARSE, NOT_COMMITTABLE
from bot.jobs import config_sync
from bot.queue.tasks import RepoRef, review_check_external_id
from bot.repo_config.schema import CONFIG_PATH
from tests.conftest import Deliverer, load_payload, run_worker
from tests.fakes import llm as steps
from tests.fakes.git_host import FakeGitHost
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import ScriptedLLM

REPO = "octo/calc"
OWNER, NAME = REPO.split("/")
INSTALLATION = 32
PR = 9
CALC = "".join(f"def f{n}(x):\n    return x + {n}\n\n\n" for n in range(1, 11))
BASE_FILES = {"calc.py": CALC, "conf.json": '{\n  "a": 1,\n  "b": 2\n}\n', "README.md": "# calc\n"}
HEAD_FILES = {
    "calc.py": CALC.replace("return x + 3\n", "return x + 33\n"),
    "conf.json": '{\n  "a": 10,\n  "b": 2\n}\n',
}
PUBLIC_URL = "https://bot.example"


def _patch(bare: str, base: str, head: str, path: str) -> str:
    out = subprocess.run(
        ["git", f"--git-dir={bare}", "diff", base, head, "--", path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out[out.index("@@") :]


def open_pull(
    github: FakeGitHub, host: FakeGitHost, *, extra_files: list[dict[str, Any]] | None = None
) -> str:
    """A PR changing calc.py (line 10) and conf.json (line 2); its head sha."""
    base = host.rev_parse(REPO, "refs/heads/main")
    head = host.commit(REPO, HEAD_FILES, branch=f"pr-{PR}", message="change")
    host.create_ref(REPO, f"refs/pull/{PR}/head", head)
    bare = str(host.bare_path(REPO))
    files = [
        {"filename": path, "additions": 1, "deletions": 1, "patch": _patch(bare, base, head, path)}
        for path in HEAD_FILES
    ]
    github.add_pull(
        REPO, PR, f"pr-{PR}", head, "main", "contributor", files=files + (extra_files or [])
    )
    return head


@pytest.fixture
def world(fake_github: FakeGitHub, git_host: FakeGitHost) -> FakeGitHub:
    git_host.create_repo(REPO, BASE_FILES)
    fake_github.add_installation(INSTALLATION, OWNER, [REPO])
    return fake_github


@pytest.fixture
def settings_on(agent_settings: Settings) -> Settings:
    return agent_settings.model_copy(update={"public_url": PUBLIC_URL})


def pr_event(head_sha: str) -> dict[str, Any]:
    payload = copy.deepcopy(load_payload("pull_request/opened.json"))
    payload["repository"].update({"name": NAME, "full_name": REPO})
    payload["repository"]["owner"]["login"] = OWNER
    payload["installation"] = {"id": INSTALLATION}
    pr = payload["pull_request"]
    pr.update({"number": PR, "draft": False, "state": "open"})
    pr["user"]["login"] = "contributor"
    pr["head"]["sha"] = head_sha
    pr["head"]["repo"]["full_name"] = REPO
    return payload


def finding(path: str, line: int, severity: str, **extra: Any) -> dict[str, Any]:
    return {
        "path": path,
        "line": line,
        "severity": severity,
        "body": f"{severity} at {path}:{line}",
    } | extra


def review_json(comments: list[dict[str, Any]], summary: str = "Reviewed.") -> str:
    return json.dumps({"summary": summary, "verdict": "comment", "comments": comments})


def the_check(github: FakeGitHub, head: str) -> dict[str, Any]:
    (check,) = github.check_runs
    assert check["name"] == CHECK_NAME
    assert check["head_sha"] == head
    assert check["history"][0]["status"] == "in_progress"  # claimed before it was decided
    assert check["status"] == "completed"
    return check


@pytest.mark.parametrize(
    ("script", "conclusion", "title"),
    [
        (
            [
                steps.finish(
                    review_json(
                        [finding("calc.py", 10, "critical"), finding("conf.json", 2, "important")]
                    )
                )
            ],
            "failure",
            "2 findings: 1 critical, 1 important",
        ),
        (
            [steps.finish(review_json([finding("conf.json", 2, "suggestion")]))],
            "success",
            "1 finding: 1 suggestion",
        ),
        ([steps.finish(review_json([]))], "success", "no findings"),
        ([steps.error(500), steps.error(500)], "failure", "failed: the LLM did not answer"),
    ],
    ids=["blocking-finding", "finding", "none", "llm-failure"],
)
async def test_the_check_run_states_the_outcome(
    world: FakeGitHub,
    git_host: FakeGitHost,
    deliver: Deliverer,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    settings_on: Settings,
    redis: Redis,
    script: list[Any],
    conclusion: str,
    title: str,
) -> None:
    head = open_pull(world, git_host)
    llm.script(*script)
    response = deliver.post("pull_request", pr_event(head))

    await run_worker(settings_on, workspaces=agent_server)

    check = the_check(world, head)
    assert (check["conclusion"], check["output"]["title"]) == (conclusion, title)
    assert check["details_url"] == f"{PUBLIC_URL}/runs/{response.json()['run_id']}"
    assert check["external_id"] == review_check_external_id(PR)
    assert len(world.reviews) == (0 if conclusion == "failure" and "failed" in title else 1)
    world.assert_no_unexpected()


async def test_a_skipped_review_is_never_green(
    world: FakeGitHub, git_host: FakeGitHost, deliver: Deliverer, settings: Settings, redis: Redis
) -> None:
    head = open_pull(world, git_host)
    deliver.post("pull_request", pr_event(head))

    await run_worker(settings.model_copy(update={"review_max_changed_lines": 1}))

    check = the_check(world, head)
    assert (check["conclusion"], check["output"]["title"]) == (
        "skipped",
        "skipped: over the size budget",
    )


async def test_re_running_the_check_on_github_reviews_again(
    world: FakeGitHub,
    git_host: FakeGitHost,
    deliver: Deliverer,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    settings_on: Settings,
    redis: Redis,
) -> None:
    head = open_pull(world, git_host)
    llm.script(
        steps.finish(review_json([])),
        steps.finish(review_json([finding("conf.json", 2, "important")])),
    )
    deliver.post("pull_request", pr_event(head))
    await run_worker(settings_on, workspaces=agent_server)
    rerun = copy.deepcopy(load_payload("check_run/rerequested.json"))
    rerun["repository"] = pr_event(head)["repository"]
    rerun["installation"] = {"id": INSTALLATION}
    rerun["check_run"].update(head_sha=head, external_id=world.check_runs[0]["external_id"])
    world.set_permission(REPO, rerun["sender"]["login"], "write")

    assert deliver.post("check_run", rerun).status_code == 202
    await run_worker(settings_on, workspaces=agent_server)

    assert len(world.reviews) == 2  # the head was reviewed already: re-running asks again
    first, second = world.check_runs
    assert (first["conclusion"], second["conclusion"]) == ("success", "success")
    assert second["output"]["title"] == "1 finding: 1 important"


async def test_the_noise_budget_folds_what_is_below_it(
    world: FakeGitHub,
    git_host: FakeGitHost,
    deliver: Deliverer,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    settings_on: Settings,
    redis: Redis,
) -> None:
    git_host.commit(
        REPO,
        {CONFIG_PATH: "review:\n  min_inline_severity: critical\n  max_inline_comments: 1\n"},
    )
    gh = await GitHubApp(settings_on, redis).installation_client(INSTALLATION)
    assert (await config_sync.refresh(gh, redis, RepoRef(owner=OWNER, name=NAME))).status == "valid"
    head = open_pull(world, git_host)
    comments = [
        finding("conf.json", 2, "suggestion"),
        finding("calc.py", 10, "critical"),
        finding("conf.json", 2, "critical"),
        finding("calc.py", 10, "important"),
    ]
    llm.script(steps.finish(review_json(comments)))
    deliver.post("pull_request", pr_event(head))

    await run_worker(settings_on, workspaces=agent_server)

    (review,) = world.reviews
    (inline,) = review["comments"]
    assert (inline["path"], inline["line"]) == ("calc.py", 10)
    assert inline["body"].startswith(BADGES["critical"])
    body = review["body"]
    folded = body[body.index("<details><summary>3 more findings") :]
    for text in ("critical at conf.json:2", "important at calc.py:10", "suggestion at conf.json:2"):
        assert text in folded
    assert "critical at calc.py:10" not in body


async def test_a_suggestion_that_breaks_the_file_is_posted_as_text(
    world: FakeGitHub,
    git_host: FakeGitHost,
    deliver: Deliverer,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    settings_on: Settings,
    redis: Redis,
) -> None:
    head = open_pull(world, git_host)
    broken = finding("calc.py", 10, "critical", suggestion="    return (x + 3")
    good = finding("conf.json", 2, "critical", suggestion='  "a": 1,')
    llm.script(steps.finish(review_json([broken, good])))
    deliver.post("pull_request", pr_event(head))

    await run_worker(settings_on, workspaces=agent_server)

    (review,) = world.reviews
    by_path = {comment["path"]: comment["body"] for comment in review["comments"]}
    assert '```suggestion\n  "a": 1,\n```' in by_path["conf.json"]
    assert "```suggestion" not in by_path["calc.py"]
    assert "```\n    return (x + 3\n```" in by_path["calc.py"]
    reason = BREAKS_PARSE.format(language="Python", error="SyntaxError")
    assert NOT_COMMITTABLE.format(reason=reason) in by_path["calc.py"]


def _small(n: int) -> str:
    return f"@@ -0,0 +1,3 @@\n+a = {n:03}\n+b = {n:03}\n+c = {n:03}\n"


def _many_files() -> list[dict[str, Any]]:
    """998 more changed files: 800 small sources, 100 lock or vendored files, 98 generated."""
    files = [
        {
            "filename": f"pkg{n // 100}/mod{n:03}.py",
            "status": "added",
            "additions": 3,
            "patch": _small(n),
        }
        for n in range(800)
    ]
    for n in range(50):
        files.append(
            {"filename": f"vendor/lib{n}/x.go", "additions": 1, "patch": "@@ -0,0 +1 @@\n+x\n"}
        )
        files.append(
            {"filename": f"web/app{n}.min.js", "additions": 1, "patch": "@@ -0,0 +1 @@\n+x\n"}
        )
    for n in range(98):
        files.append({"filename": f"gen/api{n}.py", "additions": 1, "patch": "@@ -0,0 +1 @@\n+x\n"})
    return files


async def test_a_thousand_file_pull_request_is_reviewed_in_passes_with_its_coverage(
    world: FakeGitHub,
    git_host: FakeGitHost,
    deliver: Deliverer,
    llm: ScriptedLLM,
    agent_server: LocalProvider,
    settings_on: Settings,
    redis: Redis,
) -> None:
    git_host.commit(REPO, {".gitattributes": "gen/** linguist-generated\n"})
    head = open_pull(world, git_host, extra_files=_many_files())
    size = len(pr_files.ChangedFile("pkg0/mod000.py", _small(0), 3).section())
    large = settings_on.model_copy(
        update={
            "review_max_files": 3000,
            "review_max_changed_lines": 100_000,
            "review_diff_budget_chars": size * 380,  # two passes: about 760 of the 802 sources
            "review_max_passes": 2,
        }
    )
    # Each pass also speaks of files it was not shown: in the other pass, over budget, vendored.
    unseen = [finding("pkg7/mod799.py", 1, "critical"), finding("vendor/lib1/x.go", 1, "critical")]
    llm.script(
        steps.finish(
            review_json(
                [
                    finding("calc.py", 10, "important"),
                    finding("pkg4/mod450.py", 1, "critical"),
                    *unseen,
                ],
                summary="First part.",
            )
        ),
        steps.finish(
            review_json(
                [finding("pkg4/mod450.py", 2, "important"), *unseen], summary="Second part."
            )
        ),
    )
    deliver.post("pull_request", pr_event(head))

    await run_worker(large, workspaces=agent_server)

    first, second = (request.text for request in llm.completions)
    assert "diff --git a/calc.py" in first
    assert "diff --git a/calc.py" not in second
    assert "diff --git a/pkg4/mod450.py" in second
    assert "diff --git a/pkg4/mod450.py" not in first
    for never in ("pkg7/mod799.py", "vendor/lib1/x.go", "gen/api1.py"):
        assert f"diff --git a/{never}" not in first + second
    (review,) = world.reviews
    body = review["body"]
    coverage = re.search(
        r"\*\*Coverage:\*\* (\d+) of 1,000 files reviewed in 2 passes; 198 generated or vendored "
        r"skipped, (\d+) over budget — listed below\.",
        body,
    )
    assert coverage is not None, body
    seen, over = int(coverage.group(1)), int(coverage.group(2))
    assert seen + over == 802
    assert 700 < seen < 802
    assert f"Not reviewed: over the diff budget ({over})" in body
    assert "- `pkg7/mod799.py`" in body
    assert "Not reviewed: generated or vendored (198)" in body
    assert "**Part 1 of 2**" in body
    assert "**Part 2 of 2**" in body
    placed = [(c["path"], c["line"]) for c in review["comments"]]
    assert placed == [("calc.py", 10), ("pkg4/mod450.py", 2)]  # no finding on an unseen file
    assert "critical at" not in body
    check = the_check(world, head)
    assert check["output"]["title"] == "2 findings: 2 important"
    assert f"{seen} of 1,000 files" in check["output"]["summary"]
