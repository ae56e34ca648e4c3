"""`runtime` workspaces: a sandbox per run from a runtime API, stopped when the run ends.

Protocol, as in the OpenHands SDK's remote workspace: `POST {api}/start` with the session id,
image, working dir and environment answers the runtime's URL and session key; we wait until its
agent-server answers `/health`, and `POST {api}/stop/{id}` on exit, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from bot.agent.server_client import AgentServerClient
from bot.agent.workspace.base import Workspace
from bot.agent.workspace.local import make_run_dir
from bot.errors import AgentServerError, WorkspaceError

log = logging.getLogger(__name__)


class RuntimeProvider:
    """Starts one sandbox per run through the runtime API."""

    kind = "runtime"
    can_keep = False  # the sandbox is stopped after every run

    def __init__(
        self,
        api_url: str,
        api_key: str | None,
        *,
        image: str,
        working_dir: str = "/workspace",
        start_timeout: float = 120.0,
        environment: dict[str, str] | None = None,
    ) -> None:
        self._api = api_url.rstrip("/")
        self._headers = {"X-API-Key": api_key} if api_key else {}
        self._image = image
        self._working_dir = working_dir.rstrip("/")
        self._start_timeout = start_timeout
        self._environment = environment or {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def _post(self, http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> Any:
        try:
            response = await http.post(f"{self._api}{path}", json=body, headers=self._headers)
        except httpx.HTTPError as exc:
            raise WorkspaceError(f"the runtime API at {self._api} is unreachable: {exc}") from exc
        if response.status_code >= 400:
            raise WorkspaceError(
                f"the runtime API answered {response.status_code} to {path}: {response.text[:200]}"
            )
        return response.json() if response.content else {}

    @asynccontextmanager
    async def open(self, run_id: str, *, keep_seconds: float = 0) -> AsyncIterator[Workspace]:
        async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
            started = await self._post(
                http,
                "/start",
                {
                    "session_id": run_id,
                    "image": self._image,
                    "working_dir": self._working_dir,
                    "environment": self._environment,
                },
            )
            runtime_id = str(started.get("runtime_id") or started.get("session_id") or run_id)
            try:
                url = started.get("runtime_url") or started.get("url")
                if not url:
                    raise WorkspaceError("the runtime API did not say where the runtime is")
                client = AgentServerClient(str(url), started.get("session_api_key"))
                try:
                    await self._wait_ready(client)
                    root = f"{self._working_dir}/{run_id}"
                    await make_run_dir(client, root, "the runtime's agent-server")
                    yield Workspace(client=client, root=root, kind=self.kind)
                except AgentServerError as exc:
                    raise WorkspaceError(f"the runtime's agent-server failed: {exc}") from exc
                finally:
                    await client.aclose()
            finally:
                with contextlib.suppress(WorkspaceError):
                    await self._post(http, f"/stop/{runtime_id}", {})
                log.info("stopped runtime %s", runtime_id, extra={"run_id": run_id})

    async def _wait_ready(self, client: AgentServerClient) -> None:
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if await client.healthy():
                return
            await asyncio.sleep(0.5)
        raise WorkspaceError(f"the runtime did not become ready within {self._start_timeout:.0f}s")
