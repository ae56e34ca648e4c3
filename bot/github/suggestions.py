"""A committable suggestion only when it applies: its line range exists in the pull request's new
file at the reviewed commit, and the file still parses once it is applied (Python, JSON, YAML,
TOML). Otherwise the code is kept as plain text, with a note saying why it is not committable."""

from __future__ import annotations

import ast
import json
import logging
import re
import tomllib
import warnings
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

import yaml
from githubkit import GitHub
from githubkit.exception import GitHubException

from bot.github import reads
from bot.github import review_format as fmt
from bot.queue.tasks import RepoRef

log = logging.getLogger(__name__)

NOT_COMMITTABLE = "_Not offered as a committable suggestion: {reason}._"
NO_SUCH_LINES = "lines {start}-{end} are not in the file at this commit (it has {count})"
NO_FILE = "the file could not be read at this commit"
BREAKS_PARSE = "applied, it leaves the file invalid {language} ({error})"
MAX_FILE_CHARS = 2_000_000


def _python(text: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. invalid escape sequences: not our business here
        ast.parse(text)


def _yaml(text: str) -> None:
    for _ in yaml.safe_load_all(text):
        pass


PARSERS: dict[str, tuple[str, Callable[[str], object]]] = {
    ".py": ("Python", _python),
    ".pyi": ("Python", _python),
    ".json": ("JSON", json.loads),
    ".yml": ("YAML", _yaml),
    ".yaml": ("YAML", _yaml),
    ".toml": ("TOML", tomllib.loads),
}


def apply(text: str, start: int, end: int, replacement: str) -> str | None:
    """`text` with lines start..end (1-based, inclusive) replaced, or None if it lacks them."""
    lines = text.splitlines(keepends=True)
    if not 1 <= start <= end <= len(lines):
        return None
    new = replacement.removesuffix("\n")
    tail = "\n" if lines[end - 1].endswith("\n") else ""
    middle = [new + tail] if new or replacement else []
    return "".join(lines[: start - 1] + middle + lines[end:])


def _parse_error(path: str, text: str) -> tuple[str, str] | None:
    """(language, error) when `text` does not parse as its file type says, else None."""
    known = PARSERS.get(PurePosixPath(path).suffix.lower())
    if known is None:
        return None
    language, parse = known
    try:
        parse(text)
    except (SyntaxError, ValueError, yaml.YAMLError, RecursionError, MemoryError) as exc:
        return language, type(exc).__name__
    return None


def problem(path: str, text: str | None, start: int, end: int, replacement: str) -> str | None:
    """Why this suggestion cannot be committed, or None when it applies cleanly."""
    if text is None:
        return NO_FILE
    applied = apply(text, start, end, replacement)
    if applied is None:
        count = len(text.splitlines())
        return NO_SUCH_LINES.format(start=start, end=end, count=count)
    if _parse_error(path, text) is not None:
        return None  # it did not parse before either (a template?): not the suggestion's fault
    broken = _parse_error(path, applied)
    if broken is not None:
        return BREAKS_PARSE.format(language=broken[0], error=broken[1])
    return None


def as_text(comment: fmt.ReviewComment, reason: str) -> fmt.ReviewComment:
    """The comment with its suggestion as a plain code block and a note, not a suggestion."""
    code = (comment.suggestion or "").removesuffix("\n")
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    body = "\n\n".join(
        [
            comment.body,
            fmt.SUGGESTED_CHANGE.format(fence=fence, code=code),
            NOT_COMMITTABLE.format(reason=reason),
        ]
    )
    return comment.model_copy(update={"body": body, "suggestion": None})


async def vet(
    gh: GitHub[Any], repo: RepoRef, head_sha: str, review: fmt.Review
) -> tuple[fmt.Review, int]:
    """The review with every suggestion that would not apply turned into text; how many were."""
    texts: dict[str, str | None] = {}
    comments: list[fmt.ReviewComment] = []
    demoted = 0
    for comment in review.comments:
        if comment.suggestion is None or comment.side != "RIGHT":
            comments.append(comment)
            continue
        if comment.path not in texts:
            texts[comment.path] = await _text_at(gh, repo, comment.path, head_sha)
        start = comment.start_line or comment.line
        reason = problem(comment.path, texts[comment.path], start, comment.line, comment.suggestion)
        if reason is None:
            comments.append(comment)
        else:
            comments.append(as_text(comment, reason))
            demoted += 1
    return review.model_copy(update={"comments": comments}), demoted


async def _text_at(gh: GitHub[Any], repo: RepoRef, path: str, sha: str) -> str | None:
    try:
        found = await reads.file_with_sha(gh, repo, path, sha)
    except GitHubException as exc:
        log.warning("could not read %s at %s: %s", path, sha[:7], type(exc).__name__)
        return None
    if found is None or len(found[1]) > MAX_FILE_CHARS:
        return None
    return found[1]
