"""A private redis-server for the embedded default: `serve` works on a machine with no Redis yet.

Used only when REDIS_URL is set nowhere and nothing answers on 127.0.0.1:6379. The server keeps
its data (append-only file) in the state directory and listens only on a unix socket there (in
a private temporary directory when that path is too long for a socket), never on a TCP port the
agent's processes could reach. Whoever starts it stops it on exit; other
processes of the bot on the same state directory (`replay`, a second `serve`) share it meanwhile.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from bot.config import Settings

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = ("127.0.0.1", 6379)
SOCKET_PATH_MAX = 100  # sun_path holds 104 (macOS) to 108 (Linux) bytes
HOW_TO_GET = (
    "no Redis answers on 127.0.0.1:6379 and redis-server is not installed. Install it "
    "(Debian/Ubuntu: `apt-get install redis-server`; macOS: `brew install redis`) and the bot "
    "starts a private one in its state directory, or set REDIS_URL to a Redis you run "
    "(e.g. REDIS_URL=redis://127.0.0.1:6379/0)."
)

Address = tuple[str, int] | str  # (host, port) or a unix socket path


class RedisUnavailable(Exception):
    """No Redis to use, and none could be started; the message says what to do."""


def answers(address: Address, timeout: float = 0.5) -> bool:
    """Whether a Redis at `address` answers PING without asking for a password."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class PrivateRedis:
    """One redis-server with its data in `data_dir`, shared by the processes that use that dir.

    The first process takes `owner.lock` and starts (or, after a crash, adopts) the server, and
    stops it in `stop()`; the others find its URL in `data_dir/url` and only use it."""

    def __init__(self, data_dir: Path, executable: str, *, start_timeout: float = 10.0) -> None:
        self.data_dir = data_dir.resolve()
        self._executable = executable
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None
        self.owner = False
        self.url = ""
        self.address: Address = ""

    @property
    def _socket(self) -> Path:
        return self.data_dir / "redis.sock"

    def start(self) -> str:
        """Start (or join) the server; its URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)  # the queue holds deliveries: owner only
        self._lock_fd = os.open(self.data_dir / "owner.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return self._join()
        self.owner = True
        try:
            return self._own()
        except BaseException:
            self._release()
            raise

    def _join(self) -> str:
        """Another process of the bot runs the server: wait until it answers, then use it."""
        deadline = time.monotonic() + self._start_timeout
        url_file = self.data_dir / "url"
        while time.monotonic() < deadline:
            if url_file.is_file():
                self.url = url_file.read_text().strip()
                self.address = _address_of(self.url)
                if answers(self.address):
                    log.info("using the private redis-server another bot process runs")
                    return self.url
            time.sleep(0.05)
        raise RedisUnavailable(
            f"another openhands-bot process holds {self.data_dir / 'owner.lock'} but its "
            "redis-server does not answer; stop that process or set REDIS_URL"
        )

    def _own(self) -> str:
        url_file = self.data_dir / "url"
        if url_file.is_file():  # its owner is gone (we hold the lock): adopt a server still up
            self.url = url_file.read_text().strip()
            self.address = _address_of(self.url)
            if answers(self.address):
                log.warning("adopting the private redis-server a previous run left behind")
                return self.url
        socket_path = str(self._socket)
        if len(socket_path.encode()) > SOCKET_PATH_MAX:
            # Too long for a socket path: a short private directory instead, never a TCP port
            # (on a port, anything on this host, the agent included, could reach the queue).
            socket_path = str(Path(tempfile.mkdtemp(prefix="openhands-redis-")) / "redis.sock")
        self.address, self.url = socket_path, f"unix://{socket_path}?db=0"
        listen = ["--port", "0", "--unixsocket", socket_path, "--unixsocketperm", "700"]
        url_file.write_text(self.url + "\n")
        self._process = subprocess.Popen(
            [
                self._executable,
                *listen,
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--appendonly",
                "yes",
                "--save",
                "",  # the append-only file is the persistence; no RDB snapshots besides it
                "--daemonize",
                "no",
                "--logfile",
                str(self.data_dir / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C stops the bot first; the bot then stops Redis
        )
        deadline = time.monotonic() + self._start_timeout
        while not answers(self.address):
            code = self._process.poll()
            if code is not None or time.monotonic() > deadline:
                self._stop_process()
                raise RedisUnavailable(
                    f"the private redis-server did not start (exit code {code}); "
                    f"see {self.data_dir / 'redis.log'}"
                )
            time.sleep(0.02)
        log.info("started a private redis-server", extra={"data_dir": str(self.data_dir)})
        return self.url

    def stop(self) -> None:
        """Stop the server if this process owns it (its data is flushed to disk first)."""
        if not self.owner:
            self._release()
            return
        client = Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=2)
        with contextlib.suppress(RedisError, OSError):
            client.shutdown()  # fsyncs the append-only file, then exits
        client.close()
        self._stop_process()
        deadline = time.monotonic() + 5
        while answers(self.address) and time.monotonic() < deadline:
            time.sleep(0.02)
        (self.data_dir / "url").unlink(missing_ok=True)
        if isinstance(self.address, str) and Path(self.address).parent != self.data_dir:
            with contextlib.suppress(OSError):  # the short private directory of a deep state dir
                shutil.rmtree(Path(self.address).parent)
        self._release()
        log.info("stopped the private redis-server")

    def _stop_process(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None
        self.owner = False


def _address_of(url: str) -> Address:
    if url.startswith("unix://"):
        return url.removeprefix("unix://").split("?", 1)[0]
    host_port = url.removeprefix("redis://").split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    return host, int(port)


@contextmanager
def redis_for(
    settings: Settings,
    *,
    default_address: tuple[str, int] = DEFAULT_ADDRESS,
    which: Callable[[str], str | None] = shutil.which,
) -> Iterator[Settings]:
    """`settings` as they are when REDIS_URL is set or a Redis answers at the default address;
    otherwise with the URL of a private redis-server, running until the block ends."""
    if "redis_url" in settings.model_fields_set or answers(default_address):
        yield settings
        return
    executable = which("redis-server")
    if executable is None:
        raise RedisUnavailable(HOW_TO_GET)
    server = PrivateRedis(settings.state_dir / "redis", executable)
    url = server.start()
    try:
        yield settings.model_copy(update={"redis_url": url})
    finally:
        server.stop()
