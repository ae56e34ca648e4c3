"""Automatic PR review: check the agent's review JSON, place its comments on the diff, render it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails
from unidiff.errors import UnidiffParseError
from unidiff.patch import PatchSet

from bot.errors import InvalidReview

Severity = Literal["critical", "important", "suggestion"]
Side = Literal["RIGHT", "LEFT"]
Verdict = Literal["approve", "comment", "request_changes"]
Event = Literal["COMMENT", "REQUEST_CHANGES"]

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]

MAX_LISTED_ERRORS = 15
MAX_LISTED_FILES = 50
MAX_OUTSIDE_CHARS = 40_000  # GitHub rejects review bodies over 65,536 characters

BADGES: dict[str, str] = {
    "critical": "**🔴 Critical**",
    "important": "**🟠 Important**",
    "suggestion": "**🟡 Suggestion**",
}
VERDICT_WORDS: dict[str, str] = {
    "approve": "✅ No blocking problems found.",
    "comment": "💬 Comments only; nothing blocking.",
    "request_changes": "❌ Changes requested before merging.",
}
# What the agent is told about an unusable review, and the review as GitHub shows it.
EMPTY_REVIEW = "The review is empty; write the review JSON object."
NOT_JSON = "The review is not valid JSON: {msg} at line {line}, column {column}."
PROBLEMS = "The review JSON has {count} problem(s):"
AND_MORE = "- … and {count} more"
MISSING_KEY = "required key is missing"
UNKNOWN_KEY = "unknown key; allowed keys are {keys}"
START_NOT_BEFORE_LINE = "must be less than line ({line}); omit it for a one-line comment"
SEVERITY_COUNTS = "{critical} critical · {important} important · {suggestion} suggestion{plural}"
SUGGESTED_CHANGE = "Suggested change:\n{fence}\n{code}\n{fence}"
OUTSIDE_HEADING = "### Comments outside the diff"
LEFT_OUT_FOR_LENGTH = "… and {count} more comment(s) left out for length."
SKIPPED_FILES = (
    "### Files not reviewed\nThe diff was too large to review in full; these files were left "
    "out:\n{listed}"
)
NOTE = "> **Note:** {note}"
# In the agent's prompt, for a file GitHub shows no patch for.
NO_DIFF = "(no diff shown: binary or too large)"


class ReviewComment(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    path: NonEmpty
    line: int = Field(ge=1)
    side: Side = "RIGHT"
    start_line: int | None = Field(default=None, ge=1)
    severity: Severity
    body: NonEmpty
    suggestion: str | None = None
    rule: str | None = Field(default=None, max_length=80)  # part of the finding's fingerprint

    @field_validator("start_line")
    @classmethod
    def _start_before_line(cls, value: int | None, info: ValidationInfo) -> int | None:
        line = info.data.get("line")
        if value is not None and isinstance(line, int) and value >= line:
            raise ValueError(START_NOT_BEFORE_LINE.format(line=line))
        return value


class Review(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    summary: NonEmpty
    verdict: Verdict
    comments: list[ReviewComment] = Field(default_factory=list)


REVIEW_SCHEMA_TEXT = """\
Write the review as one JSON object (no other text) with exactly these keys:
- "summary": string, non-empty; the overall assessment in Markdown.
- "verdict": "approve" | "comment" | "request_changes".
- "comments": list (may be empty) of objects with keys:
  - "path": file path as shown in the diff (e.g. "src/app.py").
  - "line": integer >= 1; the line the comment is about (for ranges, the last line).
  - "side": "RIGHT" (new file's line numbers; default) or "LEFT" (old file's, for removed lines).
  - "start_line": integer < line for a multi-line range, or null.
  - "severity": "critical" (bug, security, data loss) | "important" (should fix) | "suggestion".
  - "body": string, non-empty; what is wrong and why, in Markdown.
  - "suggestion": replacement text for lines start_line..line (or just line), or null.
    It replaces those lines exactly, so keep their indentation; "" deletes them.
  - "rule": a short kebab-case name of the kind of problem (e.g. "sql-injection"), or null.
Only lines inside the diff's hunks can get inline comments; others go into the review body.
Example:
{"summary": "Adds retry logic; one bug in the backoff.", "verdict": "request_changes",
 "comments": [{"path": "src/net.py", "line": 42, "side": "RIGHT", "start_line": null,
   "severity": "critical", "body": "`delay` never grows, so retries hammer the server.",
   "suggestion": "        delay *= 2"}]}
"""


def parse_review(text: str) -> Review:
    """The agent's review, or `InvalidReview` listing what is wrong with it."""
    text = _unfence(text.lstrip("\ufeff").strip())
    if not text:
        raise InvalidReview(EMPTY_REVIEW)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidReview(
            NOT_JSON.format(msg=exc.msg, line=exc.lineno, column=exc.colno)
        ) from None
    try:
        return Review.model_validate(data)
    except ValidationError as exc:
        raise InvalidReview(_describe(exc)) from None


