"""The gateway process a worker starts (`python -m bot.agent.gateway --socket PATH`): the
provider client (litellm, ~190 MiB) lives here, out of the worker. It reads its settings as one
JSON line on stdin, says on stdout when it listens and when it is warm, and stops when stdin
closes (its worker is gone, however it died) or on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from bot import logs
from bot.agent.gateway import bind
from bot.agent.gateway.process import LOCK_NAME, redis_for
from bot.config import Settings


def _say(**message: Any) -> None:
    """One line to the worker; a worker that has gone (its pipe closed) hears nothing."""
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Set `stop` when stdin closes: the worker that started us is gone."""

    def read() -> None:
        with contextlib.suppress(Exception):
            while sys.stdin.buffer.read(4096):
                pass
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=read, name="gateway-stdin", daemon=True).start()


async def serve(settings: Settings, socket_path: Path) -> None:
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    lock = (socket_path.parent / LOCK_NAME).open("a")  # held for our life: the dir is in use
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    unix, tcp, tcp_url = bind.bind_both(settings.llm_gateway_listen, socket_path)
    _say(listening=tcp_url, socket=unix is not None)  # the worker may go on; calls queue up

    from bot.agent.gateway.server import GatewayServer  # litellm: seconds to import

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    _watch_stdin(loop, stop)
    redis = redis_for(settings)
    gateway = GatewayServer(settings, redis, socket_path=socket_path, sockets=(unix, tcp, tcp_url))
    await gateway.start()
    try:
        await gateway.ready()
        _say(warm=True)
        served = asyncio.ensure_future(gateway.served())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({served, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
    finally:
        await gateway.stop()
        await redis.aclose()
        lock.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bot.agent.gateway")
    parser.add_argument("--socket", required=True, type=Path)
    args = parser.parse_args()
    try:
        fields = json.loads(sys.stdin.readline())
        settings = Settings(_env_file=None, **fields)
    except Exception as exc:
        _say(error=f"the LLM gateway could not read its settings: {type(exc).__name__}")
        raise SystemExit(2) from None
    logs.configure(settings.log_level)
    try:
        asyncio.run(serve(settings, args.socket))
    except Exception as exc:
        _say(error=str(exc) or type(exc).__name__)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
