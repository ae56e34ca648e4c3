"""A worker that dies leaves its agent-server running; the next worker stops it, never a live
worker's server."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.agent.workspace import orphans


def _pretend_server() -> subprocess.Popen[bytes]:
    """A process whose command line reads like an agent-server's, in a session of its own."""
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", orphans.COMMAND_MARK],
        start_new_session=True,
    )


def _dead_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


@pytest.fixture
def server() -> Iterator[subprocess.Popen[bytes]]:
    process = _pretend_server()
    yield process
    process.kill()
    process.wait()


def test_a_server_whose_worker_died_is_stopped(
    server: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    orphans.record(tmp_path, server.pid, _dead_pid())
    assert orphans.reap(tmp_path) == [server.pid]
    assert server.wait(10) is not None
    assert list(tmp_path.iterdir()) == []


def test_a_live_workers_server_is_left_alone(
    server: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    orphans.record(tmp_path, server.pid, 1)  # pid 1 never dies
    assert orphans.reap(tmp_path) == []
    time.sleep(0.2)
    assert server.poll() is None
    assert len(list(tmp_path.iterdir())) == 1


def test_a_reused_pid_that_is_not_an_agent_server_is_not_killed(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        orphans.record(tmp_path, other.pid, _dead_pid())
        assert orphans.reap(tmp_path) == []
        time.sleep(0.2)
        assert other.poll() is None
        assert list(tmp_path.iterdir()) == []  # the stale record is gone
    finally:
        other.kill()
        other.wait()