def _unfence(text: str) -> str:
    """The JSON inside one surrounding Markdown code fence, which agents often add."""
    match = re.fullmatch(r"```[a-zA-Z]*\n(.*)\n```", text, re.DOTALL)
    return match.group(1) if match else text


def _describe(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    lines = [PROBLEMS.format(count=len(errors))]
    for error in errors[:MAX_LISTED_ERRORS]:
        loc = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"- {loc}: {_message(error)}")
    if len(errors) > MAX_LISTED_ERRORS:
        lines.append(AND_MORE.format(count=len(errors) - MAX_LISTED_ERRORS))
    return "\n".join(lines)


def _message(error: ErrorDetails) -> str:
    if error["type"] == "missing":
        return MISSING_KEY
    if error["type"] == "extra_forbidden":
        model = ReviewComment if len(error["loc"]) > 1 else Review
        return UNKNOWN_KEY.format(keys=", ".join(model.model_fields))
    msg = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    if isinstance(value, str | int | float | bool) or value is None:
        shown = json.dumps(value, ensure_ascii=False)
        msg += f" (got {shown[:60] + '…' if len(shown) > 60 else shown})"
    return msg


@dataclass(frozen=True, slots=True)
class _Hunk:
    right: frozenset[int]  # new-file line numbers of added and context lines
    left: frozenset[int]  # old-file line numbers of removed and context lines

    def lines(self, side: Side) -> frozenset[int]:
        return self.right if side == "RIGHT" else self.left


@dataclass(frozen=True, slots=True)
class DiffIndex:
    """Which lines of which files a pull request's diff shows, hunk by hunk."""

    hunks: dict[str, tuple[_Hunk, ...]]

    @classmethod
    def from_files(cls, files: list[tuple[str, str | None]]) -> DiffIndex:
        """From `GET /pulls/{n}/files` (filename, patch); a missing or unparsable patch has no
        lines."""
        return cls({path: _parse_patch(path, patch) for path, patch in files})

    def has_line(self, path: str, line: int, side: Side = "RIGHT") -> bool:
        return any(line in hunk.lines(side) for hunk in self.hunks.get(path, ()))

    def has_range(self, path: str, start: int, end: int, side: Side = "RIGHT") -> bool:
        """Whether lines start..end (inclusive) all lie in one hunk, as GitHub requires."""
        wanted = set(range(start, end + 1))
        return bool(wanted) and any(wanted <= h.lines(side) for h in self.hunks.get(path, ()))


def _parse_patch(path: str, patch: str | None) -> tuple[_Hunk, ...]:
    if not patch:
        return ()
    text = f"--- a/{path}\n+++ b/{path}\n{patch}" + ("" if patch.endswith("\n") else "\n")
    try:
        patched = PatchSet(text)
    except UnidiffParseError:
        return ()
    return tuple(
        _Hunk(
            right=frozenset(ln.target_line_no for ln in hunk.target_lines() if ln.target_line_no),
            left=frozenset(ln.source_line_no for ln in hunk.source_lines() if ln.source_line_no),
        )
        for patched_file in patched
        for hunk in patched_file
    )


def place_comments(
    review: Review, index: DiffIndex
) -> tuple[list[dict[str, Any]], list[ReviewComment]]:
    """GitHub review-comment dicts for the comments on diff lines, and the comments that aren't."""
    inline: list[dict[str, Any]] = []
    outside: list[ReviewComment] = []
    for comment in review.comments:
        start = comment.start_line
        if start is None:
            fits = index.has_line(comment.path, comment.line, comment.side)
        else:
            fits = index.has_range(comment.path, start, comment.line, comment.side)
        if not fits:
            outside.append(comment)
            continue
        placed: dict[str, Any] = {
            "path": comment.path,
            "line": comment.line,
            "side": comment.side,
            "body": render_comment(comment, inline=True),
        }
        if start is not None:
            placed |= {"start_line": start, "start_side": comment.side}
        inline.append(placed)
    return inline, outside


def render_comment(comment: ReviewComment, *, inline: bool) -> str:
    """Badge, text and the suggested change: a GitHub suggestion block only inline on RIGHT.

    Out of line (in the review body) the badge is followed by where the comment belongs.
    """
    badge = BADGES[comment.severity]
    parts = [badge if inline else f"{badge} · {_location(comment)}", comment.body]
    if comment.suggestion is not None:
        code = comment.suggestion.removesuffix("\n")
        fence = "`" * max(3, _longest_backtick_run(code) + 1)
        if inline and comment.side == "RIGHT":
            parts.append(f"{fence}suggestion\n{code}\n{fence}")
        else:
            parts.append(SUGGESTED_CHANGE.format(fence=fence, code=code))
    return "\n\n".join(parts)


def _longest_backtick_run(text: str) -> int:
    return max((len(run) for run in re.findall(r"`+", text)), default=0)


def _location(comment: ReviewComment) -> str:
    lines = f"{comment.start_line}-{comment.line}" if comment.start_line else str(comment.line)
    old = " (old)" if comment.side == "LEFT" else ""
    return f"`{comment.path}:{lines}`{old}"


