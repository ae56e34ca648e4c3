"""The files a run changed, as git sees them: each file's mode (executable, symbolic link), names
of any bytes (listed with `-z`, never git's quoted paths), and sizes known before any content is
read, so a file GitHub would refuse is named instead of loaded."""

from __future__ import annotations

import base64
import binascii
import posixpath
import shlex
from dataclasses import dataclass

from bot.agent.results import ChangedFile
from bot.agent.server_client import AgentServerClient
from bot.errors import AgentServerError

# GitHub refuses blobs over 100 MB (https://docs.github.com/repositories/working-with-files/
# managing-large-files/about-large-files-on-github); a module constant tests can lower.
MAX_BLOB_BYTES = 100 * 1024 * 1024
REGULAR, EXECUTABLE, SYMLINK, GITLINK = "100644", "100755", "120000", "160000"
_STATUSES = {"A": "added", "D": "deleted"}  # M (modified) and T (type changed) are modified

# The working tree against `base` through a scratch index (the agent's own index is left as it
# was): every file git would commit, with its mode, as NUL-separated raw records; then the names
# of those that are not deleted, and their sizes, one line each, in that order (what is read and
# published is the working file, which a repository's eol or filter attributes may make differ
# from its blob). Both listings in base64, so no byte of a name is lost on the way.
_LIST = (
    'cd {repo} && i="$(mktemp -u)" && {{ cp "$(git rev-parse --git-path index)" "$i" 2>/dev/null'
    ' || true; }} && GIT_INDEX_FILE="$i" git add -A >/dev/null && GIT_INDEX_FILE="$i" git diff'
    ' --cached --raw -z --no-renames --no-abbrev {base} -- >"$i.raw" && GIT_INDEX_FILE="$i" git'
    ' diff --cached --name-only -z --no-renames --diff-filter=d {base} -- >"$i.names"; s=$?;'
    ' [ $s -eq 0 ] && base64 -w0 <"$i.raw" && echo && base64 -w0 <"$i.names" && echo &&'
    ' xargs -0 -r stat -c %s -- <"$i.names"; s=$?; rm -f "$i" "$i.raw" "$i.names"; exit $s'
)
# A symbolic link's blob is its target.
_TARGET = "cd {repo} && git cat-file blob {sha} | base64 -w0"


@dataclass(frozen=True, slots=True)
class _Raw:
    path: str
    status: str  # added, modified, deleted
    mode: str  # the new mode (the old one for a deletion)
    sha: str  # the new blob (zeros for a deletion)


def _parse(listing: bytes) -> tuple[list[_Raw], list[str]]:
    """`git diff --raw -z` records, and the names that are not UTF-8 (GitHub's API takes text)."""
    fields = listing.split(b"\0")
    out: list[_Raw] = []
    unnamed: list[str] = []
    for meta, raw_path in zip(fields[0::2], fields[1::2], strict=False):
        if not meta.startswith(b":"):
            continue
        old_mode, new_mode, _old_sha, new_sha, letter = meta[1:].decode().split(" ")
        status = _STATUSES.get(letter[:1], "modified")
        try:
            path = raw_path.decode()
        except UnicodeDecodeError:
            unnamed.append(raw_path.decode(errors="backslashreplace"))
            continue
        mode = old_mode if status == "deleted" else new_mode
        out.append(_Raw(path, status, mode, new_sha))
    return out, unnamed


def escapes(path: str, target: str) -> bool:
    """Whether a link at `path` to `target` points outside the repository (absolute, or up past
    its root)."""
    if not target or target.startswith("/") or "\0" in target:
        return True
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    return resolved == ".." or resolved.startswith("../")


async def _run(client: AgentServerClient, command: str) -> str:
    result = await client.bash(command, limit_seconds=300)
    if not result.ok:
        raise AgentServerError(f"listing the run's changes failed: {result.stderr.strip()[:200]}")
    return result.stdout.strip()


def _decoded(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise AgentServerError("the run's changes came back unreadable") from exc


async def changed_files(client: AgentServerClient, repo: str, base_ref: str) -> list[ChangedFile]:
    """Every file the run added, modified or deleted against `base_ref`: its mode and, unless it
    cannot be published (`ChangedFile.refused` says why), its content, read once, streamed."""
    q = shlex.quote
    listing, _, rest = (await _run(client, _LIST.format(repo=q(repo), base=q(base_ref)))).partition(
        "\n"
    )
    names, _, sized = rest.partition("\n")
    lines = sized.splitlines()
    records, unnamed = _parse(_decoded(listing))
    present = [name.decode(errors="backslashreplace") for name in _decoded(names).split(b"\0")]
    sizes = {path: int(n) if n.isdigit() else 0 for path, n in zip(present, lines, strict=False)}
    out = [
        ChangedFile(path=name, status="added", content=None, refused="its name is not UTF-8")
        for name in unnamed
    ]
    for r in records:
        size = sizes.get(r.path, 0)
        out.append(await _file(client, repo, r, size))
    return sorted(out, key=lambda c: c.path)


async def _file(client: AgentServerClient, repo: str, r: _Raw, size: int) -> ChangedFile:
    """One change with its content, or with why it cannot be published."""
    if r.status == "deleted":
        return ChangedFile(path=r.path, status="deleted", content=None, mode=r.mode)
    base = ChangedFile(path=r.path, status=r.status, content=None, mode=r.mode, size=size)  # type: ignore[arg-type]
    if r.mode == GITLINK:
        return _refuse(base, "it is a nested git repository (a submodule)")
    if size > MAX_BLOB_BYTES:
        return _refuse(base, f"it is {size:,} bytes, over GitHub's {MAX_BLOB_BYTES:,}-byte limit")
    if r.mode == SYMLINK:
        q = shlex.quote
        target = _decoded(await _run(client, _TARGET.format(repo=q(repo), sha=q(r.sha))))
        if escapes(r.path, target.decode(errors="replace")):
            return _refuse(base, "it is a symbolic link that leads outside the repository")
        return _with(base, target)
    return _with(base, await client.download_exact(f"{repo}/{r.path}", size))


def _refuse(change: ChangedFile, why: str) -> ChangedFile:
    return ChangedFile(
        path=change.path,
        status=change.status,
        content=None,
        mode=change.mode,
        size=change.size,
        refused=why,
    )


def _with(change: ChangedFile, content: bytes | bytearray) -> ChangedFile:
    return ChangedFile(
        path=change.path, status=change.status, content=content, mode=change.mode, size=len(content)
    )
