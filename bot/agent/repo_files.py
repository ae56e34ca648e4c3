"""Files a job needs from the repository (a PR template, a review guide), read from the fresh
checkout's git objects right after the clone: before the repo's setup or the agent has run in the
workspace, and at a named commit, so nothing the agent writes can be read back as the repo's."""

from __future__ import annotations

import base64
import binascii
import shlex
from dataclasses import dataclass

from bot.agent.workspace.base import Workspace
from bot.errors import AgentServerError, WorkspaceError

MAX_FILE_BYTES = 64 * 1024  # a template or guide longer than this is cut


@dataclass(frozen=True, slots=True)
class RepoFile:
    """The first of `paths` that is a file at `branch` (a branch of the clone's origin) or, when
    None, at the checked-out commit; the job finds it under `name`."""

    name: str
    paths: tuple[str, ...]
    branch: str | None = None


def _script(repo_dir: str, head_sha: str, wanted: tuple[RepoFile, ...]) -> str:
    """One shell command printing `<name> <base64 of the text>` for each file found."""
    lines = [f"cd {shlex.quote(repo_dir)} || exit 1", "export GIT_NO_REPLACE_OBJECTS=1"]
    for index, item in enumerate(wanted):
        if item.branch is None:
            lines.append(f"rev{index}={shlex.quote(head_sha)}")
        else:
            ref = shlex.quote(f"refs/remotes/origin/{item.branch}^{{commit}}")
            lines.append(f"rev{index}=$(git rev-parse --verify -q {ref}) || rev{index}=")
        paths = " ".join(shlex.quote(path) for path in item.paths)
        lines.append(
            f'[ -n "$rev{index}" ] && for p in {paths}; do '
            f'if [ "$(git cat-file -t "$rev{index}:$p" 2>/dev/null)" = blob ]; then '
            f"printf '%s ' {shlex.quote(item.name)}; "
            f'git cat-file blob "$rev{index}:$p" | head -c {MAX_FILE_BYTES} | base64 -w0; '
            "echo; break; fi; done"
        )
    lines.append("exit 0")
    return "\n".join(lines)


async def read_files(ws: Workspace, head_sha: str, wanted: tuple[RepoFile, ...]) -> dict[str, str]:
    """{name: text} of the wanted files that exist (a missing one is left out)."""
    if not wanted:
        return {}
    try:
        result = await ws.client.bash(_script(ws.repo_dir, head_sha, wanted), limit_seconds=60)
    except AgentServerError as exc:
        raise WorkspaceError(f"reading the repository's files failed: {exc}") from exc
    if not result.ok:
        detail = (result.stderr or result.stdout).strip()[-300:]
        raise WorkspaceError(f"reading the repository's files failed: {detail}")
    found: dict[str, str] = {}
    for line in result.stdout.splitlines():
        name, _, encoded = line.partition(" ")
        try:
            found[name] = base64.b64decode(encoded, validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError) as exc:
            raise WorkspaceError(f"reading {name} from the checkout gave no text") from exc
    return found
