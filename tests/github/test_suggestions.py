"""Suggestions are committable only when they apply to the new file and leave it parsing."""

from __future__ import annotations

import pytest

from bot.github import review_format as fmt
from bot.github.suggestions import (
    BREAKS_PARSE,
    NO_FILE,
    NO_SUCH_LINES,
    NOT_COMMITTABLE,
    apply,
    as_text,
    problem,
)

PY = "def f(x):\n    return x + 1\n\n\nprint(f(2))\n"


def test_apply_replaces_exactly_the_range() -> None:
    assert apply(PY, 2, 2, "    return x + 2") == PY.replace("x + 1", "x + 2")
    assert apply("a\nb\nc\n", 1, 2, "z\n") == "z\nc\n"
    assert apply("a\nb\nc\n", 2, 3, "") == "a\n"  # "" deletes the lines
    assert apply("a\nb", 2, 2, "c") == "a\nc"  # no newline at the end stays so


@pytest.mark.parametrize(("start", "end"), [(0, 1), (5, 6), (3, 2), (6, 6)])
def test_apply_refuses_lines_the_file_lacks(start: int, end: int) -> None:
    assert apply(PY, start, end, "x") is None


@pytest.mark.parametrize(
    ("path", "text", "start", "end", "replacement"),
    [
        ("app.py", PY, 2, 2, "    return x + 2"),
        ("conf.json", '{\n  "a": 1,\n  "b": 2\n}\n', 2, 2, '  "a": 3,'),
        ("ci.yml", "on: push\njobs:\n  x: 1\n", 3, 3, "  x: 2"),
        ("pyproject.toml", '[tool]\nname = "a"\n', 2, 2, 'name = "b"'),
        ("notes.txt", "anything\n", 1, 1, "{{{ not parsed"),  # no parser: the range suffices
        ("tpl.py", "{% if x %}\nprint(1)\n", 2, 2, "print(2"),  # did not parse before either
    ],
)
def test_a_suggestion_that_applies_and_parses_is_committable(
    path: str, text: str, start: int, end: int, replacement: str
) -> None:
    assert problem(path, text, start, end, replacement) is None


@pytest.mark.parametrize(
    ("path", "text", "start", "end", "replacement", "language"),
    [
        ("app.py", PY, 2, 2, "    return (x + 2", "Python"),
        ("app.py", PY, 1, 1, "def f(x)", "Python"),
        ("conf.json", '{\n  "a": 1,\n  "b": 2\n}\n', 2, 2, '  "a": 3', "JSON"),
        ("ci.yaml", "on: push\njobs:\n  x: 1\n", 3, 3, "  x: [1", "YAML"),
        ("pyproject.toml", '[tool]\nname = "a"\n', 2, 2, "name = ", "TOML"),
    ],
)
def test_a_suggestion_that_breaks_the_file_is_not(
    path: str, text: str, start: int, end: int, replacement: str, language: str
) -> None:
    reason = problem(path, text, start, end, replacement)
    assert reason is not None
    assert reason.startswith(BREAKS_PARSE.format(language=language, error="").split("(")[0])


def test_a_range_outside_the_file_or_an_unreadable_file_is_not() -> None:
    assert problem("app.py", PY, 9, 10, "x") == NO_SUCH_LINES.format(start=9, end=10, count=5)
    assert problem("app.py", None, 1, 1, "x") == NO_FILE


def test_as_text_keeps_the_code_as_a_plain_block_with_the_reason() -> None:
    comment = fmt.ReviewComment(
        path="app.py",
        line=2,
        severity="important",
        body="Off by one.",
        suggestion="    return ```x``` + 2",
    )
    plain = as_text(comment, "why not")
    assert plain.suggestion is None
    rendered = fmt.render_comment(plain, inline=True)
    assert "```suggestion" not in rendered
    assert "````\n    return ```x``` + 2\n````" in rendered  # a fence longer than any run inside
    assert NOT_COMMITTABLE.format(reason="why not") in rendered
    assert rendered.startswith(fmt.BADGES["important"] + "\n\nOff by one.")
