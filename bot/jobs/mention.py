"""`@openhands` on an issue or pull request: from a mention to a pull request (or an answer),
with one live tracking comment that is always finalized."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from githubkit import GitHub
from githubkit.exception import GitHubException
from redis.exceptions import RedisError

from bot.agent.prompts import agent_prompt, follow_up_prompt
from bot.agent.results import Progress
from bot.agent.run import AgentRun, Resume, RunSpec
from bot.errors import PublishError
from bot.github import failures, messages, outbound, publish, reads
from bot.github.reads import PullInfo
from bot.github.tracking import TrackingComment
from bot.jobs import agent, review_chat, threads
from bot.jobs.context import Attempt, Deps, job
from bot.jobs.gate import ack_client, admit_run, with_installation
from bot.jobs.turns import Turn
from bot.queue.tasks import MentionTask
from bot.runs import lifecycle, stop
from bot.runs.outcome import Done, RunOutcome
from bot.runs.store import RunRecord

log = logging.getLogger(__name__)

FORK_PATCH_REASON = (
    "This pull request comes from a fork, where the bot cannot push. Here is the change as a patch."
)
NO_CHANGES = "The agent finished without changes."
OPENED = "✅ Opened #{number}: {url} ({files} file{plural} changed)"
PUSHED = "Pushed {sha} to `{branch}`."
PATCH_POSTED = "✅ Posted the change as a patch (the fork cannot be pushed to)."


@job
async def run_mention(deps: Deps, now: Attempt, data: dict[str, Any]) -> RunOutcome:
    """A mention or the trigger label: gate on permission, 👀, wait for its turn, then the agent
    run."""
    task = MentionTask.model_validate(data)
    record = RunRecord(
        run_id=task.run_id,
        kind="mention",
        trigger=task.trigger,
        repo=task.repo.full_name,
        number=task.number,
        sender=task.sender,
        job_id=now.job_id,
    )
    turn = Turn(
        deps,
        now,
        task.run_id,
        task.repo,
        installation=task.installation_id,
        thread=threads.key(task.repo.full_name, task.number),
        tell=lambda why: _say_waiting(deps, task, why),
    )
    if (stopped := await admit_run(deps, now, task, record)) is not None:
        await turn.release()  # it leaves the lines it joined when it was queued
        return stopped
    return await lifecycle.tracked(
        deps.settings,
        deps.runs,
        deps.enqueuer,
        deps.redis,
        record,
        lambda: _mention(deps, now, task),
        may_rerun=now.may_rerun,
        on_cancelled=lambda: _say_stopped(deps, task),
        turn=turn,
    )


def _tracking(deps: Deps, gh: GitHub[Any], task: MentionTask) -> TrackingComment:
    """The run's comment, for a word before the run starts (no throttle, no journal)."""
    return TrackingComment(
        gh,
        deps.redis,
        task.repo,
        task.number,
        task.run_id,
        run_url=deps.settings.run_url(task.run_id),
        handle=deps.settings.bot_handle,
    )


async def _say_waiting(deps: Deps, task: MentionTask, why: str) -> None:
    """The run waits for its turn: its comment says for what."""
    await _tracking(deps, await ack_client(deps, task), task).phase("queued", why)


async def _say_stopped(deps: Deps, task: MentionTask) -> None:
    """The run was cancelled while it waited (e.g. through the run API): tell the thread."""
    tracking = _tracking(deps, await ack_client(deps, task), task)
    by = await stop.requested_by(deps.redis, task.run_id)
    await tracking.finalize(*messages.stopped(by or "the run API"))


async def _mention(deps: Deps, now: Attempt, task: MentionTask) -> RunOutcome:
    task = await with_installation(deps, task)
    try:
        gh = await ack_client(deps, task)
        return await MentionRun(deps, gh, task, now).execute()
    except GitHubException as exc:
        # The tracking comment itself could not be written: nothing more we can tell the user.
        log.error(
            "run %s: GitHub refused the tracking comment: %s",
            task.run_id,
            type(exc).__name__,
            extra={"run_id": task.run_id, "repo": task.repo.full_name},
        )
        return RunOutcome.failed(task.run_id, "github", failures.describe(exc))


