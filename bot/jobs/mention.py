"""`@openhands` on an issue or pull request: from a mention to a pull request (or an answer),
with one live tracking comment that is always finalized."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from githubkit import GitHub
from githubkit.exception import GitHubException
from redis.asyncio import Redis

from bot import keys
from bot.agent.conversation import Progress
from bot.agent.prompts import IssueContext, ThreadComment, agent_prompt, follow_up_prompt
from bot.agent.run import AgentRun, Resume, RunSpec, run_agent
from bot.agent.workspace.base import WorkspaceProvider
from bot.config import Settings
from bot.errors import BranchMoved, PublishError
from bot.github import failures, messages, publish
from bot.github.client import GitHubApp
from bot.github.tracking import TrackingComment, marker
from bot.queue.tasks import MentionTask
from bot.runs.store import RunStore

log = logging.getLogger(__name__)

MAX_COMMENTS = 300


def thread_key(repo: str, number: int) -> str:
    return f"{repo.lower()}#{number}"


@dataclass(slots=True)
class PullInfo:
    head_ref: str
    head_sha: str
    base_ref: str
    is_fork: bool


class ThreadLock:
    """One run per issue or pull request at a time, across every worker process."""

    def __init__(self, redis: Redis, key: str, run_id: str, ttl: int) -> None:
        self._redis = redis
        self._key = keys.THREAD_LOCK_PREFIX + key
        self._run_id = run_id
        self._ttl = ttl

    async def holder(self) -> str | None:
        value = await self._redis.get(self._key)
        return value.decode() if isinstance(value, bytes) else value

    async def try_acquire(self) -> bool:
        if await self._redis.set(self._key, self._run_id, nx=True, ex=self._ttl):
            return True
        return await self.holder() == self._run_id  # a re-executed job holds it already

    async def release(self) -> None:
        if await self.holder() == self._run_id:
            await self._redis.delete(self._key)


async def load_context(
    gh: GitHub[Any], task: MentionTask, bot_login: str | None
) -> tuple[IssueContext, PullInfo | None]:
    """The issue or PR as it was when the mention was written: later comments are left out."""
    owner, name = task.repo.owner, task.repo.name
    issue = (await gh.rest.issues.async_get(owner, name, task.number)).parsed_data
    trigger_time = task.comment_created_at or datetime.now(UTC).isoformat()
    cutoff = datetime.fromisoformat(trigger_time.replace("Z", "+00:00"))
    comments: list[ThreadComment] = []
    page = 1
    while len(comments) < MAX_COMMENTS:
        response = await gh.rest.issues.async_list_comments(
            owner, name, task.number, per_page=100, page=page
        )
        batch: list[Any] = list(response.parsed_data)
        for comment in batch:
            login = comment.user.login if comment.user else "ghost"
            if comment.id == task.comment_id or marker("") in (comment.body or ""):
                continue
            if bot_login and login.lower() == bot_login.lower():
                continue
            if comment.created_at > cutoff or (comment.updated_at and comment.updated_at > cutoff):
                continue  # written or edited after the request: not part of it
            comments.append(
                ThreadComment(login, comment.body or "", comment.created_at.isoformat())
            )
        if len(batch) < 100:
            break
        page += 1
    pull: PullInfo | None = None
    if task.is_pull_request:
        pr = (await gh.rest.pulls.async_get(owner, name, task.number)).parsed_data
        head_repo = pr.head.repo.full_name if pr.head.repo else None
        pull = PullInfo(
            head_ref=pr.head.ref,
            head_sha=pr.head.sha,
            base_ref=pr.base.ref,
            is_fork=(head_repo or "").lower() != task.repo.full_name.lower(),
        )
    context = IssueContext(
        repo=task.repo.full_name,
        number=task.number,
        is_pull_request=task.is_pull_request,
        title=issue.title,
        body=issue.body or "",
        comments=comments,
        instruction=task.instruction,
        requested_by=task.sender,
        head_branch=pull.head_ref if pull else None,
        base_branch=pull.base_ref if pull else None,
        path=task.path,
        line=task.line,
        diff_hunk=task.diff_hunk,
    )
    return context, pull


class MentionRun:
    """Everything one mention job does after the permission gate."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        github: GitHubApp,
        workspaces: WorkspaceProvider,
        gh: GitHub[Any],
        task: MentionTask,
        job_id: str | None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.github = github
        self.workspaces = workspaces
        self.gh = gh
        self.task = task
        self.job_id = job_id
        self.key = thread_key(task.repo.full_name, task.number)
        run_url = settings.run_url(task.run_id)
        runs = RunStore(redis, settings.run_retention_seconds)
        self.tracking = TrackingComment(
            gh,
            redis,
            task.repo,
            task.number,
            task.run_id,
            min_interval=settings.tracking_interval_seconds,
            run_url=run_url,
            journal=lambda line: runs.log(task.run_id, line),
        )
        self.facts: dict[str, Any] = {"links": {}}  # cost, conversation and links, for the record
        self.lock = ThreadLock(redis, self.key, task.run_id, settings.job_timeout_seconds + 300)
        self.started = time.monotonic()
        self.handle = settings.bot_handle
        self.writer: GitHub[Any] = gh
        self.published_base: str | None = None

    async def execute(self) -> dict[str, Any]:
        task = self.task
        await self.tracking.phase("queued")
        await self._wait_for_thread()
        try:
            await cast(
                Awaitable[int],
                self.redis.hset(
                    keys.ACTIVE_PREFIX + self.key,
                    mapping={"run_id": task.run_id, "job_id": self.job_id or ""},
                ),
            )
            result = await self._run()
            if self.tracking.html_url:
                self.facts["links"]["comment"] = self.tracking.html_url
            return {**self.facts, **result}
        except asyncio.CancelledError:
            await asyncio.shield(self._finalize_cancelled())
            raise
        except Exception:
            # A bug of ours must still not leave the user in silence.
            log.exception("run %s failed unexpectedly", task.run_id, extra={"run_id": task.run_id})
            headline, details = messages.failure("internal", self.handle)
            with contextlib.suppress(Exception):
                await self.tracking.finalize(headline, details)
            return {"run_id": task.run_id, "status": "failed", "error": "internal"}
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._release())

    async def _release(self) -> None:
        current = await cast(
            Awaitable[bytes | None], self.redis.hget(keys.ACTIVE_PREFIX + self.key, "run_id")
        )
        if current is not None and current.decode() == self.task.run_id:
            await self.redis.delete(keys.ACTIVE_PREFIX + self.key)
        await self.lock.release()

    async def _wait_for_thread(self) -> None:
        """A mention during another run on the same thread waits for it, not beside it."""
        deadline = time.monotonic() + self.settings.job_timeout_seconds
        shown = False
        while not await self.lock.try_acquire():
            if not shown:
                holder = await self.lock.holder()
                await self.tracking.phase("queued", f"waiting for run `{holder}` to finish")
                shown = True
            if time.monotonic() > deadline:
                raise TimeoutError("the previous run on this thread did not finish")
            await asyncio.sleep(self.settings.thread_poll_seconds)

    async def _finalize_cancelled(self) -> None:
        by = await self.redis.get(keys.STOP_PREFIX + self.task.run_id)
        if by is not None:
            headline, details = messages.stopped(by.decode())
        else:
            headline, details = messages.failure("shutdown", self.handle)
        with contextlib.suppress(Exception):
            await self.tracking.finalize(headline, details)

    async def _fail(
        self, code: str, detail: str = "", extra: list[str] | None = None
    ) -> dict[str, Any]:
        headline, details = messages.failure(code, self.handle, detail)
        await self.tracking.finalize(headline, [*details, *(extra or [])])
        return {"run_id": self.task.run_id, "status": "failed", "error": code}

    async def _run(self) -> dict[str, Any]:
        task, settings = self.task, self.settings
        await self.tracking.phase("starting workspace")
        try:
            repo = (await self.gh.rest.repos.async_get(task.repo.owner, task.repo.name)).parsed_data
            bot_login = f"{settings.github_app_slug}[bot]" if settings.github_app_slug else None
            context, pull = await load_context(self.gh, task, bot_login)
        except GitHubException as exc:
            return await self._fail("github", failures.describe(exc))
        previous = await self.redis.get(keys.SUMMARY_PREFIX + self.key)
        if previous is not None:
            context = dataclasses.replace(context, previous_summary=previous.decode())
        workdir = "the repository root (your working directory)"
        thread = await self._thread_record()
        keep = settings.workspace_keep_seconds if self.workspaces.can_keep else 0
        resume = None
        if thread is not None and keep:
            resume = Resume(thread["conversation_run_id"], thread["base_sha"])
        spec = RunSpec(
            run_id=task.run_id,
            installation_id=task.installation_id or 0,
            repo=task.repo,
            clone_url=repo.clone_url,
            prompt=agent_prompt(context, workdir),
            branch=None if pull else repo.default_branch,
            fetch_ref=f"refs/pull/{task.number}/head" if pull else None,
            want_patch=bool(pull and pull.is_fork),
            # One workspace per thread, kept for a while: a follow-up continues in it.
            workspace_id=f"thread-{hashlib.sha1(self.key.encode()).hexdigest()[:16]}"
            if keep
            else None,
            keep_seconds=keep,
            resume=resume,
            follow_up_prompt=follow_up_prompt(task.instruction, task.sender),
        )
        self.published_base = thread.get("published_sha") if thread and resume else None

        async def progress(p: Progress) -> None:
            self.tracking.show(
                "working", f"step {p.steps}" + (f": `{p.last_action}`" if p.last_action else "")
            )

        run = await run_agent(settings, self.workspaces, self.github, spec, on_progress=progress)
        result = run.result
        self.facts.update(cost=result.cost, conversation_id=result.conversation_id)
        stats = messages.stats(time.monotonic() - self.started, result.cost, result.steps)
        notes = self._notes(run)
        if not result.succeeded:
            headline, details = messages.from_agent_error(result.error, self.handle)
            await self.tracking.finalize(headline, [*details, *notes, stats])
            return {
                "run_id": task.run_id,
                "status": "failed",
                "error": result.error and result.error.code,
            }
        await self.redis.set(
            keys.SUMMARY_PREFIX + self.key, result.final_response[:4000], ex=30 * 24 * 3600
        )
        if keep and run.head_sha:
            await self._save_thread(run.resumed or task.run_id, run.head_sha, None, keep)
        if not result.changes:
            answer = result.final_response.strip() or "The agent finished without changes."
            await self._reply_in_thread(answer[:60_000])
            await self.tracking.finalize("💬 " + answer, [*notes, stats])
            return {"run_id": task.run_id, "status": "answered"}
        await self.tracking.phase("publishing")
        try:
            # Only publishing may write code, with a token of its own for this one repository.
            self.writer = await self.github.installation_client(
                task.installation_id or 0,
                repositories=[task.repo.name],
                permissions=publish.PUBLISH_PERMISSIONS,
            )
            if pull is None:
                outcome = await self._open_pull_request(run, context.title, repo.default_branch)
            elif pull.is_fork:
                outcome = await self._post_patch(run)
            else:
                outcome = await self._push_to_pull(run, pull)
        except (GitHubException, PublishError) as exc:
            log.warning(
                "publishing failed: %s",
                failures.describe(exc),
                extra={"run_id": task.run_id},
            )
            return await self._fail(
                "publish",
                failures.describe(exc),
                [f"**Agent's summary:** {result.final_response.strip()[:2000]}", stats],
            )
        await self.tracking.finalize(outcome, [*notes, stats])
        return {"run_id": task.run_id, "status": "published"}

    async def _thread_record(self) -> dict[str, str] | None:
        raw = await self.redis.get(keys.THREAD_PREFIX + self.key)
        if raw is None:
            return None
        record: dict[str, str] = json.loads(raw)
        return record

    async def _save_thread(
        self, conversation_run_id: str, base_sha: str, published_sha: str | None, keep: float
    ) -> None:
        record = {"conversation_run_id": conversation_run_id, "base_sha": base_sha}
        if published_sha:
            record["published_sha"] = published_sha
        await self.redis.set(keys.THREAD_PREFIX + self.key, json.dumps(record), ex=int(keep))

    def _notes(self, run: AgentRun) -> list[str]:
        notes = []
        if run.setup is not None and run.setup.ran and not run.setup.ok:
            notes.append(
                f"⚠️ `.openhands/setup.sh` failed (exit {run.setup.exit_code}); "
                "the agent worked anyway."
            )
        if run.hooks_error:
            notes.append(f"⚠️ {run.hooks_error}")
        return notes

    def _commit_time(self) -> datetime:
        # The delivery's time keeps the commit identical when the job runs again.
        stamp = self.task.comment_created_at
        if stamp:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        return datetime(2000, 1, 1, tzinfo=UTC)

    async def _open_pull_request(self, run: AgentRun, title: str, base: str) -> str:
        task = self.task
        assert run.head_sha is not None
        summary = run.result.final_response.strip()
        pr_title = f"Fix #{task.number}: {title}"[:120]
        sha = await publish.create_commit(
            self.writer,
            task.repo,
            base_sha=run.head_sha,
            changes=run.result.changes,
            message=f"{pr_title}\n\n{summary[:2000]}\n\nFixes #{task.number}",
            when=self._commit_time(),
        )
        branch = publish.issue_branch(task.number, title)
        await publish.ensure_branch(self.writer, task.repo, branch, sha)
        template = await publish.first_file(self.writer, task.repo, publish.TEMPLATE_PATHS, base)
        body = publish.pr_body(
            number=task.number,
            summary=summary,
            template=template,
            run_url=self.tracking.run_url,
            run_id=task.run_id,
        )
        number, url, _reused = await publish.ensure_pull_request(
            self.writer,
            task.repo,
            branch=branch,
            base=base,
            title=pr_title,
            body=body,
            draft=not self.settings.open_pr_ready,
        )
        self.facts["links"]["pull_request"] = url
        files = len(run.result.changes)
        plural = "s" if files != 1 else ""
        return f"✅ Opened #{number}: {url} ({files} file{plural} changed)\n\n{summary[:3000]}"

    async def _push_to_pull(self, run: AgentRun, pull: PullInfo) -> str:
        task = self.task
        assert run.head_sha is not None
        summary = run.result.final_response.strip()
        # A follow-up's changes count from the first run's checkout, on top of what it pushed.
        parent = self.published_base or run.head_sha
        sha = await publish.create_commit(
            self.writer,
            task.repo,
            base_sha=parent,
            changes=run.result.changes,
            message=f"{(task.instruction or 'Apply requested changes')[:72]}\n\n{summary[:2000]}",
            when=self._commit_time(),
        )
        try:
            await publish.fast_forward(self.writer, task.repo, pull.head_ref, parent, sha)
            keep = self.settings.workspace_keep_seconds if self.workspaces.can_keep else 0
            if keep:
                await self._save_thread(run.resumed or task.run_id, run.head_sha, sha, keep)
        except BranchMoved as exc:
            raise PublishError(
                f"{exc}. Nothing was pushed; mention @{self.handle} again "
                "to redo it on the new head."
            ) from exc
        await self._reply_in_thread(f"Pushed {sha[:7]} to `{pull.head_ref}`.\n\n{summary[:3000]}")
        return f"✅ Pushed {sha[:7]} to `{pull.head_ref}`.\n\n{summary[:3000]}"

    async def _post_patch(self, run: AgentRun) -> str:
        task = self.task
        reason = (
            "This pull request comes from a fork, where the bot cannot push. "
            "Here is the change as a patch."
        )
        body = publish.patch_comment(run.patch or "", reason=reason)
        await self.writer.rest.issues.async_create_comment(
            task.repo.owner, task.repo.name, task.number, body=body
        )
        summary = run.result.final_response.strip()[:3000]
        return f"✅ Posted the change as a patch (the fork cannot be pushed to).\n\n{summary}"

    async def _reply_in_thread(self, body: str) -> None:
        task = self.task
        if task.trigger != "review_comment" or task.comment_id is None:
            return
        await self.writer.rest.pulls.async_create_reply_for_review_comment(
            task.repo.owner, task.repo.name, task.number, task.comment_id, body=body
        )
