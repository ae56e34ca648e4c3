"""A redis-server of our own on a loopback port, for the test session, one test or a benchmark:
started, checked to be the one answering (not another's on a reused port), and stopped."""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from redis import Redis as SyncRedis
from redis.exceptions import RedisError

from tests.helpers import free_port

# Looked up before any fork: the child only calls it.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def die_with_parent() -> None:
    """In a child before exec: SIGTERM when its parent dies, even by SIGKILL (no teardown ran)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def served_by(port: int, pid: int) -> bool:
    """Whether the redis-server with process id `pid` answers on `port` (not another's)."""
    with (
        contextlib.suppress(RedisError, OSError),
        SyncRedis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5) as client,
    ):
        return bool(client.info("server")["process_id"] == pid)
    return False


def stop(process: subprocess.Popen[bytes], grace: float = 10) -> None:
    """SIGTERM (a clean shutdown: an append-only file is complete), SIGKILL after `grace`."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start(
    directory: Path, *, port: int | None = None, persistent: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server keeping its files in `directory`: (process, URL). `persistent` keeps the
    data across a stop (append-only, fsync on every write), to come back on the same `port`."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not on PATH (apt-get install redis-server)")
    directory.mkdir(parents=True, exist_ok=True)
    log_file = directory / "redis.log"
    durable = ["--appendonly", "yes", "--appendfsync", "always"] if persistent else []
    for _ in range(1 if port else 5):  # another may take a free port before redis binds it
        chosen = port or free_port()
        args = ["--port", str(chosen), "--bind", "127.0.0.1", "--save", "", "--daemonize", "no"]
        args += ["--dir", str(directory), "--logfile", str(log_file)]
        args += durable or ["--appendonly", "no"]
        process = subprocess.Popen(
            [binary, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            if served_by(chosen, process.pid):
                return process, f"redis://127.0.0.1:{chosen}/0"
            time.sleep(0.02)
        stop(process)
    log = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
    raise RuntimeError(f"redis-server did not start; its log:\n{log}")
