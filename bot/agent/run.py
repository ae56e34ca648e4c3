"""One agent run end to end: a read-only clone token (minted by the job, never by the agent
layer) → workspace → the run's LLM gateway credential → clone and setup → conversation → result.

Whatever fails, the caller gets an `AgentRun` with a classified error instead of an exception, so
it can always finalize what the user sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shlex
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.agent.changes import changed_files
from bot.agent.conversation import Conversation, Meter
from bot.agent.gateway import Gateway, LLMAccess, Usage
from bot.agent.prompts import CONTINUE_AFTER_RESTART
from bot.agent.repo_files import RepoFile
from bot.agent.repo_prep import SetupOutcome, prepare, read_hooks
from bot.agent.request import AgentRequest, conversation_id_for, create_request
from bot.agent.results import AgentError, AgentResult, Patch, ProgressCallback
from bot.agent.workspace.base import Workspace, WorkspaceProvider
from bot.config import Settings
from bot.errors import AgentServerError, SetupFailed, WorkspaceError
from bot.queue.tasks import RepoRef

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunSpec:
    """What to run where."""

    run_id: str
    installation_id: int
    repo: RepoRef
    clone_url: str
    prompt: str
    branch: str | None = None  # the branch to check out (default branch when None)
    fetch_ref: str | None = None  # e.g. refs/pull/7/head for a fork's pull request
    tools: list[str] | None = None
    max_iterations: int | None = None
    want_patch: bool = False
    # False for a pull request's head under review: no setup.sh, no hooks, no repo skills.
    trusted_checkout: bool = True
    # A fork's pull request: setup, hooks and skills come from this base branch, not the head.
    context_from: str | None = None
    workspace_id: str | None = None  # default: the run id
    keep_seconds: float = 0  # keep the workspace after the run, for a follow-up
    resume: Resume | None = None  # continue this earlier conversation when it is still there
    follow_up_prompt: str = ""
    # "" on a job's first try; then one per try, so a re-run after a restart starts its own
    # conversation instead of joining the interrupted one (which would never run again).
    attempt: str = ""
    earlier_attempts: tuple[str, ...] = ()  # their conversations are stopped before this one
    # This run's try that a restart interrupted: continued when its conversation and checkout
    # survived (a `server` or `runtime` workspace), else the run starts afresh.
    continue_from: Resume | None = None
    # Files read from the fresh checkout before anything runs in it (`AgentRun.files`), and the
    # prompt made with them (their texts by name) when the prompt needs one, else `prompt`.
    read_files: tuple[RepoFile, ...] = ()
    compose: Callable[[Mapping[str, str]], str] | None = None


@dataclass(frozen=True, slots=True)
class Resume:
    """An earlier run's conversation a follow-up may continue, in the same kept workspace."""

    conversation_run_id: str  # the run that created the conversation (its id derives from it)
    base_sha: str  # what the conversation's changes are measured against
    attempt: str = ""  # the try of that run that created it


@dataclass(slots=True)
class AgentRun:
    result: AgentResult
    setup: SetupOutcome | None = None
    hooks_error: str | None = None
    head_sha: str | None = None
    patch: Patch | None = None  # the change as a git patch, when the spec asked for one
    resumed: Resume | None = None  # the earlier conversation this one continued
    # `spec.read_files` found in the fresh checkout; None when the run had none (it continued a
    # kept one, which the agent has had its hands on, or failed before it cloned).
    files: dict[str, str] | None = None
    released: asyncio.Task[None] | None = None  # the workspace's release, when still under way

    async def settled(self) -> None:
        """Until the workspace is released (`run_agent(release_later=True)` goes on at once)."""
        if self.released is not None:
            await asyncio.shield(self.released)


# More of a patch than a comment can show is never read: its size is, its head is.
PATCH_READ_LIMIT = 256 * 1024


async def git_patch(ws: Workspace, base: str) -> Patch:
    """The working tree's changes against `base` as a patch `git apply` accepts: its size, and
    its first `PATCH_READ_LIMIT` bytes."""
    repo, ref = shlex.quote(ws.repo_dir), shlex.quote(base)
    result = await ws.client.bash(
        f'cd {repo} && p="$(mktemp)" && git add -A --intent-to-add && git diff --binary {ref}'
        f' >"$p"; s=$?; wc -c <"$p"; head -c {PATCH_READ_LIMIT} "$p"; rm -f "$p"; exit $s',
        limit_seconds=120,
    )
    if not result.ok:
        raise AgentServerError(f"making the patch failed: {result.stderr.strip()[:200]}")
    size, _, text = result.stdout.partition("\n")
    return Patch(text=text, size=int(size.strip() or 0))


