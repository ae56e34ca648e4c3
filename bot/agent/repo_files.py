"""Files a job needs from the repository (a PR template, a review guide), read from the fresh
checkout's git objects right after the clone: before the repo's setup or the agent has run in the
workspace, and at a named commit, so nothing the agent writes can be read back as the repo's."""

from __future__ import annotations

import base64
import binascii
import shlex
from dataclasses import dataclass

from bot.errors import WorkspaceError

MAX_FILE_BYTES = 64 * 1024  # a template or guide longer than this is cut


@dataclass(frozen=True, slots=True)
class RepoFile:
    """The first of `paths` that is a file at `branch` (a branch of the clone's origin) or, when
    None, at the checked-out commit; the job finds it under `name`."""

    name: str
    paths: tuple[str, ...]
    branch: str | None = None


def script(wanted: tuple[RepoFile, ...], head: str) -> str:
    """Shell lines, run in the checkout, printing `<name> <base64 of the text>` for each file
    found; `head` is a shell word for the checked-out commit."""
    lines = ["export GIT_NO_REPLACE_OBJECTS=1"]
    for index, item in enumerate(wanted):
        if item.branch is None:
            lines.append(f"rev{index}={head}")
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
    return "\n".join(lines)


def parse(stdout: str) -> dict[str, str]:
    """{name: text} from what `script` printed."""
    found: dict[str, str] = {}
    for line in stdout.splitlines():
        if not line:
            continue
        name, _, encoded = line.partition(" ")
        try:
            found[name] = base64.b64decode(encoded, validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError) as exc:
            raise WorkspaceError(f"reading {name} from the checkout gave no text") from exc
    return found