class MentionRun:
    """Everything one mention job does after the permission gate."""

    def __init__(self, deps: Deps, gh: GitHub[Any], task: MentionTask, now: Attempt) -> None:
        self.settings = settings = deps.settings
        self.deps, self.gh, self.task, self.now = deps, gh, task, now
        self.redis = deps.redis
        self.thread = threads.key(task.repo.full_name, task.number)
        self.tracking = TrackingComment(
            gh,
            deps.redis,
            task.repo,
            task.number,
            task.run_id,
            min_interval=settings.tracking_interval_seconds,
            run_url=settings.run_url(task.run_id),
            journal=lambda line: deps.runs.log(task.run_id, line),
            handle=settings.bot_handle,
        )
        self.started = time.monotonic()
        self.handle = settings.bot_handle
        self.writer: GitHub[Any] = gh
        self.published_base: str | None = None
        self.keep = 0.0
        self.cleaner = outbound.for_api(settings.github_api_url)  # for all the agent writes

    async def execute(self) -> RunOutcome:
        task = self.task
        resumed = messages.RESUMED.format(tries=self.now.tries) if self.now.tries > 1 else ""
        await self.tracking.phase("queued", resumed)
        try:
            await threads.mark_active(self.redis, self.thread, task.run_id, self.now.job_id)
            outcome = await self._run()
            if self.tracking.html_url:
                outcome = outcome.but(links={**outcome.links, "comment": self.tracking.html_url})
            return outcome
        except asyncio.CancelledError:
            await asyncio.shield(self._finalize_cancelled())
            raise
        except RedisError:  # Redis stayed away: the job runs again and finishes the comment
            raise
        except Exception:
            # A bug of ours must still not leave the user in silence.
            log.exception("run %s failed unexpectedly", task.run_id, extra={"run_id": task.run_id})
            headline, details = messages.failure("internal", self.handle)
            with contextlib.suppress(Exception):
                await self.tracking.finalize(headline, details)
            return RunOutcome.failed(task.run_id, "internal")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(threads.clear_active(self.redis, self.thread, task.run_id))

    async def _finalize_cancelled(self) -> None:
        by = await stop.requested_by(self.redis, self.task.run_id)
        elapsed = time.monotonic() - self.started
        rerun = self.now.may_rerun and elapsed < self.settings.job_timeout_seconds - 1
        with contextlib.suppress(Exception):
            if by is not None:
                await self.tracking.finalize(*messages.stopped(by))
            elif rerun:  # arq runs the job again: say so, and leave the comment to that run
                await self.tracking.phase("queued", messages.RESUMING)
            else:
                await self.tracking.finalize(*messages.failure("shutdown", self.handle))

    async def _fail(
        self, code: str, detail: str = "", extra: list[str] | None = None, **facts: Any
    ) -> RunOutcome:
        headline, details = messages.failure(code, self.handle, detail)
        await self.tracking.finalize(headline, [*details, *(extra or [])])
        return RunOutcome.failed(self.task.run_id, code, detail, **facts)

    async def _spec(self) -> tuple[RunSpec, PullInfo | None, str, str] | RunOutcome:
        """What the agent is asked and where, or the outcome when GitHub could not be read."""
        task, settings = self.task, self.settings
        try:
            bot_login = await self.deps.github.app_login()
            context, pull, repo = await reads.load_context(self.gh, task, bot_login)
        except GitHubException as exc:
            return await self._fail("github", failures.describe(exc))
        previous = await threads.last_summary(self.redis, self.thread)
        if previous is not None:
            context = dataclasses.replace(context, previous_summary=previous)
        kept = await threads.kept(self.redis, self.thread)
        workspaces = await self.deps.workspaces()
        self.keep = settings.workspace_keep_seconds if workspaces.can_keep else 0
        resume = None
        if kept is not None and self.keep:
            resume = Resume(kept.conversation_run_id, kept.base_sha, kept.attempt)
        # One workspace per thread, kept for a while: a follow-up continues in it.
        digest = hashlib.sha1(self.thread.encode()).hexdigest()[:16]
        extra = await review_chat.context(self.deps, self.gh, task)  # review threads, a fix
        spec = RunSpec(
            run_id=task.run_id,
            installation_id=task.installation_id or 0,
            repo=task.repo,
            clone_url=repo.clone_url,
            prompt=agent_prompt(context, "the repository root (your working directory)") + extra,
            branch=None if pull else repo.default_branch,
            fetch_ref=f"refs/pull/{task.number}/head" if pull else None,
            want_patch=bool(pull and pull.is_fork),
            context_from=pull.base_ref if pull and pull.is_fork else None,
            workspace_id=f"thread-{digest}" if self.keep else None,
            keep_seconds=self.keep,
            resume=resume,
            follow_up_prompt=follow_up_prompt(task.instruction, task.sender) + extra,
            attempt=self.now.label,
            earlier_attempts=self.now.earlier,
            read_files=() if pull else (publish.TEMPLATE_FILE,),  # for the PR it may open
        )
        self.published_base = kept.published_sha if kept and resume else None
        return spec, pull, context.title, repo.default_branch

    async def _run(self) -> RunOutcome:
        await self.tracking.phase("starting workspace")
        prepared = await self._spec()
        if isinstance(prepared, RunOutcome):
            return prepared

        async def progress(p: Progress) -> None:
            action = self.cleaner.inline_code(p.last_action) if p.last_action else ""
            self.tracking.show("working", f"step {p.steps}" + (f": {action}" if action else ""))

        # The sandbox is torn down while the result is published; the run ends once it is gone.
        async with agent.running(self.deps, prepared[0], on_progress=progress) as run:
            return await self._conclude(run, *prepared)

    async def _conclude(
        self, run: AgentRun, spec: RunSpec, pull: PullInfo | None, title: str, default_branch: str
    ) -> RunOutcome:
        task, result = self.task, run.result
        stats = messages.stats(time.monotonic() - self.started, result.cost, result.steps)
        notes = messages.run_notes(run.setup, run.hooks_error, fork=spec.context_from is not None)
        if self.now.tries > 1:
            notes.append(messages.RESUMED_NOTE.format(tries=self.now.tries))
        if not result.succeeded:
            headline, details = messages.from_agent_error(result.error, self.handle)
            await self.tracking.finalize(headline, [*details, *notes, stats])
            code = result.error.code if result.error else "internal"
            detail = result.error.detail if result.error else ""
            return RunOutcome.failed(
                task.run_id, code, detail, cost=result.cost, conversation_id=result.conversation_id
            )
        await threads.save_summary(self.redis, self.thread, result.final_response)
        if self.keep and run.head_sha:
            kept = threads.kept_from(run, task.run_id, self.now.label, run.head_sha, None)
            await threads.keep(self.redis, self.thread, kept, self.keep)
        if not result.changes:
            answer = result.final_response.strip()[:60_000] or NO_CHANGES
            await self._reply_in_thread(self.cleaner.clean(answer))
            said = self.cleaner.clean(answer, mid_line=True)
            await self.tracking.finalize("💬 " + said, [*notes, stats])
            return RunOutcome(
                task.run_id, Done.ANSWERED, cost=result.cost, conversation_id=result.conversation_id
            )
        await self.tracking.phase("publishing")
        links: dict[str, str] = {}
        try:
            # Only publishing may write code, with a token of its own for this one repository.
            self.writer = await self.deps.github.installation_client(
                task.installation_id or 0,
                repositories=[task.repo.name],
                permissions=publish.PUBLISH_PERMISSIONS,
            )
            if pull is None:
                headline = await self._open_pull_request(run, title, default_branch, links)
            elif pull.is_fork:
                headline = await self._post_patch(run)
            else:
                headline = await self._push_to_pull(run, pull)
        except (GitHubException, PublishError) as exc:
            log.warning(
                "publishing failed: %s", failures.describe(exc), extra={"run_id": task.run_id}
            )
            said = self.cleaner.clean(result.final_response.strip()[:2000], mid_line=True)
            summary = f"**Agent's summary:** {said}"
            return await self._fail(
                "publish",
                failures.describe(exc),
                [summary, stats],
                cost=result.cost,
                conversation_id=result.conversation_id,
            )
        await self.tracking.finalize(headline, [*notes, stats])
        return RunOutcome(
            task.run_id,
            Done.PUBLISHED,
            links=links,
            cost=result.cost,
            conversation_id=result.conversation_id,
        )

    def _commit_time(self) -> datetime:
        # The delivery's time keeps the commit identical when the job runs again.
        if stamp := self.task.comment_created_at:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        return datetime(2000, 1, 1, tzinfo=UTC)

    async def _open_pull_request(
        self, run: AgentRun, title: str, base: str, links: dict[str, str]
    ) -> str:
        task = self.task
        assert run.head_sha is not None
        summary = run.result.final_response.strip()
        clean = self.cleaner.clean
        pr_title = f"Fix #{task.number}: {title}"[:120]
        template = await reads.pr_template(self.writer, task.repo, run.files, base)
        number, url = await publish.propose(
            self.writer,
            task.repo,
            base_sha=run.head_sha,
            changes=run.result.changes,
            message=f"{pr_title}\n\n{clean(summary[:2000])}\n\nFixes #{task.number}",
            when=self._commit_time(),
            branch=publish.issue_branch(task.number, title),
            base=base,
            title=pr_title,
            body=publish.pr_body(
                number=task.number,
                summary=clean(summary),
                template=template,
                run_url=self.tracking.run_url,
                run_id=task.run_id,
            ),
            draft=not self.settings.open_pr_ready,
        )
        links["pull_request"] = url
        files = len(run.result.changes)
        opened = OPENED.format(number=number, url=url, files=files, plural="s"[: files != 1])
        return f"{opened}\n\n{clean(summary[:3000])}"

    async def _push_to_pull(self, run: AgentRun, pull: PullInfo) -> str:
        task = self.task
        assert run.head_sha is not None
        said = self.cleaner.clean(run.result.final_response.strip()[:3000])
        # A follow-up's changes count from the first run's checkout, on top of what it pushed.
        parent = self.published_base or run.head_sha
        sha = await publish.push(
            self.writer,
            task.repo,
            branch=pull.head_ref,
            parent=parent,
            changes=run.result.changes,
            message=f"{(task.instruction or 'Apply requested changes')[:72]}\n\n{said[:2000]}",
            when=self._commit_time(),
            handle=self.handle,
        )
        if self.keep:
            kept = threads.kept_from(run, task.run_id, self.now.label, run.head_sha, sha)
            await threads.keep(self.redis, self.thread, kept, self.keep)
        pushed = PUSHED.format(sha=sha[:7], branch=pull.head_ref)
        await review_chat.after_push(self.deps, self.writer, task, sha, run.result.final_response)
        await self._reply_in_thread(f"{pushed}\n\n{said}")
        return f"✅ {pushed}\n\n{said}"

    async def _post_patch(self, run: AgentRun) -> str:
        await publish.post_patch(
            self.writer,
            self.task.repo,
            self.task.number,
            run.patch,
            run.result.changes,
            reason=FORK_PATCH_REASON,
            key=f"{self.task.run_id}:patch",
        )
        summary = self.cleaner.clean(run.result.final_response.strip()[:3000])
        return f"{PATCH_POSTED}\n\n{summary}"

    async def _reply_in_thread(self, body: str) -> None:
        task = self.task
        if task.trigger != "review_comment" or task.comment_id is None:
            return
        await publish.reply_in_thread(
            self.writer, task.repo, task.number, task.comment_id, body, key=f"{task.run_id}:reply"
        )
