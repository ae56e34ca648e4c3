"""The gateway as a worker serves it: uvicorn in the worker's event loop, on a unix socket under
STATE_DIR (a sandbox relays it) and on LLM_GATEWAY_LISTEN (for `server`/`runtime` workspaces),
and the per-run credential a run holds while it lives."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass

import uvicorn
from redis.asyncio import Redis

from bot.agent.gateway import upstream
from bot.agent.gateway.credentials import Credentials, Usage
from bot.agent.gateway.relay import Relay
from bot.config import Settings
from bot.errors import GatewayError

log = logging.getLogger(__name__)

PROXY_PREFIX = "litellm_proxy/"  # the agent-server's litellm: an OpenAI-compatible proxy
USAGE_SECONDS = 24 * 3600  # a run's usage stays readable this long after its last call


@dataclass(frozen=True, slots=True)
class LLMAccess:
    """All the agent-server learns of the LLM: where the gateway is, the run's credential, and
    the model name the gateway maps to the real one. Never the provider key."""

    base_url: str
    api_key: str
    model: str


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the worker (or `serve`) owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


def _listen_address(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise GatewayError(f"LLM_GATEWAY_LISTEN must be host:port, not {listen!r}")
    return host.strip("[]"), int(port)


class Gateway:
    """One per worker process; any worker's gateway serves any run (credentials are in Redis)."""

    _live = 0  # gateways serving in this process

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self._settings = settings
        self.credentials = Credentials(redis, usage_seconds=USAGE_SECONDS)
        self.relay = Relay(settings, self.credentials)
        self.socket_path = settings.state_dir.resolve() / "llm-gateway" / "gateway.sock"
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket_inode: int | None = None
        self.tcp_url = ""
        self._warming: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """Where workspaces reach the gateway: LLM_GATEWAY_URL, else the TCP address."""
        return (self._settings.llm_gateway_url or self.tcp_url).rstrip("/")

    def _bind_unix(self) -> socket.socket:
        path = self.socket_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()  # a dead worker's; a live one's keeps serving its open clients
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        # Anyone on this host who can reach the path may connect (a sandbox's relay, whatever
        # its user): a live run's credential is what lets a request through, not the socket.
        os.chmod(path, 0o666)
        self._socket_inode = path.stat().st_ino
        return sock

    def _bind_tcp(self) -> socket.socket:
        host, port = _listen_address(self._settings.llm_gateway_listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise GatewayError(f"the LLM gateway cannot listen on {host}:{port}: {exc}") from exc
        bound = sock.getsockname()
        shown = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
        self.tcp_url = f"http://{shown}:{bound[1]}"
        return sock

    async def start(self) -> None:
        # litellm's first call loads its provider code (seconds on a busy machine): done in the
        # background, so the worker starts at once, and awaited before a run gets its credential.
        self._warming = asyncio.create_task(upstream.warm_up(), name="llm-gateway-warm-up")
        sockets = [self._bind_tcp()]
        try:
            sockets.append(self._bind_unix())
        except OSError as exc:  # e.g. a path over the kernel's 108 bytes: TCP still serves
            log.warning("llm gateway: no unix socket at %s: %s", self.socket_path, exc)
        for sock in sockets:
            sock.set_inheritable(False)
        config = uvicorn.Config(
            self.relay.app,
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            ws="none",
            timeout_keep_alive=30,
        )
        server = self._server = _Server(config)
        Gateway._live += 1
        self._task = asyncio.create_task(server.serve(sockets=sockets), name="llm-gateway")
        while not server.started:
            if self._task.done():
                await self._task  # raises what stopped it
                raise GatewayError("the LLM gateway stopped at start-up")
            await asyncio.sleep(0.01)
        log.info("llm gateway listening", extra={"url": self.url, "socket": str(self.socket_path)})

    async def stop(self) -> None:
        if self._warming is not None and not self._warming.done():
            self._warming.cancel()
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)
        if self._server is not None:
            Gateway._live -= 1
            if Gateway._live == 0:  # litellm's clients are the process's: the last one closes
                await upstream.close_clients()
        self._server = self._task = None
        path = self.socket_path
        with contextlib.suppress(OSError):
            if self._socket_inode is not None and path.stat().st_ino == self._socket_inode:
                os.unlink(path)  # ours, not a newer worker's

    @contextlib.asynccontextmanager
    async def access(self, run_id: str, *, base_url: str | None = None) -> AsyncIterator[LLMAccess]:
        """A credential for `run_id`, valid while the block runs (and never past the job's
        longest life, should the worker die): revoked on the way out, whatever happened."""
        settings = self._settings
        if self._warming is not None:
            await asyncio.shield(self._warming)
        token = await self.credentials.mint(
            run_id, settings.max_cost_per_run, ttl_seconds=settings.job_timeout_seconds
        )
        try:
            yield LLMAccess(
                base_url=(base_url or self.url).rstrip("/"),
                api_key=token,
                model=PROXY_PREFIX + settings.llm_model,
            )
        finally:
            try:
                await asyncio.shield(self.credentials.revoke(token))
            except Exception as exc:  # Redis away: the credential's expiry revokes it
                log.warning("could not revoke the run's llm credential: %s", type(exc).__name__)

    async def usage(self, run_id: str) -> Usage:
        return await self.credentials.usage(run_id)
