"""The workspace interface: an agent-server to talk to and a directory of the run's own."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from bot.agent.server_client import AgentServerClient


@dataclass(frozen=True, slots=True)
class Workspace:
    """A live agent-server and the absolute directory this run owns on it."""

    client: AgentServerClient
    root: str
    kind: str
    # Where this workspace's agent-server reaches the bot's LLM gateway, when the workspace
    # provides its own path to it (a local sandbox relays a unix socket); None: the gateway's
    # configured URL.
    llm_gateway_url: str | None = None

    @property
    def repo_dir(self) -> str:
        return f"{self.root}/repo"


class WorkspaceProvider(Protocol):
    """Starts (or attaches to) workspaces; `open` always cleans up what it started."""

    kind: str
    can_keep: bool  # whether a workspace can outlive its run, for a follow-up to continue in

    async def start(self) -> None:
        """Get ready before the first run (e.g. start a shared server)."""

    async def close(self) -> None:
        """Release everything the provider holds."""

    def open(
        self, run_id: str, *, keep_seconds: float = 0
    ) -> AbstractAsyncContextManager[Workspace]:
        """A workspace for one run, released on exit whatever happened (kept, when asked and
        possible, for `keep_seconds` after its last use)."""
        ...
