"""A pull request's changed files as the review sees them: listed file by file (GitHub serves up
to 3,000, where one diff call fails on large PRs), generated and vendored files set aside by
name, the rest packed into review passes of one diff budget each, and the coverage stated."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from githubkit import GitHub

from bot.github.review_format import NO_DIFF, file_rank
from bot.queue.tasks import RepoRef

PER_PAGE = 100
MAX_LISTED = 3000  # GitHub's limit on `GET /pulls/{n}/files`
MAX_LISTED_NAMES = 50
GENERATED_RANK = 3  # review_format.file_rank: lock files, minified, vendored, generated
COVERAGE = "**Coverage:** {seen:,} of {total:,} files reviewed{passes}{gaps}."
IN_PASSES = " in {count} passes"
GAP_GENERATED = "{count:,} generated or vendored skipped"
GAP_OVER_BUDGET = "{count:,} over budget"
GAP_UNLISTED = "{count:,} not listed by GitHub (it lists {limit:,} at most)"
LISTED = " — listed below"
OVER_BUDGET_LIST = "Not reviewed: over the diff budget ({count:,})"
GENERATED_LIST = "Not reviewed: generated or vendored ({count:,})"
AND_MORE = "- … and {count:,} more"


@dataclass(frozen=True, slots=True)
class ChangedFile:
    path: str
    patch: str | None  # None: binary, or too large for GitHub to show
    changes: int

    def section(self) -> str:
        """This file's part of the diff the agent is shown."""
        body = self.patch if self.patch is not None else NO_DIFF
        return f"diff --git a/{self.path} b/{self.path}\n{body.removesuffix(chr(10))}\n"


@dataclass(frozen=True, slots=True)
class ReviewPass:
    """The files one agent conversation reviews, and the diff it is shown."""

    files: tuple[ChangedFile, ...]

    @property
    def paths(self) -> frozenset[str]:
        return frozenset(f.path for f in self.files)

    @property
    def diff(self) -> str:
        return "".join(f.section() for f in self.files)


@dataclass(slots=True)
class Plan:
    """Every changed file accounted for: in a pass, generated, over budget, or never listed."""

    total: int
    passes: list[ReviewPass] = field(default_factory=list)
    generated: list[str] = field(default_factory=list)
    over_budget: list[str] = field(default_factory=list)

    @property
    def seen(self) -> int:
        return sum(len(p.files) for p in self.passes)

    @property
    def unlisted(self) -> int:
        return max(self.total - self.seen - len(self.generated) - len(self.over_budget), 0)

    def coverage(self) -> str:
        """E.g. "**Coverage:** 812 of 1,000 files reviewed in 3 passes; 150 generated or
        vendored skipped, 38 over budget — listed below."."""
        gaps = []
        if self.generated:
            gaps.append(GAP_GENERATED.format(count=len(self.generated)))
        if self.over_budget:
            gaps.append(GAP_OVER_BUDGET.format(count=len(self.over_budget)))
        if self.unlisted:
            gaps.append(GAP_UNLISTED.format(count=self.unlisted, limit=MAX_LISTED))
        listed = LISTED if self.generated or self.over_budget else ""
        return COVERAGE.format(
            seen=self.seen,
            total=self.total,
            passes=IN_PASSES.format(count=len(self.passes)) if len(self.passes) > 1 else "",
            gaps=("; " + ", ".join(gaps) + listed) if gaps else "",
        )

    def left_out(self) -> list[str]:
        """The files over budget, as the agent's prompt names them (the first 50)."""
        more = len(self.over_budget) - MAX_LISTED_NAMES
        return self.over_budget[:MAX_LISTED_NAMES] + ([f"… and {more:,} more"] if more > 0 else [])

    def section(self) -> str:
        """The coverage line and, folded, the files that were not reviewed."""
        parts = [self.coverage()]
        for title, names in (
            (OVER_BUDGET_LIST, self.over_budget),
            (GENERATED_LIST, self.generated),
        ):
            if names:
                parts.append(_folded(title.format(count=len(names)), names))
        return "\n\n".join(parts)


