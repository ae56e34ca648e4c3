"""`local` workspaces without a sandbox (LOCAL_SANDBOX=false, development only): one agent-server
subprocess per worker, shared by its runs (the default is a sandbox per run: sandboxed.py).

The server gets a scrubbed environment and, when the bot runs as root, an unprivileged user of
its own: it can read neither the bot's process environment nor its `.env` or key file. But every
run's agent is that one user on one server: runs can read each other's checkouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bot.agent.server_client import AgentServerClient
from bot.agent.workspace import orphans, reach
from bot.agent.workspace.base import Workspace
from bot.errors import AgentServerError, WorkspaceError

log = logging.getLogger(__name__)

# Only these variables of the bot's own environment reach the agent-server (and its terminal).
PASSTHROUGH = ("PATH", "LANG", "LC_ALL", "TZ", "TERM")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scrubbed_env(*, home: Path, api_key: str, port: int) -> dict[str, str]:
    """The agent-server's whole environment: nothing of the bot's secrets, by construction."""
    env = {name: os.environ[name] for name in PASSTHROUGH if name in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(
        {
            "HOME": str(home),
            "OH_SESSION_API_KEYS_0": api_key,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no network fetch at import (~4 s saved)
            "OPENHANDS_SUPPRESS_BANNER": "1",
            "OH_ENABLE_VSCODE": "false",
            "OH_ENABLE_BROWSER": "false",
            "OH_PRELOAD_TOOLS": "false",
            "GIT_TERMINAL_PROMPT": "0",  # a clone without credentials fails instead of waiting
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _ensure_user(name: str, home: Path) -> pwd.struct_passwd:
    """The unprivileged account the agent runs as, created on first use."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise WorkspaceError(f"cannot create the agent user {name!r}: useradd is not installed")
    subprocess.run(
        [
            useradd,
            "--system",
            "--home-dir",
            str(home),
            "--shell",
            "/bin/bash",
            "--user-group",
            name,
        ],
        check=True,
        capture_output=True,
    )
    log.info("created the unprivileged agent user %s", name)
    return pwd.getpwnam(name)


def protect_secret_files(paths: list[Path]) -> None:
    """Make the bot's secret files readable by their owner only."""
    for path in paths:
        if path.is_file() and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
            log.warning("restricted %s to its owner (it holds secrets)", path)


def stop_process_group(process: subprocess.Popen[bytes], grace: float = 10) -> None:
    """SIGTERM the process's group (the server and its terminals), SIGKILL after `grace`."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


async def make_run_dir(client: AgentServerClient, root: str, where: str) -> None:
    """Create (or touch, when kept from an earlier run) a run's directory on the server."""
    try:
        made = await client.bash(prepare_command(root), limit_seconds=60)
    except AgentServerError as exc:
        raise WorkspaceError(f"{where} failed: {exc}") from exc
    if not made.ok:
        raise WorkspaceError(f"could not create the run directory: {made.stderr.strip()}")


def prepare_command(root: str) -> str:
    """Create (or touch, when kept from an earlier run) a run directory."""
    quoted = shlex.quote(root)
    return f"mkdir -p {quoted}/repo && touch {quoted}"


