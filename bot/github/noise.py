"""The noise budget: which findings are posted inline (the most severe first, at or above the
repository's minimum severity, at most its maximum count) and which are folded into the summary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.github import review_format as fmt

SEVERITY_RANK = {"critical": 0, "important": 1, "suggestion": 2}
FOLDED = (
    "<details><summary>{count} more finding{s} below this repository's noise budget "
    "(inline: {min_severity} and above, at most {max_inline})</summary>\n\n{items}\n\n</details>"
)


@dataclass(frozen=True, slots=True)
class Placement:
    inline: list[dict[str, Any]]  # GitHub review-comment dicts
    outside: list[fmt.ReviewComment]  # meant inline, but not on a line of the diff
    folded: list[fmt.ReviewComment]  # below the minimum severity or over the maximum count


def place(
    review: fmt.Review, index: fmt.DiffIndex, *, min_severity: str, max_inline: int
) -> Placement:
    """Most severe first: each finding at or above `min_severity` goes inline while there is
    room and its line is in the diff (else into the body's outside-the-diff list); the rest are
    folded. Findings keep the agent's order within a severity."""
    floor = SEVERITY_RANK[min_severity]
    ranked = sorted(review.comments, key=lambda c: SEVERITY_RANK[c.severity])
    inline: list[dict[str, Any]] = []
    outside: list[fmt.ReviewComment] = []
    folded: list[fmt.ReviewComment] = []
    for comment in ranked:
        if SEVERITY_RANK[comment.severity] > floor or len(inline) >= max_inline:
            folded.append(comment)
            continue
        placed, missed = fmt.place_comments(
            review.model_copy(update={"comments": [comment]}), index
        )
        inline += placed
        outside += missed
    return Placement(inline, outside, folded)


def folded_section(folded: list[fmt.ReviewComment], *, min_severity: str, max_inline: int) -> str:
    """The folded findings as one collapsed block of the summary ("" when there are none)."""
    if not folded:
        return ""
    blocks: list[str] = []
    used = 0
    for shown, comment in enumerate(folded):
        block = fmt.render_comment(comment, inline=False)
        if used + len(block) > fmt.MAX_OUTSIDE_CHARS:
            blocks.append(fmt.LEFT_OUT_FOR_LENGTH.format(count=len(folded) - shown))
            break
        blocks.append(block)
        used += len(block)
    items = "\n\n".join(blocks)
    return FOLDED.format(
        count=len(folded),
        s="" if len(folded) == 1 else "s",
        min_severity=min_severity,
        max_inline=max_inline,
        items=items,
    )
