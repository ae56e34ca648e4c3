"""`openhands-bot`: run the web app, the worker, or both in one process (the embedded default)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import uvicorn
from arq.worker import Worker
from pydantic import ValidationError

from bot import logs
from bot.config import MissingSetting, Settings
from bot.web import create_app
from bot.worker import worker_options

log = logging.getLogger("bot.cli")


def _uvicorn(settings: Settings, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        http="httptools",
        loop="uvloop",
    )
    return uvicorn.Server(config)


async def _serve(settings: Settings, host: str, port: int) -> None:
    """Web app and worker side by side in one event loop; either ending stops both."""
    server = _uvicorn(settings, host, port)
    worker = Worker(**worker_options(settings), handle_signals=False)
    web_task = asyncio.create_task(server.serve(), name="web")
    worker_task = asyncio.create_task(worker.async_run(), name="worker")
    try:
        await asyncio.wait({web_task, worker_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        await worker.close()
        worker_task.cancel()
        await asyncio.gather(web_task, worker_task, return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="openhands-bot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("serve", "web app and worker in one process (the embedded default)"),
        ("web", "only the webhook receiver"),
        ("worker", "only the job worker"),
    ):
        sub = commands.add_parser(name, help=help_text)
        if name != "worker":
            sub.add_argument("--host", default="127.0.0.1")
            sub.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)

    try:
        settings = Settings()
        logs.configure(settings.log_level)
        if args.command in ("serve", "web"):
            settings.require_web()
        else:
            settings.require_app()
    except (MissingSetting, ValidationError) as exc:
        print(f"openhands-bot: {exc}", file=sys.stderr)  # noqa: T201
        return 2

    if args.command == "web":
        _uvicorn(settings, args.host, args.port).run()
    elif args.command == "worker":
        worker = Worker(**worker_options(settings))
        worker.run()
    else:
        asyncio.run(_serve(settings, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
