"""How much of a large pull request does a review see, and what does deciding it cost? Passes with
generated files set aside (this branch) next to the single-budget diff they replace (the
baseline), on the same files listed from the fake GitHub over loopback HTTP."""
# ruff: noqa: T201

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from githubkit import AppAuthStrategy, GitHub, TokenAuthStrategy

from bot.github import pr_files
from bot.github import review_format as fmt
from bot.queue.tasks import RepoRef, ReviewTask
from tests.fakes.github import FakeGitHub
from tests.helpers import rsa_key_pair

APP_ID = 515151
INSTALLATION = 5
REPO = RepoRef(owner="bench", name="big")
NUMBER = 1


def _files(sources: int, generated: int) -> list[dict[str, Any]]:
    """`sources` source files of 3 to 60 lines, and `generated` lock or vendored ones."""
    files = []
    for n in range(sources):
        lines = 3 + (n * 7) % 58
        patch = f"@@ -0,0 +1,{lines} @@\n" + "".join(
            f"+value_{n}_{i} = {i}\n" for i in range(lines)
        )
        files.append(
            {"filename": f"pkg{n // 100}/mod{n:04}.py", "additions": lines, "patch": patch}
        )
    for n in range(generated):
        files.append(
            {"filename": f"vendor/lib{n}/x.go", "additions": 1, "patch": "@@ -0,0 +1 @@\n+x\n"}
        )
    return files


async def _measure(
    gh: GitHub[Any], total: int, budget: int, passes: int, rounds: int
) -> dict[str, list[float] | int]:
    task = ReviewTask(
        run_id="b",
        delivery_id="b",
        event="pull_request",
        repo=REPO,
        sender="b",
        number=NUMBER,
        action="opened",
    )
    base_times, new_times = [], []
    base_seen = new_seen = 0
    for _ in range(rounds):
        listed = await pr_files.list_files(gh, task.repo, task.number)
        old = [(f.path, f.patch, f.changes) for f in listed]
        started = time.perf_counter()
        _diff, left_out = fmt.budget_diff(old, budget)
        base_times.append(time.perf_counter() - started)
        base_seen = len(old) - len(left_out)

        listed = await pr_files.list_files(gh, REPO, NUMBER)
        assert len(listed) == len(old)  # the same 10 pages of the per-file API either way
        started = time.perf_counter()
        plan = pr_files.plan(listed, total=total, budget_chars=budget, max_passes=passes, rules=[])
        new_times.append(time.perf_counter() - started)
        new_seen = plan.seen
    return {"base": base_times, "new": new_times, "base_seen": base_seen, "new_seen": new_seen}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sources", type=int, default=850)
    parser.add_argument("--generated", type=int, default=150)
    parser.add_argument("--budget", type=int, default=60_000, help="REVIEW_DIFF_BUDGET_CHARS")
    parser.add_argument("--passes", type=int, default=4, help="REVIEW_MAX_PASSES")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    private, public = rsa_key_pair()
    fake = FakeGitHub(APP_ID, public)
    fake.add_installation(INSTALLATION, REPO.owner, [REPO.full_name])
    fake.add_pull(
        REPO.full_name, NUMBER, "big", "a" * 40, files=_files(args.sources, args.generated)
    )
    total = args.sources + args.generated
    with fake.serving():
        app = GitHub(AppAuthStrategy(APP_ID, private), base_url=fake.url, trust_env=False)
        token = app.rest.apps.create_installation_access_token(INSTALLATION).parsed_data.token
        gh = GitHub(TokenAuthStrategy(token), base_url=fake.url, trust_env=False)
        got = asyncio.run(_measure(gh, total, args.budget, args.passes, args.rounds))
    base, new = got["base"], got["new"]
    assert isinstance(base, list)
    assert isinstance(new, list)
    print(f"PR: {total:,} files ({args.generated:,} vendored); budget {args.budget:,} chars")
    print(
        f"baseline (one budget, vendored files included): {got['base_seen']:,} of {total:,} files "
        f"shown; budget_diff median {statistics.median(base) * 1000:.1f} ms"
    )
    print(
        f"this branch ({args.passes} passes, vendored set aside): {got['new_seen']:,} of {total:,} "
        f"files shown; plan median {statistics.median(new) * 1000:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
