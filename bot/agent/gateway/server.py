"""The gateway served in this process's event loop: uvicorn on a unix socket (a sandbox relays
it) and on LLM_GATEWAY_LISTEN (for `server`/`runtime` workspaces). The gateway process runs
one (`python -m bot.agent.gateway`); tests and benchmarks run one in their own loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from pathlib import Path

import uvicorn
from redis.asyncio import Redis

from bot.agent.gateway import bind, upstream
from bot.agent.gateway.access import SOCKET_NAME, Grants
from bot.agent.gateway.relay import Relay
from bot.config import Settings
from bot.errors import GatewayError

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the process's owner handles SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


class GatewayServer(Grants):
    """The relay, served here; any gateway serves any run (credentials are in Redis)."""

    _live = 0  # gateways serving in this process

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        *,
        socket_path: Path | None = None,
        sockets: tuple[socket.socket | None, socket.socket, str] | None = None,
    ) -> None:
        """`sockets`: (unix, tcp, tcp url) already bound by the caller, else bound at start."""
        super().__init__(settings, redis)
        self.relay = Relay(settings, self.credentials)
        default = settings.state_dir.resolve() / "llm-gateway" / SOCKET_NAME
        self.socket_path = socket_path or default
        self._bound = sockets
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket_inode: int | None = None
        self.tcp_url = ""
        self._warming: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """Where workspaces reach the gateway: LLM_GATEWAY_URL, else the TCP address."""
        return (self._settings.llm_gateway_url or self.tcp_url).rstrip("/")

    def _sockets(self) -> list[socket.socket]:
        bound = self._bound or bind.bind_both(self._settings.llm_gateway_listen, self.socket_path)
        unix, tcp, self.tcp_url = bound
        if unix is None:
            return [tcp]
        self._socket_inode = self.socket_path.stat().st_ino
        return [tcp, unix]

    async def start(self) -> None:
        # litellm's first call loads its provider code (seconds on a busy machine): done in the
        # background, so serving starts at once, and awaited before a run gets its credential.
        self._warming = asyncio.create_task(upstream.warm_up(), name="llm-gateway-warm-up")
        sockets = self._sockets()
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
        GatewayServer._live += 1
        self._task = asyncio.create_task(server.serve(sockets=sockets), name="llm-gateway")
        while not server.started:
            if self._task.done():
                await self._task  # raises what stopped it
                raise GatewayError("the LLM gateway stopped at start-up")
            await asyncio.sleep(0.01)
        log.info("llm gateway listening", extra={"url": self.url, "socket": str(self.socket_path)})

    async def ready(self) -> None:
        if self._warming is not None:
            await asyncio.shield(self._warming)

    async def served(self) -> None:
        """Until the server stops."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        if self._warming is not None and not self._warming.done():
            self._warming.cancel()
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)
        if self._server is not None:
            GatewayServer._live -= 1
            if GatewayServer._live == 0:  # litellm's clients are the process's: the last closes
                await upstream.close_clients()
        self._server = self._task = None
        bind.unlink_if_ours(self.socket_path, self._socket_inode)
