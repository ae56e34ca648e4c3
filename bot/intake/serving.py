"""How the web app is served over HTTP: one uvicorn config for the CLI and the intake benchmark,
so the benchmark measures exactly what runs (and need not import the CLI)."""

from __future__ import annotations

from typing import Any

import uvicorn


def uvicorn_config(app: Any, host: str, port: int, **extra: Any) -> uvicorn.Config:
    """How the bot serves HTTP (the intake benchmark serves the same way)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        http="httptools",
        loop="uvloop",
        # Nothing reads client addresses, and the Server header only tells attackers what runs.
        proxy_headers=False,
        server_header=False,
        **extra,
    )
