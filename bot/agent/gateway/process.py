"""The worker's handle on its gateway process: started with the worker, given the settings it
needs on stdin (never in argv or the environment), restarted if it dies, stopped with the
worker. The worker itself never loads the provider client."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from redis.asyncio import Redis

from bot import redis_outage
from bot.agent.gateway.access import SOCKET_NAME, Grants
from bot.config import Settings
from bot.errors import GatewayError

log = logging.getLogger(__name__)

LOCK_NAME = "owner.lock"  # its process holds a flock on it: a directory nobody holds is stale
START_SECONDS = 60.0  # until the process listens (Python and our modules load first)
WARM_SECONDS = 180.0  # until it can call the provider (litellm loads: seconds on a busy host)
STOP_SECONDS = 10.0
RESTART_SECONDS = 1.0
# What the gateway process is given of the environment: how to find Python, certificates and a
# proxy to the provider; none of the bot's secrets (its settings come on stdin).
PASSED_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
GATEWAY_FIELDS = ("state_dir", "log_level", "max_cost_per_run", "job_timeout_seconds")


def gateway_settings(settings: Settings) -> dict[str, Any]:
    """The settings the gateway process needs, secrets revealed: the LLM's, Redis's, its own."""
    fields: dict[str, Any] = {}
    for name in type(settings).model_fields:
        if not (name.startswith(("llm_", "redis_")) or name in GATEWAY_FIELDS):
            continue
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, Path):
            value = str(value)
        fields[name] = value
    return fields


def redis_for(settings: Settings) -> Redis:
    """A connection that rides out an outage as the worker's does (back-off capped at 5 s)."""
    redis: Redis = Redis.from_url(
        settings.redis_url,
        retry=redis_outage.retry(settings),
        retry_on_error=list(redis_outage.RETRY_ON),
    )
    return redis


def sweep(root: Path) -> None:
    """Remove the socket directories of gateway processes that are gone (no flock held)."""
    if not root.is_dir():
        return
    for entry in root.iterdir():
        lock = entry / LOCK_NAME
        if entry.is_symlink() or not lock.is_file():
            continue
        with contextlib.suppress(OSError), lock.open("a") as held:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if a process holds it
            shutil.rmtree(entry, ignore_errors=True)


class GatewayProcess(Grants):
    """One gateway process per worker, on a socket directory of its own (a sandbox sees that
    directory only): a worker stopping never takes another worker's gateway with it."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        super().__init__(settings, redis)
        self.root = settings.state_dir.resolve() / "llm-gateway"
        name = f"w{os.getpid()}-{secrets.token_hex(3)}"
        self.socket_path = self.root / name / SOCKET_NAME
        self.tcp_url = ""
        self.pid: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._warm = asyncio.Event()
        self._failed: str | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        """Where workspaces reach the gateway: LLM_GATEWAY_URL, else the TCP address."""
        return (self._settings.llm_gateway_url or self.tcp_url).rstrip("/")

    async def start(self) -> None:
        """Start the process and wait until it listens (not until it is warm)."""
        sweep(self.root)
        await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(), name="llm-gateway-process")

    async def _spawn(self) -> None:
        self._warm.clear()
        self._failed = None
        env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.agent.gateway",
            "--socket",
            str(self.socket_path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        try:
            proc.stdin.write(json.dumps(gateway_settings(self._settings)).encode() + b"\n")
            await proc.stdin.drain()
            async with asyncio.timeout(START_SECONDS):
                message = await self._message(proc)
        except BaseException:
            await _end(proc)
            raise
        if "listening" not in message:
            await _end(proc)
            error = message.get("error") or f"exited with {proc.returncode}"
            raise GatewayError(f"the LLM gateway process did not start: {error}")
        self.tcp_url = str(message["listening"])
        self._proc, self.pid = proc, proc.pid
        log.info("llm gateway process listening", extra={"url": self.url, "pid": proc.pid})

    @staticmethod
    async def _message(proc: asyncio.subprocess.Process) -> dict[str, Any]:
        assert proc.stdout is not None
        line = await proc.stdout.readline()
        if not line:
            await proc.wait()
            return {}
        try:
            message = json.loads(line)
        except ValueError:
            return {"error": f"said {line[:200]!r}"}
        return message if isinstance(message, dict) else {}

    async def _supervise(self) -> None:
        """Follow the process; start it again if it dies while the worker lives."""
        while not self._stopping:
            proc = self._proc
            if proc is not None:
                while message := await self._message(proc):
                    if message.get("warm"):
                        self._warm.set()
                        log.info("llm gateway process ready", extra={"pid": proc.pid})
                    elif "error" in message:
                        self._failed = str(message["error"])
                code = await proc.wait()
                if self._stopping:
                    return
                log.error("llm gateway process exited (%s); starting it again", code)
                self._warm.clear()
                self._failed = self._failed or f"the LLM gateway process exited ({code})"
            await asyncio.sleep(RESTART_SECONDS)
            try:
                await self._spawn()
            except Exception as exc:
                self._proc = None
                self._failed = str(exc)
                log.error("llm gateway process failed to start: %s", exc)

    async def ready(self) -> None:
        """Until the process can call the provider; a gateway that cannot start fails the run."""
        try:
            async with asyncio.timeout(WARM_SECONDS):
                await self._warm.wait()
                while self._proc is not None and self._proc.returncode is not None:
                    await asyncio.sleep(0.05)  # dead, not yet seen by the supervisor
                    await self._warm.wait()
        except TimeoutError:
            why = self._failed or "it did not get ready"
            raise GatewayError(f"the LLM gateway is unavailable: {why}") from None

    async def stop(self) -> None:
        self._stopping = True
        if self._proc is not None:
            await _end(self._proc)
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._supervisor
        shutil.rmtree(self.socket_path.parent, ignore_errors=True)


async def _end(proc: asyncio.subprocess.Process) -> None:
    """Ask the process to stop (stdin closed), then insist."""
    if proc.returncode is None and proc.stdin is not None:
        with contextlib.suppress(Exception):
            proc.stdin.close()
    try:
        async with asyncio.timeout(STOP_SECONDS):
            await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
