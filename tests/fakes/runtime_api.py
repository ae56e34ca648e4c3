"""A small runtime API on loopback that starts a real agent-server process per session."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.agent.workspace.local import stop_process_group
from tests.helpers import free_port
from tests.servers import FakeServer


class FakeRuntimeAPI(FakeServer):
    """`POST /start` spawns an agent-server, `POST /stop/{id}` stops it; both are recorded."""

    def __init__(self, root: Path, api_key: str = "rt-key") -> None:
        self.root = root
        self.api_key = api_key
        self.started: list[dict[str, Any]] = []
        self.stopped: list[str] = []
        self.rejected: list[str] = []
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/start", self._start, methods=["POST"]),
                Route("/stop/{runtime_id}", self._stop, methods=["POST"]),
            ]
        )

    def _authorized(self, request: Request) -> bool:
        if request.headers.get("x-api-key") == self.api_key:
            return True
        self.rejected.append(request.url.path)
        return False

    async def _start(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        body = await request.json()
        runtime_id = f"rt-{secrets.token_hex(4)}"
        port = free_port()
        key = secrets.token_urlsafe(16)
        cwd = self.root / runtime_id
        cwd.mkdir(parents=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(cwd),
            "OH_SESSION_API_KEYS_0": key,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "OH_ENABLE_VSCODE": "false",
            "OH_ENABLE_BROWSER": "false",
            "OH_PRELOAD_TOOLS": "false",
            "GIT_TERMINAL_PROMPT": "0",
        }
        log = open(cwd / "server.log", "wb")  # noqa: ASYNC230 - test helper
        process = subprocess.Popen(  # noqa: ASYNC220 - a fake; returns at once
            [
                sys.executable,
                "-m",
                "openhands.agent_server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        with self._lock:
            self._processes[runtime_id] = process
            self.started.append({"runtime_id": runtime_id, **body})
        return JSONResponse(
            {"runtime_id": runtime_id, "url": f"http://127.0.0.1:{port}", "session_api_key": key}
        )

    async def _stop(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        runtime_id = request.path_params["runtime_id"]
        with self._lock:
            process = self._processes.pop(runtime_id, None)
            self.stopped.append(runtime_id)
        if process is None:
            return JSONResponse({"error": "unknown runtime"}, status_code=404)
        stop_process_group(process)
        return JSONResponse({"status": "stopped"})

    @property
    def running(self) -> list[str]:
        with self._lock:
            return [rid for rid, p in self._processes.items() if p.poll() is None]

    # FakeServer gives `serving()` and `url`.

    def _asgi_app(self) -> Starlette:
        return self.app

    def _serving_stopping(self) -> None:
        """Stop the agent-servers still running when the block ends."""
        with self._lock:
            leftovers = list(self._processes.values())
            self._processes.clear()
        for process in leftovers:
            stop_process_group(process)