async def _with_changes(ws: Workspace, result: AgentResult, base: str) -> AgentResult:
    """The result with the files the run changed against `base`, as git sees them."""
    result.changes = await changed_files(ws.client, ws.repo_dir, base)
    return result


async def _stop_earlier_attempts(ws: Workspace, spec: RunSpec) -> None:
    """A worker that died mid-run left its conversation going on a server that outlived it:
    stop it, so two agents never work in one checkout."""
    for attempt in spec.earlier_attempts:
        with contextlib.suppress(AgentServerError):
            await ws.client.interrupt(conversation_id_for(spec.run_id, attempt))


Continuing = tuple[AgentRequest, str | None]  # a follow-up's request, and its hooks error


async def _resumable(
    settings: Settings, ws: Workspace, spec: RunSpec, resume: Resume, llm: LLMAccess
) -> Continuing | None:
    """The request to go on with, when the earlier conversation and its checkout are both still
    there, and idle."""
    checkout = await ws.client.bash(f"test -d {shlex.quote(ws.repo_dir)}/.git", limit_seconds=30)
    if not checkout.ok:
        return None
    conversation_id = conversation_id_for(resume.conversation_run_id, resume.attempt)
    continuing: Continuing | None = None
    try:
        info = await ws.client.conversation(conversation_id)
    except AgentServerError as exc:
        if exc.status != 404:
            return None
        continuing = await _continuing(ws, spec, resume, llm)
        if not await _revived(settings, ws, continuing[0], conversation_id):
            return None
        try:
            info = await ws.client.conversation(conversation_id)
        except AgentServerError:
            return None
    if info.get("execution_status") not in ("finished", "error", "stuck", "paused", "idle"):
        return None
    return continuing or await _continuing(ws, spec, resume, llm)


async def _revived(
    settings: Settings, ws: Workspace, request: AgentRequest, conversation_id: str
) -> bool:
    """A kept conversation whose files are in the workspace but which its server never loaded
    (a sandbox's server starts before the kept checkout moves in): created again under its id,
    the server restores it from its files. Whether it came back with its history."""
    body = create_request(settings, request, conversation_id)
    del body["initial_message"]  # a create with a message would run it
    try:
        await ws.client.create_conversation(body)
        events, _ = await ws.client.events(conversation_id, limit=20)
    except AgentServerError:
        return False
    if any(e.get("kind") == "MessageEvent" and e.get("source") == "user" for e in events):
        log.info("kept conversation %s restored from its files", conversation_id)
        return True
    with contextlib.suppress(AgentServerError):  # nothing kept: an empty one is no follow-up
        await ws.client.delete_conversation(conversation_id)
    return False


async def _continuing(ws: Workspace, spec: RunSpec, resume: Resume, llm: LLMAccess) -> Continuing:
    """The request a follow-up in the earlier conversation goes on with (and a hooks error)."""
    hook_config, hooks_error = await read_hooks(ws)
    request = AgentRequest(
        run_id=resume.conversation_run_id,
        prompt="",
        working_dir=ws.repo_dir,
        llm=llm,
        hook_config=hook_config,
        tools=spec.tools,
        attempt=resume.attempt,
        load_project_skills=spec.trusted_checkout,
    )
    return request, hooks_error


async def _continue(
    settings: Settings,
    ws: Workspace,
    spec: RunSpec,
    resume: Resume,
    continuing: Continuing,
    meter: Meter,
    on_progress: ProgressCallback | None,
) -> AgentRun:
    """A follow-up in the earlier conversation: the agent keeps its context and checkout."""
    request, hooks_error = continuing
    conversation = Conversation(ws.client, settings, meter, on_progress=on_progress)
    result = await conversation.follow_up(request, spec.follow_up_prompt)
    result = await _with_changes(ws, result, resume.base_sha)
    return await _outcome(
        ws,
        spec,
        result,
        resume.base_sha,
        hooks_error=hooks_error,
        resumed=resume,
    )


async def _outcome(
    ws: Workspace, spec: RunSpec, result: AgentResult, base_sha: str, **fields: Any
) -> AgentRun:
    """The run's result, with the change as a patch when the spec asks for one (and none of its
    files is refused: publishing says why)."""
    patch = None
    if spec.want_patch and result.changes and not any(c.refused for c in result.changes):
        patch = await git_patch(ws, base_sha)
    return AgentRun(result=result, head_sha=base_sha, patch=patch, **fields)


def failed(spec: RunSpec, code: str, detail: str) -> AgentResult:
    return AgentResult(
        conversation_id=conversation_id_for(spec.run_id, spec.attempt),
        status="error",
        error=AgentError(code, detail),
    )


