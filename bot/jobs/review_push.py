"""Reviews that remember the pull request: a push reviews only its own commits (the compare of
the last reviewed head and the new one), a finding is raised once and a dismissed one never
again, the bot resolves its own threads whose code is gone, the summary is one review edited in
place, and a push cancels the review still running on an older head."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, cast

from githubkit import GitHub
from githubkit.exception import GitHubException, RequestFailed

from bot import keys
from bot.github import once, publish, reads
from bot.github import review_format as fmt
from bot.github.reads import PullFacts
from bot.github.threads import BotIdentity, review_threads
from bot.jobs.context import Attempt, Deps
from bot.queue.tasks import ReviewTask
from bot.runs import stop
from bot.runs.findings import Finding, PullFindings, ReviewState, fingerprint, marker

log = logging.getLogger(__name__)

SUPERSEDED_BY = "a push of {sha}"  # who stopped the older review, as its record says
INCREMENT = (
    "# This is a re-review\nThe pull request was last reviewed at `{base}`. Review only the "
    "commits since then: the diff below is `git diff {base}..HEAD`, and only lines those commits "
    "added or changed can get comments.\n"
)
EARLIER = (
    "# Earlier findings on this pull request\nAlready posted; do not raise them again:\n{listed}\n"
)
FOLLOW_UP = (
    "Re-review of `{base}`..`{head}`: {count} new comment(s). The summary is kept up to date in "
    "the first review of this pull request."
)
HISTORY = (
    "**Reviews:** {reviews} · last reviewed commit `{head}` · open findings: {open} · "
    "resolved: {resolved} · dismissed: {dismissed}"
)
MAX_EARLIER = 30
_HUNK = re.compile(r"@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


def added_lines(patch: str | None) -> frozenset[int]:
    """The new-file line numbers a patch adds or changes."""
    added: set[int] = set()
    line = 0
    for raw in (patch or "").splitlines():
        if hunk := _HUNK.match(raw):
            line = int(hunk.group(1))
        elif raw.startswith("+"):
            added.add(line)
            line += 1
        elif not raw.startswith(("-", "\\")):
            line += 1
    return frozenset(added)


def _folded(text: str) -> str:
    return "\n".join(" ".join(line.split()) for line in text.strip().splitlines())


@dataclass(frozen=True, slots=True)
class Increment:
    """The commits since the last reviewed head: their files and the lines they touched."""

    base: str
    files: list[tuple[str, str | None, int]]
    touched: dict[str, frozenset[int]]


class Memory:
    """One review's view of the pull request's earlier reviews (see the module docstring)."""

    def __init__(self, deps: Deps, gh: GitHub[Any], task: ReviewTask, pr: PullFacts) -> None:
        self.deps, self.gh, self.task, self.pr = deps, gh, task, pr
        self.store = PullFindings(deps.redis, task.repo.full_name, task.number)
        self.me = BotIdentity(deps.settings.github_app_slug)
        self.state = ReviewState()
        self.findings: dict[str, Finding] = {}
        self.increment: Increment | None = None
        self.new: list[Finding] = []
        self._files: dict[str, list[str] | None] = {}

    async def load(self) -> Memory:
        """The store, the threads as humans left them, and what this push changed."""
        self.state = await self.store.state()
        self.findings = await self.store.all()
        base = self.state.last_head
        pushed = bool(base and base != self.pr.head_sha)
        try:
            if base and pushed and self.task.action == "synchronize" and not self.task.rereview:
                self.increment = await self._compare(base)
            await self._sync_threads(pushed=pushed)
        except GitHubException as exc:  # e.g. no GraphQL on this server: a plain review still
            log.warning(
                "earlier reviews unreadable (%s): reviewing the whole pull request",
                type(exc).__name__,
                extra={"run_id": self.task.run_id},
            )
            self.increment = None
        return self

    async def _compare(self, base: str) -> Increment | None:
        repo = self.task.repo
        compared = (
            await self.gh.rest.repos.async_compare_commits(
                repo.owner, repo.name, f"{base}...{self.pr.head_sha}"
            )
        ).parsed_data
        if compared.status != "ahead":  # a force-push or rebase: the whole PR again
            return None
        files = [
            (f.filename, f.patch if isinstance(f.patch, str) else None, int(f.changes or 0))
            for f in compared.files or []
        ]
        touched = {name: added_lines(patch) for name, patch, _ in files}
        return Increment(base, files, touched)

    async def _sync_threads(self, *, pushed: bool) -> None:
        changed: list[Finding] = []
        for thread in await review_threads(self.gh, self.task.repo, self.task.number):
            print_ = self.me.finding_of(thread)
            if print_ is None:
                continue  # a human's thread: never touched
            known = self.findings.get(print_) or Finding(
                print_, thread.path, thread.line or 0, "", "", "", "", "", "open"
            )
            if known.status == "dismissed":
                continue
            if self.me.dismissed(thread):
                changed.append(known.but("dismissed"))
            elif thread.resolved:
                if known.status == "open":
                    changed.append(known.but("resolved"))
            elif pushed and not self.me.human_replies(thread) and await self._gone(known):
                await publish.resolve_thread(self.gh, thread.id)
                changed.append(known.but("resolved"))
        await self.store.save(*changed)
        self.findings |= {f.fingerprint: f for f in changed}

    async def _lines(self, path: str) -> list[str] | None:
        if path not in self._files:
            found = await reads.file_with_sha(self.gh, self.task.repo, path, self.pr.head_sha)
            self._files[path] = None if found is None else found[1].splitlines()
        return self._files[path]

    async def _gone(self, finding: Finding) -> bool:
        """Whether the code a finding pointed at is no longer in its file at the new head."""
        if not finding.code.strip():
            return False  # not known: left alone
        lines = await self._lines(finding.path)
        if lines is None:
            return True
        wanted = _folded(finding.code).splitlines()
        have = [" ".join(line.split()) for line in lines]
        return not any(have[i : i + len(wanted)] == wanted for i in range(len(have)))

    def files_to_review(
        self, files: list[tuple[str, str | None, int]]
    ) -> list[tuple[str, str | None, int]]:
        return self.increment.files if self.increment else files

    def prompt_context(self) -> str:
        """What the agent is told of earlier reviews: the increment, the open findings."""
        parts = []
        if self.increment:
            parts.append(INCREMENT.format(base=self.increment.base[:12]))
        open_ = [f for f in self.findings.values() if f.status == "open" and f.body]
        if open_:
            listed = "\n".join(
                f"- `{f.path}:{f.line}` ({f.severity}) {' '.join(f.body.split())[:200]}"
                for f in open_[:MAX_EARLIER]
            )
            parts.append(EARLIER.format(listed=listed))
        return "\n".join(parts)

    async def keep_new(self, review: fmt.Review) -> fmt.Review:
        """The review without findings raised before (open, resolved or dismissed) or twice, and,
        on a push, without comments on lines its commits did not touch; each kept one marked
        with its fingerprint."""
        kept: list[fmt.ReviewComment] = []
        seen = set(self.findings)
        for comment in review.comments:
            if self.increment is not None and not self._touched(comment):
                continue
            code = await self._code(comment)
            rule = comment.rule or comment.severity
            print_ = fingerprint(comment.path, code or f"{comment.side}:{comment.line}", rule)
            if print_ in seen:
                continue
            seen.add(print_)
            body = f"{comment.body}\n\n{marker(print_)}"
            kept.append(comment.model_copy(update={"body": body}))
            self.new.append(
                Finding(
                    print_,
                    comment.path,
                    comment.line,
                    code,
                    rule,
                    comment.severity,
                    comment.body,
                    self.pr.head_sha,
                )
            )
        return review.model_copy(update={"comments": kept})

    def _touched(self, comment: fmt.ReviewComment) -> bool:
        assert self.increment is not None
        touched = self.increment.touched.get(comment.path, frozenset())
        first = comment.start_line or comment.line
        return comment.side == "RIGHT" and any(n in touched for n in range(first, comment.line + 1))

    async def _code(self, comment: fmt.ReviewComment) -> str:
        if comment.side != "RIGHT":
            return ""
        lines = await self._lines(comment.path) or []
        first = comment.start_line or comment.line
        return "\n".join(lines[first - 1 : comment.line])

    async def publish(
        self,
        summary: str,
        inline: list[dict[str, Any]],
        outside: list[fmt.ReviewComment],
        event: fmt.Event,
    ) -> None:
        """The first review carries the summary; later ones only their new comments (none when
        there are none), and the first review's body is edited to the latest summary."""
        task, state = self.task, self.state
        key = f"{task.run_id}:review"

        async def post(body: str, key: str) -> int:
            return await publish.review(
                self.gh,
                task.repo,
                task.number,
                commit_id=self.pr.head_sha,
                body=body,
                event=event,
                comments=inline,
                key=key,
            )

        summary_id = state.summary_review_id
        if summary_id is None or not state.summary_key:
            await self.store.reviewed(self.pr.head_sha, await post(summary, key), key)
            await self.store.save(*self.new)
            return
        if inline or outside:
            base = (state.last_head or self.pr.head_sha)[:7]
            body = FOLLOW_UP.format(base=base, head=self.pr.head_sha[:7], count=len(inline))
            body += "".join("\n\n" + fmt.render_comment(c, inline=False) for c in outside)
            await post(body, key)
        await self.store.save(*self.new)
        counts = dict.fromkeys(("open", "resolved", "dismissed", "fixed"), 0)
        for finding in (await self.store.all()).values():
            counts[finding.status] += 1
        history = HISTORY.format(
            reviews=state.reviews + 1,
            head=self.pr.head_sha[:7],
            open=counts["open"],
            resolved=counts["resolved"] + counts["fixed"],
            dismissed=counts["dismissed"],
        )
        edited = once.marked(f"{summary}\n\n{history}", state.summary_key)
        try:
            await publish.edit_review(self.gh, task.repo, task.number, summary_id, edited)
        except RequestFailed as exc:
            if exc.response.status_code not in {404, 422}:
                raise
            summary_id = await post(summary, f"{task.run_id}:summary")  # the old one is gone
            await self.store.reviewed(self.pr.head_sha, summary_id, f"{task.run_id}:summary")
            return
        await self.store.reviewed(self.pr.head_sha, None, None)