def release_command(root: str, parent: str, keep_seconds: float, keep_all: bool) -> str:
    """Remove the run's directory, or keep it and sweep kept ones unused for too long."""
    if keep_all:
        return "true"
    if keep_seconds <= 0:
        return f"rm -rf {shlex.quote(root)}"
    minutes = max(1, int(keep_seconds // 60))
    return (
        f"touch {shlex.quote(root)}; find {shlex.quote(parent)} -mindepth 1 -maxdepth 1 -type d "
        f"-mmin +{minutes} -exec rm -rf {{}} +"
    )


class LocalProvider:
    """One agent-server per worker process, shared by its jobs; restarted if it dies.

    The process is a plain `subprocess.Popen` and every run gets its own HTTP client, so the
    provider does not belong to one event loop.
    """

    kind = "local"
    can_keep = True

    def __init__(
        self,
        state_dir: Path,
        *,
        agent_user: str = "openhands-agent",
        start_timeout: float = 90.0,
        secret_files: list[Path] | None = None,
        keep_workspaces: bool = False,
    ) -> None:
        self._base = state_dir.resolve() / "agent-server"
        self._home = self._base / "home"
        self._data = self._base / "data"
        self._agent_user = agent_user
        self._start_timeout = start_timeout
        self._secret_files = secret_files or []
        self._keep = keep_workspaces
        self._process: subprocess.Popen[bytes] | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self.url = ""
        self.api_key = ""
        self.user: pwd.struct_passwd | None = None

    @property
    def workspaces_dir(self) -> Path:
        return self._base / "workspaces"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _loop_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    def _prepare(self) -> tuple[int, int] | None:
        """Directories, the agent user and file modes; the subprocess options that follow."""
        for directory in (self._base, self._home, self._data, self.workspaces_dir):
            directory.mkdir(parents=True, exist_ok=True)
        protect_secret_files(self._secret_files)
        if os.geteuid() != 0:
            return None
        self.user = _ensure_user(self._agent_user, self._home)
        self._compile_environment()
        for directory in (self._base, self._home, self._data, self.workspaces_dir):
            os.chown(directory, self.user.pw_uid, self.user.pw_gid)
        return self.user.pw_uid, self.user.pw_gid

    def _compile_environment(self) -> None:
        """Byte-compile our packages once: the agent user cannot write `__pycache__` there, and
        without it every start of the server compiles ~15 s of imports again."""
        site = Path(sysconfig.get_paths()["purelib"])
        stamp = self._base / ".bytecode-compiled"
        key = f"{sys.prefix}:{site.stat().st_mtime_ns}"
        if stamp.is_file() and stamp.read_text() == key:
            return
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "-j", "0", str(site)],
            capture_output=True,
            check=False,
        )
        stamp.write_text(key)
        log.info("byte-compiled %s in %.1fs", site, time.monotonic() - started)

    @property
    def _servers(self) -> Path:
        return self._base / "servers"  # which worker started which agent-server

    def _spawn(self) -> None:
        ids = self._prepare()
        orphans.reap(self._servers)
        port = free_port()
        self.api_key = secrets.token_urlsafe(32)
        self.url = f"http://127.0.0.1:{port}"
        command = [
            sys.executable,
            "-m",
            "openhands.agent_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        user: dict[str, object] = {}
        needed = [Path(sys.base_prefix).resolve(), Path(sys.prefix), self._base]
        if ids and reach.needs_private_view(needed):
            # The interpreter is under a directory the agent user cannot pass (/root): show it
            # just those paths, in a mount namespace of its own, rather than open the directory.
            reach.STAGE.mkdir(mode=0o755, parents=True, exist_ok=True)
            drop = ["setpriv", f"--reuid={ids[0]}", f"--regid={ids[1]}", "--clear-groups", "--"]
            script = ["set -e", *reach.private_view(needed), f"cd {shlex.quote(str(self._data))}"]
            script.append("exec " + shlex.join(drop + command))
            command = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c"]
            command.append("\n".join(script))
        elif ids:
            user = {"user": ids[0], "group": ids[1], "extra_groups": []}
        with open(self._base / "agent-server.log", "ab") as log_file:
            self._process = subprocess.Popen(  # type: ignore[call-overload]
                command,
                cwd=self._data,
                env=scrubbed_env(home=self._home, api_key=self.api_key, port=port),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **user,
            )
        orphans.record(self._servers, self._process.pid, os.getpid())

    def client(self) -> AgentServerClient:
        """A fresh client for the shared server (close it when done)."""
        return AgentServerClient(self.url, self.api_key)

    async def start(self) -> None:
        async with self._loop_lock():
            await self._start_locked()

    async def _start_locked(self) -> None:
        started = time.monotonic()
        await asyncio.to_thread(self._spawn)
        assert self._process is not None
        deadline = started + self._start_timeout
        async with self.client() as client:
            while time.monotonic() < deadline:
                code = self._process.poll()
                if code is not None:
                    raise WorkspaceError(
                        f"the local agent-server exited with {code} at start-up; "
                        f"see {self._base / 'agent-server.log'}"
                    )
                if await client.healthy():
                    log.info(
                        "local agent-server ready in %.1fs",
                        time.monotonic() - started,
                        extra={"url": self.url},
                    )
                    return
                await asyncio.sleep(0.25)
        await asyncio.to_thread(self._terminate)
        raise WorkspaceError(
            f"the local agent-server did not start within {self._start_timeout:.0f}s"
        )

    async def ensure_running(self) -> None:
        """Restart the shared server first if it died or stopped answering."""
        async with self._loop_lock():
            if self._process is not None and self._process.poll() is None:
                async with self.client() as client:
                    if await client.healthy():
                        return
            if self._process is not None:
                log.warning("local agent-server is down; restarting it")
                await asyncio.to_thread(self._terminate)
            await self._start_locked()

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process_group(process)
            orphans.forget(self._servers, process.pid)

    async def close(self) -> None:
        await asyncio.to_thread(self._terminate)

    @asynccontextmanager
    async def open(self, run_id: str, *, keep_seconds: float = 0) -> AsyncIterator[Workspace]:
        """The run's directory; with `keep_seconds`, it outlives the run (a later run on the same
        thread continues in it) and is removed once unused for that long."""
        await self.ensure_running()
        root = str(self.workspaces_dir / run_id)
        async with self.client() as client:
            await make_run_dir(client, root, "the local agent-server")
            try:
                yield Workspace(client=client, root=root, kind=self.kind)
            finally:
                with contextlib.suppress(AgentServerError):
                    await client.bash(
                        release_command(root, str(self.workspaces_dir), keep_seconds, self._keep),
                        limit_seconds=120,
                    )
