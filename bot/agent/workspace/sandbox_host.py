"""The host side of local sandboxes, shared by every worker on the host: the uid slots live
sandboxes hold, the byte-compiled environment they all read, the directories dead workers left."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bot.errors import WorkspaceError

if TYPE_CHECKING:
    from bot.agent.workspace.sandbox import SandboxConfig

log = logging.getLogger(__name__)


class UidSlot:
    """A host uid held (by an flock, released by the kernel if the worker dies) by one live
    sandbox across every worker on the host."""

    def __init__(self, config: SandboxConfig) -> None:
        locks = config.uid_locks
        locks.mkdir(mode=0o700, parents=True, exist_ok=True)
        for uid in range(config.uid_base, config.uid_base + config.uid_count):
            fd = os.open(locks / str(uid), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.uid, self._fd = uid, fd
            return
        raise WorkspaceError(f"all {config.uid_count} sandbox uids are in use")

    def release(self) -> None:
        fd, self._fd = self._fd, -1  # once: a second close would hit another's reused fd
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


def compile_environment(stamp_dir: Path) -> None:
    """Byte-compile the interpreter's packages once: a sandbox cannot write `__pycache__` there
    (read-only), and without it every start compiles the server's imports again (minutes)."""
    site = Path(sysconfig.get_paths()["purelib"])
    stamp = stamp_dir / ".bytecode-compiled"
    key = f"{sys.prefix}:{site.stat().st_mtime_ns}"
    if stamp.is_file() and stamp.read_text() == key:
        return
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j", "0", str(site)],
        capture_output=True,
        check=False,
    )
    stamp_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key)
    log.info("byte-compiled %s in %.1fs", site, time.monotonic() - started)


def reap(base: Path) -> list[Path]:
    """Remove the directories of sandboxes whose worker died (their processes died with it:
    bwrap's --die-with-parent, slirp4netns's --exit-fd)."""
    removed: list[Path] = []
    if not base.is_dir():
        return removed
    for directory in base.iterdir():
        owner = directory / "owner"
        if not owner.is_file():
            continue
        try:
            pid = int(owner.read_text())
            os.kill(pid, 0)
            continue  # a live worker's
        except (ValueError, ProcessLookupError):
            pass
        except PermissionError:
            continue
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
        log.warning("removed sandbox %s left by a worker that died", directory.name)
    return removed