def _active_key(task: ReviewTask) -> str:
    return keys.REVIEW_ACTIVE_PREFIX + keys.thread(task.repo.full_name, task.number)


async def take_over(deps: Deps, task: ReviewTask, now: Attempt, head: str) -> None:
    """This review is the pull request's running one; a push stops the one on an older head
    (it ends CANCELLED, its head not marked reviewed), so only the newest head is reviewed."""
    key = _active_key(task)
    redis = deps.redis
    raw = await cast(Awaitable[dict[bytes, bytes]], redis.hgetall(key))
    mapping = {"run_id": task.run_id, "job_id": now.job_id or "", "head": head}
    await cast(Awaitable[int], redis.hset(key, mapping=mapping))
    await redis.expire(key, deps.settings.job_timeout_seconds + 300)
    old_run = raw.get(b"run_id", b"").decode()
    old_job = raw.get(b"job_id", b"").decode()
    old_head = raw.get(b"head", b"").decode()
    if task.action != "synchronize" or not old_run or old_run == task.run_id or not old_job:
        return
    if old_head == head:
        return
    await stop.request(redis, old_run, SUPERSEDED_BY.format(sha=head[:7]))
    aborted = await stop.abort(redis, old_job, wait=30)
    log.info(
        "review %s of %s superseded by a push of %s (aborted=%s)",
        old_run,
        old_head[:7],
        head[:7],
        aborted,
        extra={"run_id": task.run_id},
    )


async def step_down(deps: Deps, task: ReviewTask) -> None:
    """This review is over: no longer the pull request's running one (unless superseded)."""
    key = _active_key(task)
    current = await cast(Awaitable[bytes | None], deps.redis.hget(key, "run_id"))
    if current is not None and current.decode() == task.run_id:
        await deps.redis.delete(key)
