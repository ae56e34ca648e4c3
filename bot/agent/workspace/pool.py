"""Sandboxes started ahead of need: an agent-server takes 10-45 s to boot, so a worker keeps
`LOCAL_SANDBOX_POOL` of them ready. Each serves exactly one run; taking one starts its
replacement in the background. Threads, not tasks: the pool belongs to no event loop.

Every sandbox is spawned from one long-lived thread: bwrap's --die-with-parent is the kernel's
parent-death signal, which fires when the *thread* that forked it ends, not the process."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from bot.agent.workspace.sandbox import Sandbox
from bot.errors import WorkspaceError

log = logging.getLogger(__name__)


class Pool:
    def __init__(self, make: Callable[[], Sandbox], size: int, wait_timeout: float) -> None:
        self._make = make
        self.size = size
        self._wait_timeout = wait_timeout
        self._ready: list[Sandbox] = []
        self._starting: set[Sandbox] = set()
        self._pending = 0  # starts asked for whose Sandbox is not made yet
        self._failures = 0
        self.last_error = ""
        self._closed = False
        self._cond = threading.Condition()
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-spawn")

    @property
    def ready(self) -> int:
        with self._cond:
            return len(self._ready)

    def fill(self) -> None:
        """Start as many sandboxes as the pool is short of (in the background)."""
        with self._cond:
            short = self.size - len(self._ready) - len(self._starting) - self._pending
            for _ in range(max(0, short)):
                self._launch_locked()

    def _launch_locked(self) -> None:
        if self._closed:
            return
        self._pending += 1
        threading.Thread(target=self._start_one, name="sandbox-start", daemon=True).start()

    def _start_one(self) -> None:
        sandbox: Sandbox | None = None
        error = ""
        try:
            sandbox = self._make()
        except Exception as exc:
            error = str(exc)
        with self._cond:
            self._pending -= 1
            if sandbox is not None:
                if self._closed:
                    sandbox.destroy()
                    return
                self._starting.add(sandbox)
        started = False
        if sandbox is not None:
            try:
                sandbox.start(self._spawner)
                started = True
            except Exception as exc:
                error = str(exc)
        with self._cond:
            if sandbox is not None:
                self._starting.discard(sandbox)
            if sandbox is not None and started:
                if self._closed:
                    sandbox.destroy()
                else:
                    self._ready.append(sandbox)
                    log.info("sandbox ready in %.1fs", sandbox.ready_seconds or 0)
            elif not self._closed:  # (closing kills the starts in flight: no news)
                self._failures += 1
                self.last_error = error
                log.warning("a sandbox failed to start: %s", error)
            self._cond.notify_all()

    def take(self) -> Sandbox:
        """A ready sandbox, waiting for one in flight (starting one when none is)."""
        deadline = time.monotonic() + self._wait_timeout
        with self._cond:
            failures = self._failures
            while True:
                if self._closed:
                    raise WorkspaceError("the workspace provider is closed")
                for dead in [s for s in self._ready if not s.alive()]:
                    self._ready.remove(dead)
                    dead.destroy()
                if self._ready:
                    sandbox = self._ready.pop(0)
                    break
                if self._failures >= failures + 2:  # one failed start is tried again
                    raise WorkspaceError(f"the sandbox could not start: {self.last_error}")
                if not self._starting and not self._pending:
                    self._launch_locked()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WorkspaceError("no sandbox became ready in time")
                self._cond.wait(min(left, 1.0))
        self.fill()
        return sandbox

    def close(self) -> None:
        """Kill every sandbox, ready or starting (a start in flight is destroyed when it ends)."""
        with self._cond:
            self._closed = True
            doomed = self._ready + list(self._starting)
            self._ready.clear()
            self._cond.notify_all()
        for sandbox in doomed:
            sandbox.stop()
        for sandbox in doomed:
            sandbox.remove()
        self._spawner.shutdown(wait=False)