async def _in_workspace(
    settings: Settings,
    ws: Workspace,
    spec: RunSpec,
    llm: LLMAccess,
    gateway: Gateway,
    clone_token: str,
    on_progress: ProgressCallback | None,
    check: Callable[[AgentResult], Awaitable[str | None]] | None,
    on_prepared: Callable[[str], Awaitable[None]] | None,
) -> AgentRun:
    """The run inside its workspace, holding its LLM credential."""

    async def meter() -> Usage:
        return await gateway.usage(spec.run_id)

    extra = {"run_id": spec.run_id, "repo": spec.repo.full_name}
    await _stop_earlier_attempts(ws, spec)
    interrupted = spec.continue_from
    if interrupted is not None and (
        continuing := await _resumable(settings, ws, spec, interrupted, llm)
    ):
        log.info("continuing the conversation a restart interrupted", extra=extra)
        again = dataclasses.replace(spec, follow_up_prompt=CONTINUE_AFTER_RESTART)
        return await _continue(settings, ws, again, interrupted, continuing, meter, on_progress)
    if spec.resume is not None and (
        continuing := await _resumable(settings, ws, spec, spec.resume, llm)
    ):
        return await _continue(settings, ws, spec, spec.resume, continuing, meter, on_progress)
    # (A kept workspace may hold an older checkout: the clone starts clean.)
    prepared = await prepare(
        ws,
        clone_url=spec.clone_url,
        token=clone_token,
        branch=spec.branch,
        fetch_ref=spec.fetch_ref,
        clone_limit=settings.clone_timeout_seconds,
        setup_limit=settings.setup_timeout_seconds,
        setup_fatal=settings.setup_failure_fatal,
        trusted=spec.trusted_checkout,
        context_from=spec.context_from,
        files=spec.read_files,
    )
    if on_prepared is not None:
        await on_prepared(prepared.head_sha)
    request = AgentRequest(
        run_id=spec.run_id,
        prompt=spec.compose(prepared.files) if spec.compose is not None else spec.prompt,
        working_dir=prepared.path,
        llm=llm,
        hook_config=prepared.hook_config,
        tools=spec.tools,
        max_iterations=spec.max_iterations,
        attempt=spec.attempt,
        load_project_skills=spec.trusted_checkout,
    )
    conversation = Conversation(ws.client, settings, meter, on_progress=on_progress)
    result = await _with_changes(ws, await conversation.run(request), prepared.head_sha)
    if check is not None and result.succeeded:
        correction = await check(result)
        if correction is not None:  # one corrective message, then the caller decides
            result = await conversation.follow_up(request, correction)
            result = await _with_changes(ws, result, prepared.head_sha)
    return await _outcome(
        ws,
        spec,
        result,
        prepared.head_sha,
        setup=prepared.setup,
        hooks_error=prepared.hooks_error,
        files=prepared.files,
    )


async def _release(held: contextlib.AsyncExitStack, extra: dict[str, str]) -> None:
    """Release what a finished run held; its result stands whatever happens here."""
    try:
        await held.aclose()
    except (WorkspaceError, AgentServerError) as exc:
        log.warning("releasing the workspace failed: %s", exc, extra=extra)


async def run_agent(
    settings: Settings,
    provider: WorkspaceProvider,
    spec: RunSpec,
    *,
    gateway: Gateway,
    clone_token: str,
    on_progress: ProgressCallback | None = None,
    check: Callable[[AgentResult], Awaitable[str | None]] | None = None,
    on_prepared: Callable[[str], Awaitable[None]] | None = None,
    release_later: bool = False,
) -> AgentRun:
    """Run the agent on the repository; never raises for a failed run (only for cancellation).
    `on_prepared` hears the checkout's base commit once it is cloned (a later try may continue).
    `release_later`: a run that got its result returns it at once, its workspace (and LLM
    credential) released in the background, `AgentRun.settled` once done."""
    extra = {"run_id": spec.run_id, "repo": spec.repo.full_name}
    try:
        async with contextlib.AsyncExitStack() as held:
            ws = await held.enter_async_context(
                provider.open(spec.workspace_id or spec.run_id, keep_seconds=spec.keep_seconds)
            )
            # The run's own credential, revoked when the run ends (or stops, or times out).
            llm = await held.enter_async_context(
                gateway.access(spec.run_id, base_url=ws.llm_gateway_url)
            )
            run = await _in_workspace(
                settings, ws, spec, llm, gateway, clone_token, on_progress, check, on_prepared
            )
            if release_later:
                run.released = asyncio.create_task(_release(held.pop_all(), extra))
            return run
    except SetupFailed as exc:
        log.warning("setup failed: %s", exc, extra=extra)
        return AgentRun(failed(spec, "setup", str(exc)))
    except (WorkspaceError, AgentServerError) as exc:
        log.warning("workspace failed: %s", exc, extra=extra)
        return AgentRun(failed(spec, "workspace", str(exc)))
