"""The noise budget: the gravest findings inline, up to the maximum; the rest folded."""

from __future__ import annotations

from bot.github import review_format as fmt
from bot.github.noise import folded_section, place

PATCH = "@@ -0,0 +1,20 @@\n" + "".join(f"+line {n}\n" for n in range(1, 21))
INDEX = fmt.DiffIndex.from_files([("app.py", PATCH)])


def _comment(line: int, severity: str, path: str = "app.py") -> fmt.ReviewComment:
    return fmt.ReviewComment.model_validate(
        {"path": path, "line": line, "severity": severity, "body": f"finding at {line}"}
    )


def _review(*comments: fmt.ReviewComment) -> fmt.Review:
    return fmt.Review(summary="s", verdict="comment", comments=list(comments))


def test_the_gravest_go_inline_up_to_the_maximum() -> None:
    review = _review(
        _comment(1, "suggestion"),
        _comment(2, "important"),
        _comment(3, "critical"),
        _comment(4, "important"),
        _comment(5, "important"),
    )
    placed = place(review, INDEX, min_severity="important", max_inline=3)
    assert [c["line"] for c in placed.inline] == [3, 2, 4]
    assert [c.line for c in placed.folded] == [5, 1]
    assert placed.outside == []


def test_a_finding_off_the_diff_goes_to_the_body_not_the_fold() -> None:
    review = _review(_comment(2, "critical", path="other.py"), _comment(3, "important"))
    placed = place(review, INDEX, min_severity="important", max_inline=1)
    assert [c.path for c in placed.outside] == ["other.py"]
    assert [c["line"] for c in placed.inline] == [3]
    assert placed.folded == []


def test_no_inline_comments_at_all() -> None:
    placed = place(_review(_comment(3, "critical")), INDEX, min_severity="critical", max_inline=0)
    assert placed.inline == []
    assert len(placed.folded) == 1


def test_the_folded_section_is_collapsed_and_says_why() -> None:
    section = folded_section(
        [_comment(5, "important"), _comment(1, "suggestion")],
        min_severity="important",
        max_inline=3,
    )
    assert section.startswith(
        "<details><summary>2 more findings below this repository's noise budget "
        "(inline: important and above, at most 3)</summary>"
    )
    assert "`app.py:5`" in section
    assert "finding at 1" in section
    assert section.endswith("</details>")
    assert folded_section([], min_severity="important", max_inline=3) == ""