def severity_counts(review: Review) -> str:
    """E.g. "1 critical · 2 important · 0 suggestions"."""
    count = {s: sum(c.severity == s for c in review.comments) for s in BADGES}
    plural = "" if count["suggestion"] == 1 else "s"
    return SEVERITY_COUNTS.format(
        critical=count["critical"],
        important=count["important"],
        suggestion=count["suggestion"],
        plural=plural,
    )


def render_body(
    review: Review,
    *,
    outside: list[ReviewComment],
    skipped_files: list[str],
    run_url: str | None,
    run_id: str,
    cost: float,
    read_only_note: str | None,
    sections: list[str] | None = None,
) -> str:
    """The review's body: summary, counts, verdict, unplaced comments, skipped files, `sections`
    (e.g. coverage, folded findings), footer."""
    parts = [
        review.summary,
        f"**Verdict:** {VERDICT_WORDS[review.verdict]}\n**Comments:** {severity_counts(review)}",
    ]
    if outside:
        parts.append(_outside_section(outside))
    if skipped_files:
        listed = "\n".join(f"- `{name}`" for name in skipped_files[:MAX_LISTED_FILES])
        more = len(skipped_files) - MAX_LISTED_FILES
        listed += ("\n" + AND_MORE.format(count=more)) if more > 0 else ""
        parts.append(SKIPPED_FILES.format(listed=listed))
    parts += sections or []
    if read_only_note:
        parts.append(NOTE.format(note=read_only_note))
    run = f"[run {run_id}]({run_url})" if run_url else f"run {run_id}"
    parts.append(f"<sub>Automatic review by OpenHands · {run} · cost ${cost:.2f}</sub>")
    return "\n\n".join(parts)


def _outside_section(outside: list[ReviewComment]) -> str:
    lines = [OUTSIDE_HEADING]
    used = 0
    for shown, comment in enumerate(outside):
        block = render_comment(comment, inline=False)
        if used + len(block) > MAX_OUTSIDE_CHARS:
            lines.append(LEFT_OUT_FOR_LENGTH.format(count=len(outside) - shown))
            break
        lines.append(block)
        used += len(block)
    return "\n\n".join(lines)


def github_event(verdict: Verdict, *, allow_request_changes: bool) -> Event:
    """The review event to post: never APPROVE; REQUEST_CHANGES only when allowed."""
    if verdict == "request_changes" and allow_request_changes:
        return "REQUEST_CHANGES"
    return "COMMENT"


_LOCK_FILES = frozenset(
    "uv.lock poetry.lock pipfile.lock package-lock.json npm-shrinkwrap.json yarn.lock "
    "pnpm-lock.yaml bun.lockb cargo.lock gemfile.lock composer.lock go.sum flake.lock "
    "podfile.lock packages.lock.json".split()
)
_GENERATED_DIRS = {
    "vendor",
    "node_modules",
    "dist",
    "third_party",
    "__generated__",
    "__snapshots__",
}
_GENERATED_SUFFIXES = (".lock", ".min.js", ".min.css", ".map", ".snap", "_pb2.py", ".pb.go")
_TEST_DIRS = {"test", "tests", "__tests__", "spec", "specs", "testing"}
_TEST_NAME = re.compile(r"(^test_.*|.*_test\.\w+|.*\.(test|spec)\.\w+|conftest\.py)$")
_DOC_DIRS = {"doc", "docs", "documentation"}
_DOC_SUFFIXES = (".md", ".rst", ".adoc")
_DOC_NAMES = {"license", "licence", "changelog", "authors", "notice", "contributing"}


def file_rank(filename: str) -> int:
    """0 source, 1 tests, 2 docs, 3 lock files, vendored, minified or generated files."""
    path = PurePosixPath(filename.lower())
    dirs = set(path.parts[:-1])
    if (
        path.name in _LOCK_FILES
        or path.name.endswith(_GENERATED_SUFFIXES)
        or dirs & _GENERATED_DIRS
    ):
        return 3
    if dirs & _DOC_DIRS or path.name.endswith(_DOC_SUFFIXES) or path.stem in _DOC_NAMES:
        return 2
    if dirs & _TEST_DIRS or _TEST_NAME.match(path.name):
        return 1
    return 0


def budget_diff(files: list[tuple[str, str | None, int]], max_chars: int) -> tuple[str, list[str]]:
    """The most important files' diffs that fit in `max_chars`, and the files left out.

    A file GitHub gives no patch for (binary or too large) gets a one-line stub, not a place in
    the left-out list; a file too big for what is left is skipped and smaller ones still tried.
    """
    ordered = sorted(files, key=lambda f: (file_rank(f[0]), -f[2], f[0]))
    sections: list[str] = []
    left_out: list[str] = []
    used = 0
    for name, patch, _changes in ordered:
        body = patch if patch is not None else NO_DIFF
        section = f"diff --git a/{name} b/{name}\n{body.removesuffix('\n')}\n"
        if used + len(section) > max_chars:
            left_out.append(name)
            continue
        sections.append(section)
        used += len(section)
    return "".join(sections), left_out
