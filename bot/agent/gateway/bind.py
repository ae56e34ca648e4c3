"""The gateway's listening sockets, bound before any provider code loads: a unix socket a
sandbox relays, and TCP for `server`/`runtime` workspaces."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
from pathlib import Path

from bot.errors import GatewayError

log = logging.getLogger(__name__)


def listen_address(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise GatewayError(f"LLM_GATEWAY_LISTEN must be host:port, not {listen!r}")
    return host.strip("[]"), int(port)


def bind_unix(path: Path) -> tuple[socket.socket, int]:
    """The socket at `path` (a dead server's left there is replaced) and its inode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
    except OSError:
        sock.close()
        raise
    # Anyone on this host who can reach the path may connect (a sandbox's relay, whatever its
    # user): a live run's credential is what lets a request through, not the socket.
    os.chmod(path, 0o666)
    sock.set_inheritable(False)
    return sock, path.stat().st_ino


def bind_tcp(listen: str) -> tuple[socket.socket, str]:
    """A socket on LLM_GATEWAY_LISTEN and the URL it answers at."""
    host, port = listen_address(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # accepted connections inherit it. Without it, Nagle held each answer's last write for the
    # client's delayed ACK (~40 ms per call on loopback).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if port:
        # A fixed port is served by every worker's gateway on this host (the kernel spreads the
        # connections): any gateway serves any run, its credential is in Redis.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise GatewayError(f"the LLM gateway cannot listen on {host}:{port}: {exc}") from exc
    sock.set_inheritable(False)
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
    return sock, f"http://{shown}:{bound[1]}"


def bind_both(listen: str, path: Path) -> tuple[socket.socket | None, socket.socket, str]:
    """(the unix socket, or None where it cannot be bound; the TCP socket; its URL)."""
    tcp, url = bind_tcp(listen)
    try:
        unix, _ = bind_unix(path)
    except OSError as exc:  # e.g. a path over the kernel's 108 bytes: TCP still serves
        log.warning("llm gateway: no unix socket at %s: %s", path, exc)
        unix = None
    return unix, tcp, url


def unlink_if_ours(path: Path, inode: int | None) -> None:
    """Remove the socket at `path` if it is still the one we bound (not a newer server's)."""
    with contextlib.suppress(OSError):
        if inode is not None and path.stat().st_ino == inode:
            os.unlink(path)
