"""Agent-servers whose worker died: a SIGKILLed worker leaves its local agent-server running (it
is in a session of its own), still working in the run's directory. The next worker on the host
stops them before it starts its own, so two agents never work in one checkout."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from pathlib import Path

log = logging.getLogger(__name__)

COMMAND_MARK = "openhands.agent_server"  # in the server's command line: guards against pid reuse


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _is_agent_server(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return COMMAND_MARK.encode() in cmdline


def record(directory: Path, server_pid: int, owner_pid: int) -> Path:
    """Note that `owner_pid` (this worker) started the agent-server `server_pid`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{server_pid}.json"
    path.write_text(json.dumps({"server": server_pid, "owner": owner_pid}))
    return path


def forget(directory: Path, server_pid: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        (directory / f"{server_pid}.json").unlink()


def reap(directory: Path) -> list[int]:
    """Stop (SIGKILL, whole process group) every recorded agent-server whose worker is gone;
    return their pids. Servers of live workers are left alone."""
    reaped: list[int] = []
    if not directory.is_dir():
        return reaped
    for path in directory.glob("*.json"):
        try:
            entry = json.loads(path.read_text())
            server, owner = int(entry["server"]), int(entry["owner"])
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
            continue
        if _alive(owner):
            continue
        if _is_agent_server(server):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(server, signal.SIGKILL)  # its own session: the group is the server's
            reaped.append(server)
            log.warning("stopped agent-server %d left by worker %d, which died", server, owner)
        path.unlink(missing_ok=True)
    return reaped