def _folded(title: str, names: list[str]) -> str:
    # A file name is the PR author's text: it must not leave its code span (a mention, a link).
    shown = "\n".join(
        f"- `{' '.join(name.replace('`', chr(39)).split())}`" for name in names[:MAX_LISTED_NAMES]
    )
    if len(names) > MAX_LISTED_NAMES:
        shown += "\n" + AND_MORE.format(count=len(names) - MAX_LISTED_NAMES)
    return f"<details><summary>{title}</summary>\n\n{shown}\n\n</details>"


async def list_files(gh: GitHub[Any], repo: RepoRef, number: int) -> list[ChangedFile]:
    """The changed files, 100 a page, up to GitHub's 3,000."""
    files: list[ChangedFile] = []
    for page in range(1, MAX_LISTED // PER_PAGE + 1):
        response = await gh.rest.pulls.async_list_files(
            repo.owner, repo.name, number, per_page=PER_PAGE, page=page
        )
        batch: list[Any] = list(response.parsed_data)
        for item in batch:
            patch = item.patch if isinstance(item.patch, str) else None
            files.append(ChangedFile(item.filename, patch, int(item.changes or 0)))
        if len(batch) < PER_PAGE:
            break
    return files


def linguist_generated(gitattributes: str | None) -> list[tuple[re.Pattern[str], bool]]:
    """The `.gitattributes` lines that set or unset `linguist-generated`: (pattern, generated).
    Later lines win, as in git."""
    rules: list[tuple[re.Pattern[str], bool]] = []
    for raw in (gitattributes or "").splitlines()[:5000]:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pattern, *attributes = line.split()
        for attribute in attributes:
            name, _, value = attribute.partition("=")
            if name == "linguist-generated":
                rules.append((_glob(pattern), value.lower() not in {"false", "0"}))
            elif name in {"-linguist-generated", "!linguist-generated"}:
                rules.append((_glob(pattern), False))
    return rules


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    """A gitattributes pattern as a regex on the repository-relative path: no slash matches the
    name at any depth; `*` stays within a directory; `**` crosses them."""
    anchored = "/" in pattern.rstrip("/")
    pattern = pattern.strip("/")
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    body = "".join(out)
    return re.compile(body + "(?:/.*)?" if anchored else f"(?:.*/)?{body}(?:/.*)?")


def is_generated(
    path: str, rules: list[tuple[re.Pattern[str], bool]], rank: int | None = None
) -> bool:
    """Lock files, minified and vendored files, and paths `.gitattributes` marks generated
    (`rank`: the path's `file_rank`, when known already)."""
    marked: bool | None = None
    for pattern, generated in rules:
        if pattern.fullmatch(path):
            marked = generated
    if marked is not None:
        return marked
    return (file_rank(path) if rank is None else rank) >= GENERATED_RANK


def plan(
    files: list[ChangedFile],
    *,
    total: int,
    budget_chars: int,
    max_passes: int,
    rules: list[tuple[re.Pattern[str], bool]],
) -> Plan:
    """Generated files aside; the rest, source first and each directory together, packed into at
    most `max_passes` passes of `budget_chars` each (first fit); what fits none is over budget."""
    result = Plan(total=max(total, len(files)))
    loads: list[int] = []
    members: list[list[ChangedFile]] = []
    ranks = {f.path: file_rank(f.path) for f in files}
    ordered = sorted(files, key=lambda f: (ranks[f.path], f.path.rpartition("/")[0], f.path))
    for item in ordered:
        if is_generated(item.path, rules, ranks[item.path]):
            result.generated.append(item.path)
            continue
        size = len(item.section())
        slot = next((i for i, load in enumerate(loads) if load + size <= budget_chars), None)
        if slot is None and len(loads) < max_passes and size <= budget_chars:
            loads.append(0)
            members.append([])
            slot = len(loads) - 1
        if slot is None:
            result.over_budget.append(item.path)
            continue
        loads[slot] += size
        members[slot].append(item)
    result.passes = [ReviewPass(tuple(group)) for group in members]
    return result
