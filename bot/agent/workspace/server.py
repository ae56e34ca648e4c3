"""`server` workspaces: an agent-server someone else runs, reached by URL and session key."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.agent.server_client import AgentServerClient
from bot.agent.workspace.base import Workspace
from bot.agent.workspace.local import make_run_dir, release_command
from bot.errors import AgentServerError, WorkspaceError


class ServerProvider:
    """Every run gets its own directory under `workspace_root` on the shared server."""

    kind = "server"
    can_keep = True

    def __init__(self, url: str, api_key: str | None, workspace_root: str) -> None:
        self._url = url
        self._api_key = api_key
        self._root = workspace_root.rstrip("/")

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @asynccontextmanager
    async def open(self, run_id: str, *, keep_seconds: float = 0) -> AsyncIterator[Workspace]:
        client = AgentServerClient(self._url, self._api_key)
        root = f"{self._root}/{run_id}"
        try:
            if not await client.healthy():
                raise WorkspaceError(f"the agent-server at {self._url} is not answering /health")
            await make_run_dir(client, root, f"the agent-server at {self._url}")
            yield Workspace(client=client, root=root, kind=self.kind)
        finally:
            with contextlib.suppress(AgentServerError):
                await client.bash(
                    release_command(root, self._root, keep_seconds, False), limit_seconds=120
                )
            await client.aclose()
