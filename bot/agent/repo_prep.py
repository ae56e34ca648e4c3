"""Prepare a repository in a workspace: clone with a read-only token that never lingers, check out
the right ref, run `.openhands/setup.sh`, and read the repo's hooks. A fork's pull request gets its
base branch's setup, hooks and skills, never its own.

The token reaches the workspace only as a credentials file uploaded for the clone and deleted
right after: it is in no command line, no remote URL, no event and no log line.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
import shlex
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bot.agent import repo_files
from bot.agent.hooks import parse_hooks
from bot.agent.repo_files import RepoFile
from bot.agent.workspace.base import Workspace
from bot.errors import AgentServerError, InvalidHooks, SetupFailed, WorkspaceError

log = logging.getLogger(__name__)

SETUP_SCRIPT = ".openhands/setup.sh"
HOOKS_FILE = ".openhands/hooks.json"
PR_HEAD = "openhands/pr-head"  # the local branch a pull request's head is checked out on
GIT_EMAIL = "openhands@users.noreply.github.com"
SETUP_OUTPUT_LIMIT = 20_000  # characters of setup output kept for the run's log
RAN, ABSENT = "openhands-setup:ran", "openhands-setup:absent"
FILES_MARK = "openhands-clone:files"  # after the clone's head commit, before the files read
# Everything the bot runs or the agent-server loads from a checkout besides its code: setup.sh,
# hooks and skills under `.openhands/` and `.agents/`, and instruction files in any directory (the
# names the SDK's `Skill.PATH_TO_THIRD_PARTY_SKILL_NAME` lists, matched without case).
REPO_CONTEXT = (
    ":(literal).openhands",
    ":(literal).agents",
    *(
        f":(glob,icase)**/{name}"
        for name in (".cursorrules", "agents.md", "agent.md", "claude.md", "gemini.md")
    ),
)


@dataclass(frozen=True, slots=True)
class SetupOutcome:
    ran: bool
    exit_code: int
    output: str
    timed_out: bool

    @property
    def ok(self) -> bool:
        return not self.ran or self.exit_code == 0


@dataclass(frozen=True, slots=True)
class PreparedRepo:
    path: str
    head_sha: str
    setup: SetupOutcome
    hook_config: dict[str, object] | None
    hooks_error: str | None
    files: dict[str, str] = field(default_factory=dict)  # what `prepare` was asked to read


def credential_line(clone_url: str, token: str) -> str:
    """A git credential-store line for the clone URL's host (and port)."""
    parts = urlsplit(clone_url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise WorkspaceError(f"cannot clone {clone_url!r}: only HTTP(S) clone URLs are supported")
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return f"{parts.scheme}://x-access-token:{token}@{host}\n"


def _git(args: str) -> str:
    # No system or global credential helpers: only the one we name may answer.
    return f"git -c credential.helper= {args}"


async def _run(ws: Workspace, command: str, what: str, *, limit: int = 120) -> str:
    try:
        result = await ws.client.bash(command, cwd=ws.root, limit_seconds=limit)
    except AgentServerError as exc:
        raise WorkspaceError(f"{what} failed: {exc}") from exc
    if not result.ok:
        detail = (result.stderr or result.stdout).strip()[-500:]
        raise WorkspaceError(f"{what} failed (exit {result.exit_code}): {detail}")
    return result.stdout.strip()


async def clone(
    ws: Workspace,
    *,
    clone_url: str,
    token: str,
    branch: str | None = None,
    fetch_ref: str | None = None,
    limit: int = 300,
    files: tuple[RepoFile, ...] = (),
) -> tuple[str, dict[str, str]]:
    """Clone into `ws.repo_dir`, check out `branch` or `fetch_ref`, and read `files` from the
    fresh checkout's git objects (before anything of the repo runs): the head commit's sha and
    {name: text} of the files found. One round trip after the credentials' upload."""
    credentials = f"{ws.root}/.clone-credentials"
    helper = shlex.quote(f"store --file={credentials}")
    repo = shlex.quote(ws.repo_dir)
    branch_arg = f"--branch {shlex.quote(branch)} " if branch else ""
    fetched = ""
    if fetch_ref:
        local = PR_HEAD
        fetched = (
            f" && cd {repo} && "
            + _git(
                f"-c credential.helper={helper} fetch --quiet origin "
                f"{shlex.quote(f'+{fetch_ref}:refs/remotes/origin/{local}')}"
            )
            + f" && git checkout --quiet -B {local} refs/remotes/origin/{local}"
        )
    # The clone (and fetch) is the only step that needs the credentials: whether it succeeds or
    # not, they are removed right after it, before anything else runs.
    command = "\n".join(
        [
            f"rm -rf {repo} && "  # a kept workspace may hold an older checkout: start clean
            + _git(
                f"-c credential.helper={helper} clone --quiet --no-tags {branch_arg}"
                f"{shlex.quote(clone_url)} {repo}"
            )
            + fetched,
            f"s=$?; rm -f {shlex.quote(credentials)}; [ $s -eq 0 ] || exit $s",
            # Configure, show the whole configuration, and the head commit last.
            f"cd {repo} && git remote set-url origin {shlex.quote(clone_url)} && "
            f"git config user.name openhands && git config user.email {GIT_EMAIL} && "
            'git config --list --show-origin && head="$(git rev-parse HEAD)" && echo "$head" '
            "|| exit $?",
            f"echo {FILES_MARK}",
            repo_files.script(files, '"$head"'),
            "exit 0",
        ]
    )
    what = "cloning the repository" + (f" and fetching {fetch_ref}" if fetch_ref else "")
    removed = False
    try:
        await ws.client.upload(credentials, credential_line(clone_url, token).encode())
        result = await ws.client.bash(command, cwd=ws.root, limit_seconds=limit)
        removed = result.exit_code != -1  # (past its time limit, the script was cut short)
    except AgentServerError as exc:
        raise WorkspaceError(f"{what} failed: {exc}") from exc
    finally:
        if not removed:  # the script did not run to the removal, or never ran
            try:
                await ws.client.bash(f"rm -f {shlex.quote(credentials)}", limit_seconds=30)
            except AgentServerError:
                log.warning("could not remove the clone credentials file")
    if not result.ok:
        detail = (result.stderr or result.stdout).strip()[-500:]
        raise WorkspaceError(f"{what} failed (exit {result.exit_code}): {detail}")
    out, mark, listed = result.stdout.rpartition(f"\n{FILES_MARK}\n")
    if not mark:
        raise WorkspaceError(f"{what} failed: the checkout's commit was not reported")
    config, _, head = out.rpartition("\n")
    if token in config:
        raise WorkspaceError("the clone token is still in the git configuration; refusing to run")
    return head.strip(), repo_files.parse(listed)


def _setup_command(repo: str) -> str:
    """Run setup.sh when there is one; the first line says which (its output follows)."""
    return (
        f"cd {repo} && if [ -f {SETUP_SCRIPT} ]; then echo {RAN}; bash {SETUP_SCRIPT} 2>&1; "
        f"else echo {ABSENT}; fi"
    )


def _setup_outcome(stdout: str, stderr: str, exit_code: int) -> SetupOutcome:
    said, _, rest = stdout.partition("\n")
    if said == ABSENT and exit_code == 0:
        return SetupOutcome(ran=False, exit_code=0, output="", timed_out=False)
    output = (rest + stderr)[-SETUP_OUTPUT_LIMIT:]
    return SetupOutcome(ran=True, exit_code=exit_code, output=output, timed_out=exit_code == -1)


async def run_setup(ws: Workspace, *, limit: int) -> SetupOutcome:
    """Run `.openhands/setup.sh` when the repository has one, keeping its output."""
    result = await ws.client.bash(_setup_command(shlex.quote(ws.repo_dir)), limit_seconds=limit)
    return _setup_outcome(result.stdout, result.stderr, result.exit_code)


def _hooks_from(data: bytes) -> tuple[dict[str, object] | None, str | None]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"{HOOKS_FILE} could not be read: {exc}"
    try:
        return parse_hooks(text), None
    except InvalidHooks as exc:
        return None, f"{HOOKS_FILE} is invalid and was not used: {exc}"


async def read_hooks(ws: Workspace) -> tuple[dict[str, object] | None, str | None]:
    """The repo's validated hook config and, for an invalid file, why it was not used."""
    path = f"{ws.repo_dir}/{HOOKS_FILE}"
    present = await ws.client.bash(f"test -f {shlex.quote(path)}", limit_seconds=30)
    if not present.ok:
        return None, None
    try:
        data = await ws.client.download(path)
    except AgentServerError as exc:
        return None, f"{HOOKS_FILE} could not be read: {exc}"
    return _hooks_from(data)


async def setup_then_hooks(
    ws: Workspace, *, limit: int
) -> tuple[SetupOutcome, dict[str, object] | None, str | None]:
    """`run_setup`, then `read_hooks` from the checkout it leaves, in one round trip (a setup
    cut short by its time limit has its hooks read on their own)."""
    repo = shlex.quote(ws.repo_dir)
    mark = f"openhands-hooks:{secrets.token_hex(8)}"  # setup's output cannot end it by chance
    hooks = shlex.quote(HOOKS_FILE)
    result = await ws.client.bash(
        f"{_setup_command(repo)}; s=$?\n"
        f"cd {repo} && printf '\\n%s\\n' {mark} && if [ -f {hooks} ]; then "
        f'b="$(base64 -w0 <{hooks})" && echo "ok $b" || echo unreadable; fi\n'
        "exit $s",
        limit_seconds=limit,
    )
    before, found, after = result.stdout.rpartition(f"\n{mark}\n")
    setup = _setup_outcome(before if found else result.stdout, result.stderr, result.exit_code)
    if not found or result.exit_code == -1:
        return (setup, *await read_hooks(ws))
    state, _, encoded = after.strip().partition(" ")
    if not state:
        return setup, None, None
    try:
        data = base64.b64decode(encoded, validate=True) if state == "ok" else None
    except binascii.Error:
        data = None
    if data is None:
        return setup, None, f"{HOOKS_FILE} could not be read"
    return (setup, *_hooks_from(data))


async def use_base_context(ws: Workspace, base: str) -> str:
    """Replace the checkout's setup, hooks and skills with the base branch's, committed locally so
    the agent's changes are measured without them; that commit's sha."""
    repo = shlex.quote(ws.repo_dir)
    specs = " ".join(shlex.quote(spec) for spec in REPO_CONTEXT)
    source = shlex.quote(f"refs/remotes/origin/{base}")
    index, listing = ".git/openhands-base-index", ".git/openhands-base-context"
    message = f"openhands: {base}'s setup, hooks and skills in place of the fork's"
    await _run(
        ws,
        f"cd {repo} && git rm -r -q --ignore-unmatch -- {specs} && "
        f"GIT_INDEX_FILE={index} git read-tree {source} && "
        f"GIT_INDEX_FILE={index} git ls-files -z -- {specs} > {listing} && rm -f {index} && "
        f"if [ -s {listing} ]; then GIT_LITERAL_PATHSPECS=1 git restore --source={source} "
        f"--staged --worktree --pathspec-from-file={listing} --pathspec-file-nul; fi && "
        f"rm -f {listing} && git commit -q --no-verify --allow-empty -m {shlex.quote(message)}",
        f"taking setup, hooks and skills from {base}",
    )
    return await _run(ws, f"cd {repo} && git rev-parse HEAD", "reading the checked-out commit")


async def prepare(
    ws: Workspace,
    *,
    clone_url: str,
    token: str,
    branch: str | None,
    fetch_ref: str | None,
    clone_limit: int,
    setup_limit: int,
    setup_fatal: bool,
    trusted: bool = True,
    context_from: str | None = None,
    files: tuple[RepoFile, ...] = (),
) -> PreparedRepo:
    """Clone, read `files` (before anything of the repo runs), and set up; with `context_from` (a
    fork's base branch) setup runs on that branch's checkout before the head is checked out, and
    hooks and skills come from it too."""
    head, found = await clone(
        ws,
        clone_url=clone_url,
        token=token,
        branch=branch,
        fetch_ref=fetch_ref,
        limit=clone_limit,
        files=files,
    )
    if not trusted:  # never run or load anything from a checkout we are only asked to read
        skipped = SetupOutcome(ran=False, exit_code=0, output="", timed_out=False)
        return PreparedRepo(ws.repo_dir, head, skipped, None, None, found)
    repo = shlex.quote(ws.repo_dir)
    if context_from is not None:
        base = shlex.quote(f"refs/remotes/origin/{context_from}")
        await _run(ws, f"cd {repo} && git checkout -q --detach {base}", f"checking out {base}")
    try:
        if context_from is None:
            setup, hook_config, hooks_error = await setup_then_hooks(ws, limit=setup_limit)
        else:  # back to the head, with the base's hooks and skills
            setup = await run_setup(ws, limit=setup_limit)
            back = PR_HEAD if fetch_ref else head
            await _run(ws, f"cd {repo} && git checkout -q -f {back}", "checking out the head again")
            head = await use_base_context(ws, context_from)
            hook_config, hooks_error = await read_hooks(ws)
    except AgentServerError as exc:
        raise WorkspaceError(f"preparing the repository failed: {exc}") from exc
    if not setup.ok and setup_fatal:
        raise SetupFailed(
            f"{SETUP_SCRIPT} failed (exit {setup.exit_code})"
            + (" after its time limit" if setup.timed_out else "")
        )
    return PreparedRepo(
        path=ws.repo_dir,
        head_sha=head,
        setup=setup,
        hook_config=hook_config,
        hooks_error=hooks_error,
        files=found,
    )
