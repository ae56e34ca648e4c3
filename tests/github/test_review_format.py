"""Review JSON validation, diff line lookup on real `git diff` output, placement and rendering."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bot.errors import InvalidReview
from bot.github.review_format import (
    AND_MORE,
    BADGES,
    EMPTY_REVIEW,
    LEFT_OUT_FOR_LENGTH,
    MISSING_KEY,
    NO_DIFF,
    NOT_JSON,
    NOTE,
    OUTSIDE_HEADING,
    PROBLEMS,
    REVIEW_SCHEMA_TEXT,
    SEVERITY_COUNTS,
    SKIPPED_FILES,
    START_NOT_BEFORE_LINE,
    SUGGESTED_CHANGE,
    UNKNOWN_KEY,
    VERDICT_WORDS,
    DiffIndex,
    Review,
    ReviewComment,
    budget_diff,
    file_rank,
    github_event,
    parse_review,
    place_comments,
    render_body,
)

APP_BASE = "".join(f"value_{i} = {i}\n" for i in range(1, 31))


def _app_changed() -> str:
    lines = APP_BASE.splitlines(keepends=True)
    lines[4] = "value_5 = 500\n"  # old 5 → new 5
    del lines[15:17]  # old 16 and 17 removed
    lines[26:26] = ["extra_1 = 1\n", "extra_2 = 2\n"]  # new 27 and 28 added
    return "".join(lines)


BASE = {
    "app.py": APP_BASE,
    "old.txt": "gone\nsoon\n",
    "tail.py": "a = 1\nb = 2",  # no newline at end of file
    "odd.txt": "keep\n-- old\nkeep too\n",
    "logo.png": "not really a png\n",
}
HEAD = {
    "app.py": _app_changed(),
    "new.py": "def hello():\n    return 1\n",
    "tail.py": "a = 1\nb = 3\n",
    "odd.txt": "keep\n++ new\nkeep too\n",  # diff lines "--- old" / "+++ new" look like headers
    "logo.png": "still not a png\n",
}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _write(repo: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (repo / name).write_text(text)


@pytest.fixture(scope="module")
def patches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    """Each changed file's patch as GitHub's `patch` field has it: from `@@`, no trailing newline.

    The PNG stands for a binary file, which GitHub sends without a patch.
    """
    repo = tmp_path_factory.mktemp("repo")
    _git(repo, "init", "-q")
    _write(repo, BASE)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base")
    _git(repo, "tag", "base")
    (repo / "old.txt").unlink()
    _write(repo, HEAD)
    _git(repo, "add", "-A")
    result: dict[str, str | None] = {"logo.png": None}
    for name in ["app.py", "new.py", "old.txt", "tail.py", "odd.txt"]:
        diff = _git(repo, "diff", "--cached", "base", "--", name)
        result[name] = diff[diff.index("@@") :].rstrip("\n")
    return result


@pytest.fixture(scope="module")
def index(patches: dict[str, str | None]) -> DiffIndex:
    return DiffIndex.from_files(list(patches.items()))


# --- the review JSON ---------------------------------------------------------------------------


def _comment(**overrides: Any) -> dict[str, Any]:
    return {"path": "app.py", "line": 5, "severity": "important", "body": "Why 500?"} | overrides


def _review_json(**overrides: Any) -> str:
    review = {"summary": "Looks fine.", "verdict": "comment", "comments": [_comment()]}
    return json.dumps(review | overrides)


def test_valid_review_parses_with_defaults() -> None:
    review = parse_review(
        _review_json(
            comments=[_comment(), _comment(line=8, start_line=6, side="LEFT", suggestion="x")]
        )
    )

    assert review.summary == "Looks fine."
    assert review.verdict == "comment"
    first, second = review.comments
    assert (first.side, first.start_line, first.suggestion) == ("RIGHT", None, None)
    assert (second.side, second.start_line, second.line, second.suggestion) == ("LEFT", 6, 8, "x")


def test_review_in_a_code_fence_parses() -> None:
    review = parse_review(f"```json\n{_review_json()}\n```\n")

    assert review.comments[0].body == "Why 500?"


def test_comments_may_be_omitted() -> None:
    review = parse_review('{"summary": "Nothing to add.", "verdict": "approve"}')

    assert review.comments == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"summary": "x", "verdict": "comment",}',
            NOT_JSON.partition("{msg}")[0] + "Expecting property name",
        ),
        (
            '{"summary": "x",\n "verdict": }',
            NOT_JSON.format(msg="Expecting value", line=2, column=13),
        ),
        ("   \n", EMPTY_REVIEW),
        ('{"verdict": "comment"}', f"summary: {MISSING_KEY}"),
        (_review_json(summary="   "), "summary: String should have at least 1 character"),
        (
            _review_json(comments=[_comment(severity="high")]),
            "comments.0.severity: Input should be 'critical', 'important' or 'suggestion' "
            '(got "high")',
        ),
        (
            _review_json(comments=[_comment(), _comment(line=4, start_line=4)]),
            f"comments.1.start_line: {START_NOT_BEFORE_LINE.format(line=4)}",
        ),
        (
            _review_json(comments=[_comment(line=4, start_line=9)]),
            f"comments.0.start_line: {START_NOT_BEFORE_LINE.format(line=4)}",
        ),
        (_review_json(comments=[_comment(line=0)]), "comments.0.line: Input should be greater"),
        (_review_json(comments=[_comment(line="12")]), 'valid integer (got "12")'),
        (_review_json(comments=[_comment(side="right")]), "comments.0.side: Input should be"),
        (_review_json(comments=[_comment(body="")]), "comments.0.body: String should have"),
        (_review_json(verdict="APPROVE"), "verdict: Input should be 'approve', 'comment' or"),
        (
            _review_json(confidence=0.9),
            "confidence: " + UNKNOWN_KEY.format(keys="summary, verdict, comments"),
        ),
        (
            _review_json(comments=[_comment(lines=[1, 2])]),
            "comments.0.lines: " + UNKNOWN_KEY.format(keys=", ".join(ReviewComment.model_fields)),
        ),
        ("[]", "(top level): Input should be a valid dictionary"),
    ],
)
def test_invalid_review_says_exactly_what_is_wrong(text: str, expected: str) -> None:
    with pytest.raises(InvalidReview) as raised:
        parse_review(text)

    assert expected in str(raised.value)


def test_every_problem_is_listed_in_one_message() -> None:
    text = json.dumps(
        {
            "verdict": "maybe",
            "comments": [_comment(), _comment(path="", severity="nit"), _comment(line=-1)],
        }
    )

    with pytest.raises(InvalidReview) as raised:
        parse_review(text)

    lines = str(raised.value).splitlines()
    assert lines[0] == PROBLEMS.format(count=5)
    assert [line.split(":")[0] for line in lines[1:]] == [
        "- summary",
        "- verdict",
        "- comments.1.path",
        "- comments.1.severity",
        "- comments.2.line",
    ]


def test_a_flood_of_problems_stays_short() -> None:
    text = json.dumps({"summary": "x", "verdict": "comment", "comments": [{}] * 40})

    with pytest.raises(InvalidReview) as raised:
        parse_review(text)

    message = str(raised.value)
    assert PROBLEMS.format(count=160) in message
    assert AND_MORE.format(count=145) in message
    assert len(message) < 2_000


def test_schema_text_example_is_a_valid_review() -> None:
    example = REVIEW_SCHEMA_TEXT[REVIEW_SCHEMA_TEXT.index("{") :]

    review = parse_review(example)

    assert review.comments[0].severity == "critical"
    assert all(key in REVIEW_SCHEMA_TEXT for key in ReviewComment.model_fields)


# --- which lines the diff shows -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "line", "side", "expected"),
    [
        ("app.py", 5, "RIGHT", True),  # added
        ("app.py", 5, "LEFT", True),  # removed
        ("app.py", 2, "RIGHT", True),  # first context line of the first hunk
        ("app.py", 8, "LEFT", True),  # last context line of the first hunk
        ("app.py", 1, "RIGHT", False),  # before the first hunk
        ("app.py", 9, "RIGHT", False),  # between hunks
        ("app.py", 12, "LEFT", False),  # between hunks
        ("app.py", 16, "LEFT", True),  # removed
        ("app.py", 17, "LEFT", True),  # removed
        ("app.py", 16, "RIGHT", True),  # context (old 18) in new numbering
        ("app.py", 19, "LEFT", True),  # context: old 19 is new 17
        ("app.py", 20, "LEFT", True),  # hunk 2 spans old 13-20 ...
        ("app.py", 19, "RIGHT", False),  # ... but only new 13-18
        ("app.py", 27, "RIGHT", True),  # added
        ("app.py", 28, "RIGHT", True),  # added
        ("app.py", 30, "RIGHT", True),  # last line of the file, context
        ("app.py", 31, "RIGHT", False),  # past the end
        ("app.py", 31, "LEFT", False),
        ("new.py", 1, "RIGHT", True),  # new file: every line added
        ("new.py", 2, "RIGHT", True),
        ("new.py", 1, "LEFT", False),  # nothing on the old side
        ("old.txt", 2, "LEFT", True),  # deleted file: every line removed
        ("old.txt", 1, "RIGHT", False),
        ("tail.py", 2, "LEFT", True),  # removed before "\ No newline at end of file"
        ("tail.py", 2, "RIGHT", True),
        ("tail.py", 3, "RIGHT", False),
        ("odd.txt", 2, "LEFT", True),  # the "--- old" line
        ("odd.txt", 2, "RIGHT", True),  # the "+++ new" line
        ("odd.txt", 3, "RIGHT", True),
        ("logo.png", 1, "RIGHT", False),  # binary: GitHub sends no patch
        ("missing.py", 1, "RIGHT", False),  # not in the pull request
    ],
)
def test_has_line(index: DiffIndex, path: str, line: int, side: Any, expected: bool) -> None:
    assert index.has_line(path, line, side) is expected


@pytest.mark.parametrize(
    ("start", "end", "side", "expected"),
    [
        (2, 8, "RIGHT", True),  # the whole first hunk
        (4, 6, "LEFT", True),
        (14, 18, "LEFT", True),  # across the removed lines
        (1, 3, "RIGHT", False),  # starts before the hunk
        (7, 10, "RIGHT", False),  # runs past the hunk
        (5, 14, "RIGHT", False),  # spans two hunks and the gap between
        (8, 13, "RIGHT", False),
        (24, 30, "RIGHT", True),
        (6, 5, "RIGHT", False),  # backwards
    ],
)
def test_has_range_only_within_one_hunk(
    index: DiffIndex, start: int, end: int, side: Any, expected: bool
) -> None:
    assert index.has_range("app.py", start, end, side) is expected


def test_patch_with_or_without_trailing_newline_reads_the_same(
    patches: dict[str, str | None],
) -> None:
    patch = patches["app.py"]
    assert patch is not None

    bare = DiffIndex.from_files([("app.py", patch)])
    ended = DiffIndex.from_files([("app.py", patch + "\n")])

    assert bare.hunks == ended.hunks
    assert len(bare.hunks["app.py"]) == 3


def test_a_broken_patch_gives_no_lines_instead_of_failing() -> None:
    truncated = "@@ -1,5 +1,6 @@\n a\n-b\n+c"  # GitHub cuts off very large patches

    index = DiffIndex.from_files([("big.py", truncated), ("empty.py", "")])

    assert not index.has_line("big.py", 1, "RIGHT")
    assert not index.has_line("empty.py", 1, "RIGHT")


# --- placing comments ---------------------------------------------------------------------------


def _review(*comments: dict[str, Any], verdict: str = "comment") -> Review:
    return Review.model_validate(
        {"summary": "Summary.", "verdict": verdict, "comments": list(comments)}
    )


def test_comments_on_diff_lines_go_inline_the_rest_to_the_body(index: DiffIndex) -> None:
    review = _review(
        _comment(line=5, severity="critical", body="Overflow."),
        _comment(line=11, body="Outside the hunks."),
        _comment(line=8, start_line=2, severity="suggestion", body="Tidy this block."),
        _comment(line=17, side="LEFT", body="This was still used."),
        _comment(line=14, start_line=5, body="Across two hunks."),
        _comment(path="logo.png", line=1, body="Binary."),
        _comment(path="elsewhere.py", line=1, body="Not in the PR."),
    )

    inline, outside = place_comments(review, index)

    assert inline == [
        {"path": "app.py", "line": 5, "side": "RIGHT", "body": "**🔴 Critical**\n\nOverflow."},
        {
            "path": "app.py",
            "line": 8,
            "side": "RIGHT",
            "body": "**🟡 Suggestion**\n\nTidy this block.",
            "start_line": 2,
            "start_side": "RIGHT",
        },
        {
            "path": "app.py",
            "line": 17,
            "side": "LEFT",
            "body": f"{BADGES['important']}\n\nThis was still used.",
        },
    ]
    assert [c.body for c in outside] == [
        "Outside the hunks.",
        "Across two hunks.",
        "Binary.",
        "Not in the PR.",
    ]


def test_suggestion_block_on_the_right_side(index: DiffIndex) -> None:
    review = _review(_comment(line=5, suggestion="value_5 = 5\n"))

    [placed], _ = place_comments(review, index)

    assert placed["body"] == f"{BADGES['important']}\n\nWhy 500?\n\n```suggestion\nvalue_5 = 5\n```"


def test_empty_suggestion_deletes_the_lines(index: DiffIndex) -> None:
    review = _review(_comment(line=28, start_line=27, suggestion=""))

    [placed], _ = place_comments(review, index)

    assert placed["body"].endswith("```suggestion\n\n```")


def test_suggestion_on_the_left_side_is_a_plain_code_block(index: DiffIndex) -> None:
    review = _review(_comment(line=16, side="LEFT", suggestion="value_16 = 16"))

    [placed], _ = place_comments(review, index)

    assert "suggestion\n" not in placed["body"]
    assert placed["body"].endswith(SUGGESTED_CHANGE.format(fence="```", code="value_16 = 16"))


def test_suggestion_with_backticks_gets_a_longer_fence(index: DiffIndex) -> None:
    review = _review(_comment(line=5, suggestion='doc = """```py\\nx\\n```"""'))

    [placed], _ = place_comments(review, index)

    assert placed["body"].endswith('````suggestion\ndoc = """```py\\nx\\n```"""\n````')


# --- the review body ----------------------------------------------------------------------------


def _body(review: Review, index: DiffIndex, **overrides: Any) -> str:
    _, outside = place_comments(review, index)
    arguments: dict[str, Any] = {
        "outside": outside,
        "skipped_files": [],
        "run_url": None,
        "run_id": "r-1",
        "cost": 0.0,
        "read_only_note": None,
    }
    return render_body(review, **arguments | overrides)


def test_body_has_summary_counts_verdict_outside_comments_skipped_files_and_footer(
    index: DiffIndex,
) -> None:
    review = _review(
        _comment(line=5, severity="critical"),
        _comment(line=11, body="Off by one here.", suggestion="value_11 = 11"),
        _comment(line=11, start_line=9, side="LEFT", body="Keep these."),
        _comment(line=27, severity="suggestion"),
        verdict="request_changes",
    )

    body = _body(
        review,
        index,
        skipped_files=["uv.lock", "docs/guide.md"],
        run_url="https://bot.example.com/runs/r-42",
        run_id="r-42",
        cost=0.4213,
        read_only_note="reviewed without running code: fork PR",
    )

    assert body.startswith("Summary.\n\n")
    assert SEVERITY_COUNTS.format(critical=1, important=2, suggestion=1, plural="") in body
    assert VERDICT_WORDS["request_changes"] in body
    assert OUTSIDE_HEADING in body
    assert f"{BADGES['important']} · `app.py:11`\n\nOff by one here." in body
    # No suggestion block in a body:
    assert SUGGESTED_CHANGE.format(fence="```", code="value_11 = 11") in body
    assert "```suggestion" not in body
    assert f"{BADGES['important']} · `app.py:9-11` (old)\n\nKeep these." in body
    assert "Why 500?" not in body  # the inline comments stay inline
    assert SKIPPED_FILES.format(listed="- `uv.lock`\n- `docs/guide.md`") in body
    assert NOTE.format(note="reviewed without running code: fork PR") in body
    assert "$0.42" in body
    assert "[run r-42](https://bot.example.com/runs/r-42)" in body


def test_body_without_extras_leaves_their_sections_out(index: DiffIndex) -> None:
    review = _review(_comment(line=5), verdict="approve")

    body = _body(review, index, run_id="r-7", cost=1.5)

    assert SEVERITY_COUNTS.format(critical=0, important=1, suggestion=0, plural="s") in body
    assert VERDICT_WORDS["approve"] in body
    assert "###" not in body
    assert NOTE.partition("{note}")[0] not in body
    assert "run r-7" in body
    assert "](" not in body  # no link without a URL
    assert "$1.50" in body


def test_body_lists_at_most_fifty_skipped_files(index: DiffIndex) -> None:
    names = [f"gen/file_{n}.py" for n in range(60)]

    body = _body(_review(), index, skipped_files=names)

    assert "`gen/file_49.py`" in body
    assert "`gen/file_50.py`" not in body
    assert AND_MORE.format(count=10) in body


def test_body_stays_under_githubs_limit(index: DiffIndex) -> None:
    huge = "x" * 5_000
    review = _review(*[_comment(line=11, body=f"{n} {huge}") for n in range(30)])

    body = _body(review, index)

    assert len(body) < 65_536
    shown = body.count(BADGES["important"])
    assert 0 < shown < 30
    assert LEFT_OUT_FOR_LENGTH.format(count=30 - shown) in body


@pytest.mark.parametrize("verdict", ["approve", "comment", "request_changes"])
@pytest.mark.parametrize("allowed", [True, False])
def test_github_event_never_approves(verdict: Any, allowed: bool) -> None:
    event = github_event(verdict, allow_request_changes=allowed)

    expected = "REQUEST_CHANGES" if verdict == "request_changes" and allowed else "COMMENT"
    assert event == expected


# --- diff budget for the prompt ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rank"),
    [
        ("bot/app.py", 0),
        ("Dockerfile", 0),
        ("CMakeLists.txt", 0),
        (".github/workflows/ci.yml", 0),
        ("tests/test_app.py", 1),
        ("src/app_test.go", 1),
        ("web/button.test.tsx", 1),
        ("conftest.py", 1),
        ("README.md", 2),
        ("docs/setup.py", 2),
        ("LICENSE", 2),
        ("uv.lock", 3),
        ("web/package-lock.json", 3),
        ("go.sum", 3),
        ("static/app.min.js", 3),
        ("vendor/github.com/x/y.go", 3),
        ("web/dist/index.js", 3),
        ("node_modules/left-pad/index.js", 3),
    ],
)
def test_file_rank(name: str, rank: int) -> None:
    assert file_rank(name) == rank


def _patch(lines: int) -> str:
    return f"@@ -0,0 +1,{lines} @@\n" + "".join(f"+line {n}\n" for n in range(lines))


FILES: list[tuple[str, str | None, int]] = [
    ("uv.lock", _patch(40), 40),
    ("README.md", _patch(3), 3),
    ("tests/test_app.py", _patch(10), 10),
    ("bot/small.py", _patch(2), 2),
    ("bot/big.py", _patch(20), 20),
    ("static/logo.png", None, 0),
]


def _order(text: str) -> list[str]:
    return [line.split(" b/")[1] for line in text.splitlines() if line.startswith("diff --git")]


def test_budget_orders_source_tests_docs_then_generated() -> None:
    text, left_out = budget_diff(FILES, 1_000_000)

    assert _order(text) == [
        "bot/big.py",
        "bot/small.py",
        "static/logo.png",
        "tests/test_app.py",
        "README.md",
        "uv.lock",
    ]
    assert left_out == []
    assert "diff --git a/bot/big.py b/bot/big.py\n@@ -0,0 +1,20 @@\n+line 0\n" in text
    assert f"diff --git a/static/logo.png b/static/logo.png\n{NO_DIFF}\n" in text


def test_budget_leaves_out_what_does_not_fit_and_keeps_trying_smaller_files() -> None:
    full, _ = budget_diff(FILES, 1_000_000)
    without_tests = len(full) - len(budget_diff([FILES[2]], 1_000_000)[0])
    without_tests_and_lock = without_tests - len(budget_diff([FILES[0]], 1_000_000)[0])

    text, left_out = budget_diff(FILES, without_tests_and_lock)

    assert len(text) == without_tests_and_lock
    assert left_out == ["tests/test_app.py", "uv.lock"]
    assert _order(text) == ["bot/big.py", "bot/small.py", "static/logo.png", "README.md"]


def test_budget_too_small_for_anything_leaves_everything_out() -> None:
    text, left_out = budget_diff(FILES, 10)

    assert text == ""
    assert sorted(left_out) == sorted(name for name, _, _ in FILES)
