"""A thread's kept checkout between its runs: outside every sandbox (a root-only directory on the
host), moved into the next run's sandbox at its start and back at its end, and fingerprinted
when put away so a checkout changed meanwhile is thrown away rather than continued (and
published from)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import stat
import time
from pathlib import Path

log = logging.getLogger(__name__)

KEPT = ("repo", ".agent-server")  # the checkout, and the server's record of the conversation
CONVERSATIONS = ".agent-server/workspace/conversations"
LEASE_FILES = ("owner_lease.json", ".owner_lease.lock")  # the agent-server's, per conversation


def fingerprint(root: Path) -> str:
    """Every path's type, mode and content (links: their target), read without following a
    link or opening anything but a regular file (the tree is the agent's: hostile)."""
    digest = hashlib.sha256()
    for directory, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files) + [d for d in dirs if Path(directory, d).is_symlink()]:
            path = Path(directory, name)
            info = path.lstat()
            digest.update(f"{path.relative_to(root)}\0{info.st_mode:o}\0".encode())
            if stat.S_ISLNK(info.st_mode):
                digest.update(os.readlink(path).encode())
            elif stat.S_ISREG(info.st_mode):
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                with os.fdopen(fd, "rb") as handle:
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(chunk)
            digest.update(b"\n")
        for name in dirs:
            digest.update(f"{Path(directory, name).relative_to(root)}/\n".encode())
    return digest.hexdigest()


def chown_tree(root: Path, uid: int) -> None:
    os.lchown(root, uid, uid)
    for directory, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            os.lchown(Path(directory, name), uid, uid)


def _drop_leases(conversations: Path) -> None:
    """The stopped server's claims on its conversations: it is dead (its sandbox is gone), but
    its lease would keep the next server from loading them for a while (the agent-server takes
    a pid it sees alive in its own pid namespace, even its own, for the lease's owner)."""
    if not conversations.is_dir() or conversations.is_symlink():
        return
    with os.scandir(conversations) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                for name in LEASE_FILES:
                    with contextlib.suppress(OSError):
                        os.unlink(Path(entry.path, name))  # a link is removed, never followed


class KeptStore:
    def __init__(self, base: Path) -> None:
        self.base = base

    def _dir(self, workspace_id: str) -> Path:
        if not workspace_id or "/" in workspace_id or workspace_id.startswith("."):
            raise ValueError(f"bad workspace id {workspace_id!r}")
        return self.base / workspace_id

    def put(self, workspace_id: str, work: Path) -> None:
        """Move a stopped sandbox's checkout (and conversation) here, fingerprinted."""
        self.base.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = self._dir(workspace_id)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(mode=0o700)
        content = target / "content"
        content.mkdir(mode=0o700)
        for name in KEPT:
            if (work / name).exists():
                os.rename(work / name, content / name)
        _drop_leases(content / CONVERSATIONS)
        record = {"fingerprint": fingerprint(content), "kept_at": time.time()}
        (target / "state.json").write_text(json.dumps(record))

    def take(self, workspace_id: str, work: Path, uid: int) -> bool:
        """Move the kept checkout into a sandbox's run directory, as its uid: whether there was
        one, unchanged since it was put away."""
        source = self._dir(workspace_id)
        content = source / "content"
        if not content.is_dir():
            return False
        try:
            record = json.loads((source / "state.json").read_text())
            expected = record["fingerprint"]
        except (OSError, ValueError, KeyError):
            expected = None
        if expected != fingerprint(content):
            log.warning("kept workspace %s changed since its run ended: discarded", workspace_id)
            shutil.rmtree(source, ignore_errors=True)
            return False
        chown_tree(content, uid)
        if (content / "repo").exists():
            shutil.rmtree(work / "repo", ignore_errors=True)
            os.rename(content / "repo", work / "repo")
        # The new server runs in its own .agent-server: only the conversations move over.
        conversations = content / CONVERSATIONS
        if conversations.is_dir():
            into = work / CONVERSATIONS
            into.mkdir(parents=True, exist_ok=True)
            chown_tree(work / KEPT[1], uid)
            for entry in conversations.iterdir():
                if not (into / entry.name).exists():
                    os.rename(entry, into / entry.name)
        shutil.rmtree(source, ignore_errors=True)
        return True

    def sweep(self, keep_seconds: float) -> None:
        """Drop kept checkouts unused for longer than `keep_seconds`."""
        if not self.base.is_dir():
            return
        cutoff = time.time() - keep_seconds
        for entry in self.base.iterdir():
            state = entry / "state.json"
            try:
                stale = json.loads(state.read_text())["kept_at"] < cutoff
            except (OSError, ValueError, KeyError):
                stale = True
            if stale:
                shutil.rmtree(entry, ignore_errors=True)
