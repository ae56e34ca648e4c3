"""One run's sandbox: an agent-server in its own pid, mount, ipc, uts and network namespaces
(bubblewrap), as a host uid no other live sandbox has, seeing the system read-only and only its
own run directory writable; destroyed (every process, every file) when the run ends.

bwrap runs as the sandbox's uid, which cannot reach an interpreter under a private directory
(/root/.pyenv): rather than loosen the host's permissions, a private mount namespace (root's, for
the instant before bwrap starts) binds what the sandbox needs under one traversable tmpfs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bot.agent.workspace import netns, warm
from bot.agent.workspace.local import free_port
from bot.agent.workspace.netns import NetworkPolicy
from bot.agent.workspace.reach import STAGE
from bot.agent.workspace.sandbox_host import UidSlot
from bot.errors import WorkspaceError

log = logging.getLogger(__name__)

ROOT = "/workspace"  # the run's directory, inside
HOME = "/home/agent"
GATEWAY_DIR = "/run/llm-gateway"  # the gateway's socket directory, inside
GUEST_PORT = 8000  # the agent-server's port, inside
RELAY_PORT = 4000  # 127.0.0.1:4000 inside relays to the gateway's unix socket
GATEWAY_SOCKET = "gateway.sock"
SERVER_DIR = ".agent-server"  # the server's own state (conversations), in the run's directory

# Read-only pieces of /etc the tools inside need; passwd, group, hosts and resolv.conf are
# written per sandbox instead (the host's name nobody and point at slirp's DNS).
ETC = (
    "ssl",
    "ca-certificates",
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "nsswitch.conf",
    "mime.types",
    "gitconfig",
    "inputrc",
    "terminfo",
)
PASSTHROUGH = ("LANG", "LC_ALL", "TZ", "TERM")


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    base: Path  # the host directory of every sandbox of this state dir (root only)
    policy: NetworkPolicy = field(default_factory=NetworkPolicy)
    gateway_dir: Path | None = None  # the LLM gateway's socket directory on the host
    # Host-wide, whatever the state directory: two bots on one host never share a uid either.
    uid_locks: Path = Path("/run/openhands-bot-sandbox-uids")
    uid_base: int = 900_000
    uid_count: int = 1000
    start_timeout: float = 240.0


def available() -> str | None:
    """None when sandboxes can be made here, else why not."""
    if os.geteuid() != 0:
        return "the bot is not root: it cannot give each sandbox a uid of its own"
    for tool in ("bwrap", "slirp4netns", "nft", "nsenter", "unshare", "setpriv", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install bubblewrap slirp4netns nftables)"
    return None


def server_env(api_key: str) -> dict[str, str]:
    """The agent-server's whole environment: nothing of the bot's, by construction."""
    env = {name: os.environ[name] for name in PASSTHROUGH if name in os.environ}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": HOME,
            "USER": "agent",
            "TMPDIR": "/tmp",
            "OH_SESSION_API_KEYS_0": api_key,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no network fetch at import
            "OPENHANDS_SUPPRESS_BANNER": "1",
            "OH_ENABLE_VSCODE": "false",
            "OH_ENABLE_BROWSER": "false",
            "OH_PRELOAD_TOOLS": "false",
            "GIT_TERMINAL_PROMPT": "0",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    return env


def _etc_files(uid: int) -> dict[str, str]:
    return {
        "passwd": f"root:x:0:0:root:/root:/bin/sh\nagent:x:{uid}:{uid}:agent:{HOME}:/bin/bash\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        "group": f"root:x:0:\nagent:x:{uid}:\nnogroup:x:65534:\n",
        "hosts": "127.0.0.1 localhost sandbox\n::1 localhost\n",
        "resolv.conf": f"nameserver {netns.DNS_ADDRESS}\n",
        "hostname": "sandbox\n",
    }


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in ETC:
        if (Path("/etc") / name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    return args


def _outside_usr(path: Path) -> bool:
    return not path.is_relative_to("/usr")


class Sandbox:
    """A started sandbox; `stop` kills it, `remove` deletes its directory."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.slot = UidSlot(config)
        self.uid = self.slot.uid
        self.dir = config.base / f"{self.uid}-{secrets.token_hex(4)}"
        self.work = self.dir / "work"  # the run's directory: /workspace inside
        self.api_key = secrets.token_urlsafe(32)
        self.port = 0
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.child_pid: int | None = None
        self.slirp: netns.Slirp | None = None
        self.started_at = time.monotonic()
        self.ready_seconds: float | None = None

    @property
    def llm_gateway_url(self) -> str | None:
        return f"http://127.0.0.1:{RELAY_PORT}" if self.config.gateway_dir is not None else None

    def _layout(self) -> list[tuple[Path, str, bool]]:
        """The host directories to bind: (source, inside, writable)."""
        self.dir.mkdir(mode=0o700, parents=True)
        (self.dir / "owner").write_text(str(os.getpid()))
        self.work.mkdir(mode=0o700)
        (self.work / SERVER_DIR).mkdir(mode=0o700)
        for path in (self.work, self.work / SERVER_DIR):
            os.chown(path, self.uid, self.uid)
        etc = self.dir / "etc"
        etc.mkdir(mode=0o755)
        for name, text in _etc_files(self.uid).items():
            (etc / name).write_text(text)
            (etc / name).chmod(0o644)
        binds = [(self.work, ROOT, True), (etc, "", False)]  # etc: its files, one by one
        interpreters = {Path(sys.base_prefix).resolve(), Path(sys.prefix)}
        binds += [(path, str(path), False) for path in sorted(interpreters) if _outside_usr(path)]
        gateway = self.config.gateway_dir
        if gateway is not None:
            gateway.mkdir(parents=True, exist_ok=True)
            binds.append((gateway, GATEWAY_DIR, False))
        return binds

    def _command(self) -> str:
        python = shlex.quote(sys.executable)
        server = (
            f"cd {ROOT}/{SERVER_DIR} && exec {python} -m openhands.agent_server "
            f"--host 0.0.0.0 --port {GUEST_PORT}"
        )
        socat = shutil.which("socat")
        if self.config.gateway_dir is None or socat is None:
            return server
        relay = (
            f"{shlex.quote(socat)} TCP-LISTEN:{RELAY_PORT},bind=127.0.0.1,reuseaddr,fork,nodelay "
            f"UNIX-CONNECT:{GATEWAY_DIR}/{GATEWAY_SOCKET} </dev/null >/dev/null 2>&1 &"
        )
        return f"{relay} {server}"

    def _argv(self, info_fd: int, block_fd: int) -> list[str]:
        binds = self._layout()
        script = ["set -e", f"mount -t tmpfs -o mode=0755,size=64k openhands-sandbox {STAGE}"]
        bwrap = [
            "bwrap",
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "sandbox",
            *_system_binds(),
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
            "--tmpfs",
            HOME,
        ]
        for index, (source, inside, writable) in enumerate(binds):
            staged = STAGE / str(index)
            script.append(f"mkdir {staged} && mount --bind {shlex.quote(str(source))} {staged}")
            if inside:
                bwrap += ["--bind" if writable else "--ro-bind", str(staged), inside]
            else:
                for name in _etc_files(self.uid):
                    bwrap += ["--ro-bind", f"{staged}/{name}", f"/etc/{name}"]
        bwrap += ["--chdir", ROOT, "--info-fd", str(info_fd), "--block-fd", str(block_fd)]
        bwrap += ["--", "/bin/sh", "-c", self._command()]
        drop = ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups", "--"]
        script.append("exec " + shlex.join(drop + bwrap))
        unshare = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c"]
        return [*unshare, "\n".join(script)]

    def spawn(self) -> None:
        """Start the sandbox's processes and network; the server is then still booting."""
        STAGE.mkdir(mode=0o755, parents=True, exist_ok=True)
        info_read, info_write = os.pipe()
        block_read, block_write = os.pipe()
        try:
            argv = self._argv(info_write, block_read)
            with open(self.dir / "agent-server.log", "ab") as log_file:
                self.process = subprocess.Popen(
                    argv,
                    pass_fds=(info_write, block_read),
                    # Inherited down to the server: never on a command line (ps shows those).
                    env=server_env(self.api_key),
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            os.close(info_write)
            os.close(block_read)
            info_write = block_read = -1
            self.child_pid = int(_read_info(info_read, self.process)["child-pid"])
            self.slirp = netns.start_slirp(
                self.child_pid, self.dir / "slirp.sock", self.config.policy, self.dir / "slirp.log"
            )
            netns.apply_rules(self.child_pid, self.config.policy)
            self.port = free_port()
            netns.forward_port(self.dir / "slirp.sock", self.port, GUEST_PORT)
            self.url = f"http://127.0.0.1:{self.port}"
            os.write(block_write, b"1")  # the network is ready: let the server start
        except BaseException:
            self.stop()
            raise
        finally:
            for fd in (info_read, info_write, block_read, block_write):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)

    def wait_ready(self) -> None:
        """Until the server answers /health (or dies, or the start timeout passes)."""
        assert self.process is not None
        deadline = self.started_at + self.config.start_timeout
        with httpx.Client(timeout=2) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise WorkspaceError(
                        f"the sandboxed agent-server exited with {self.process.returncode}; "
                        f"see {self.dir / 'agent-server.log'}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"{self.url}/health").status_code == 200:
                        self._warm_up(http)
                        self.ready_seconds = time.monotonic() - self.started_at
                        return
                time.sleep(0.2)
        raise WorkspaceError(
            f"the sandboxed agent-server did not start within {self.config.start_timeout:.0f}s"
        )

    def _warm_up(self, http: httpx.Client) -> None:
        """The server's first command, conversation and upload are slow (its terminal starts,
        its agent loads): pay them here, in the pool (`warm`); make the run's directory."""
        http.post(
            f"{self.url}/api/bash/execute_bash_command",
            json={"command": f"mkdir -p {ROOT}/repo", "timeout": 60},
            headers={"X-Session-API-Key": self.api_key},
            timeout=90,
        )
        warm.first_conversation(http, self.url, self.api_key, ROOT)

    def start(self, spawner: Executor | None = None) -> None:
        """Spawn (in `spawner`'s thread, which must outlive the sandbox: see pool.py) and wait
        until ready; a failed start leaves nothing behind (but its logs)."""
        try:
            if spawner is None:
                self.spawn()
            else:
                spawner.submit(self.spawn).result()
            self.wait_ready()
        except BaseException:
            self.stop()
            for name in ("slirp.log", "agent-server.log"):
                with contextlib.suppress(OSError):
                    tail = (self.dir / name).read_text(errors="replace")[-1500:]
                    log.warning("sandbox %s failed to start; %s ends:\n%s", self.uid, name, tail)
            self.remove()
            raise

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGKILL every process of the sandbox: its pid namespace dies with its first process."""
        child, self.child_pid = self.child_pid, None
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        if self.process is not None:
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        if self.slirp is not None:
            self.slirp.stop()

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.slot.release()

    def destroy(self) -> None:
        self.stop()
        self.remove()


def _read_info(fd: int, process: subprocess.Popen[bytes], timeout: float = 30) -> dict[str, int]:
    """bwrap's --info-fd JSON: the pid of the sandbox's first process (on the host)."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([fd], [], [], 0.5)
        if readable:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
            with contextlib.suppress(ValueError):
                info: dict[str, int] = json.loads(data)
                return info
        elif process.poll() is not None:
            break
    raise WorkspaceError("bubblewrap did not start the sandbox (see its agent-server.log)")


def probe(uid: int = 65534) -> str | None:
    """None when bubblewrap can make a sandbox's namespaces here (as an unprivileged uid), else
    its complaint (a container without CAP_SYS_ADMIN or with user namespaces off, typically)."""
    why = available()
    if why is not None:
        return why
    done = subprocess.run(
        [
            "setpriv",
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            "--",
            "bwrap",
            "--unshare-all",
            "--die-with-parent",
            *_system_binds(),
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--",
            "/bin/true",
        ],
        capture_output=True,
        check=False,
        timeout=30,
    )
    if done.returncode != 0:
        return f"bubblewrap failed: {done.stderr.decode(errors='replace').strip()[:300]}"
    return None
