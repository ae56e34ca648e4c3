"""Let an unprivileged process reach a few paths under a private directory (an interpreter under
/root) without loosening the host's permissions: in a mount namespace of its own, a tmpfs covers
the closed directory and only the needed paths are bound back onto it."""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path

STAGE = Path("/run/openhands-bot-sandbox")  # an empty mount point, used only in private mounts


def closed_ancestor(path: Path) -> Path | None:
    """The topmost directory above (or at) `path` that others cannot pass through."""
    for parent in reversed([path, *path.parents]):
        if parent.is_dir() and not parent.stat().st_mode & stat.S_IXOTH:
            return parent
    return None


def private_view(paths: list[Path]) -> list[str]:
    """Shell lines (run as root, in a private mount namespace) that make every one of `paths`
    reachable by others while the rest of its closed ancestor stays hidden."""
    lines = [f"mount -t tmpfs -o mode=0755,size=64k openhands-reach {STAGE}"]
    covered: dict[Path, int] = {}
    unique = sorted(set(paths))
    for path in [p for p in unique if not any(p != q and p.is_relative_to(q) for q in unique)]:
        closed = closed_ancestor(path)
        if closed is None:
            continue
        if closed not in covered:
            covered[closed] = len(covered)
            staged = STAGE / str(covered[closed])
            quoted = shlex.quote(str(closed))
            lines += [
                f"mkdir {staged} && mount --bind {quoted} {staged}",
                f"mount -t tmpfs -o mode=0755,size=64k openhands-reach {quoted}",
            ]
        staged = STAGE / str(covered[closed]) / path.relative_to(closed)
        target = shlex.quote(str(path))
        lines.append(f"mkdir -p {target} && mount --bind {shlex.quote(str(staged))} {target}")
    return lines


def needs_private_view(paths: list[Path]) -> bool:
    return os.geteuid() == 0 and any(closed_ancestor(path) for path in paths)
