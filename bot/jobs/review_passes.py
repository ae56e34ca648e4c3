"""A review in passes: one agent conversation per pass of the plan, their reviews merged, and no
finding kept about a file that pass did not show the agent.

Why separate conversations rather than several prompts in one: each pass then has the whole
context window for its one diff budget (a second prompt in the same conversation would carry the
first pass's diff and tool output along, and pay for it again on every step), a pass that goes
wrong cannot derail the others, and each pass is a conversation the existing run machinery already
resumes, stops and prices. The price is one checkout per pass, seconds next to the LLM's minutes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from githubkit import GitHub

from bot.agent.results import AgentResult
from bot.agent.run import RunSpec
from bot.config import Settings
from bot.errors import InvalidReview
from bot.github import outbound, pr_files, reads
from bot.github import review_format as fmt
from bot.github.pr_files import ReviewPass
from bot.github.reads import PullFacts
from bot.jobs import agent
from bot.jobs.context import Deps
from bot.jobs.review_push import Memory
from bot.queue.tasks import ReviewTask

# Back to the agent once when its review is unusable; then, if still unusable, to the thread.
REVIEW_UNUSABLE = (
    "Your review could not be used: {error}\nCall `finish` again with only the review JSON, in "
    "this format:\n{schema}"
)
PASS_NOTE = (
    "This pull request is reviewed in {count} parts; this is part {index}. Review only the files "
    "in the diff below: comments on other files are discarded.\n"
)
PART_SUMMARY = "**Part {index} of {count}** ({files} files): {summary}"
VERDICT_RANK: dict[str, int] = {"approve": 0, "comment": 1, "request_changes": 2}


@dataclass(slots=True)
class Passes:
    """What the passes gave: the merged review, or the result of the pass that failed."""

    result: AgentResult  # the last pass run (the failing one when `review` is None)
    review: fmt.Review | None
    cost: float
    dropped: int  # findings about files their pass did not show


def review_json(text: str) -> str:
    """The JSON inside the agent's final message (it may wrap it in a code fence)."""
    fenced = re.search(r"```(?:json)?\s*(\{.*\})\s*```", text, re.DOTALL)
    return fenced.group(1) if fenced else text.strip()


def pass_note(index: int, count: int) -> str:
    """What the agent is told about its part, when the review has several."""
    return PASS_NOTE.format(count=count, index=index + 1) if count > 1 else ""


def pass_spec(spec: RunSpec, index: int) -> RunSpec:
    """The first pass is the run itself; a later one is a run of its own (its own conversation,
    checkout and restart record), so it never continues an earlier pass's conversation."""
    if index == 0:
        return spec
    return dataclasses.replace(spec, run_id=f"{spec.run_id}-pass{index + 1}")


async def run(deps: Deps, plan: list[ReviewPass], spec_for: Callable[[int], RunSpec]) -> Passes:
    """Each pass (at least one) in turn, stopping at the first that fails; `spec_for(index)`
    builds a pass's spec around its diff."""
    reviews: list[fmt.Review] = []
    cost = 0.0
    dropped = 0
    result: AgentResult | None = None
    for index, part in enumerate(plan):
        parsed: list[fmt.Review] = []

        async def check(answer: AgentResult, parsed: list[fmt.Review] = parsed) -> str | None:
            try:
                parsed.append(fmt.parse_review(review_json(answer.final_response)))
            except InvalidReview as exc:
                return REVIEW_UNUSABLE.format(error=exc, schema=fmt.REVIEW_SCHEMA_TEXT)
            return None

        spec = pass_spec(spec_for(index), index)
        ran = await agent.run(deps, spec, check=check)
        result = ran.result
        cost += result.cost
        if result.succeeded and not parsed:
            await check(result)  # the corrected answer
        if not result.succeeded or not parsed:
            return Passes(result, None, cost, dropped)
        kept, lost = only_seen(parsed[-1], part.paths)
        reviews.append(kept)
        dropped += lost
    assert result is not None
    return Passes(result, merge(reviews, plan), cost, dropped)


def only_seen(review: fmt.Review, paths: frozenset[str]) -> tuple[fmt.Review, int]:
    """The review without comments on files outside `paths`, and how many were dropped."""
    kept = [comment for comment in review.comments if comment.path in paths]
    return review.model_copy(update={"comments": kept}), len(review.comments) - len(kept)


def merge(reviews: list[fmt.Review], plan: list[ReviewPass]) -> fmt.Review:
    """One review: each part's summary under its heading, every comment, the gravest verdict."""
    if len(reviews) == 1:
        return reviews[0]
    summary = "\n\n".join(
        PART_SUMMARY.format(
            index=index + 1, count=len(reviews), files=len(plan[index].files), summary=r.summary
        )
        for index, r in enumerate(reviews)
    )
    verdict = max((r.verdict for r in reviews), key=VERDICT_RANK.__getitem__)
    comments = [comment for r in reviews for comment in r.comments]
    return fmt.Review.model_construct(summary=summary, verdict=verdict, comments=comments)


def cleaned(review: fmt.Review, cleaner: outbound.Cleaner) -> fmt.Review:
    """The agent's review with every text it wrote safe to post (`outbound`); a path keeps its
    name (GitHub places comments by it) unless it could leave the code span it is shown in."""
    comments = [
        comment.model_copy(
            update={
                "body": cleaner.clean(comment.body),
                "suggestion": None
                if comment.suggestion is None
                else outbound.clean_code(comment.suggestion),
                "path": " ".join(outbound.clean_code(comment.path).replace("`", "'").split()),
            }
        )
        for comment in review.comments
    ]
    summary = cleaner.clean(review.summary)
    return review.model_copy(update={"summary": summary, "comments": comments})


async def plan(
    gh: GitHub[Any], task: ReviewTask, pr: PullFacts, memory: Memory, settings: Settings
) -> pr_files.Plan:
    """The changed files (a push's own, when earlier reviews are known) in passes;
    `.gitattributes` from the base: a PR cannot hide code."""
    increment = memory.increment
    if increment is not None:
        files = [pr_files.ChangedFile(*item) for item in increment.files]
    else:
        files = await pr_files.list_files(gh, task.repo, task.number)
    attributes = await reads.first_file(gh, task.repo, (".gitattributes",), pr.base_ref)
    return pr_files.plan(
        files,
        total=len(files) if increment is not None else pr.changed_files,
        budget_chars=settings.review_diff_budget_chars,
        max_passes=settings.review_max_passes,
        rules=pr_files.linguist_generated(attributes),
    )
