"""`local` workspaces, isolated: every run gets an agent-server of its own in a fresh sandbox
(bot/agent/workspace/sandbox.py) taken from a warm pool, destroyed when the run ends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bot.agent.server_client import AgentServerClient
from bot.agent.workspace import netns, sandbox_host
from bot.agent.workspace import sandbox as sandboxes
from bot.agent.workspace.base import Workspace
from bot.agent.workspace.kept import KeptStore
from bot.agent.workspace.local import protect_secret_files
from bot.agent.workspace.netns import NetworkPolicy
from bot.agent.workspace.pool import Pool
from bot.agent.workspace.sandbox import Sandbox, SandboxConfig
from bot.errors import WorkspaceError

log = logging.getLogger(__name__)


class SandboxProvider:
    """A sandbox per run, `pool_size` of them started ahead."""

    kind = "local"
    can_keep = True
    isolates_network = True  # nothing on the host's loopback (Redis included) is reachable

    def __init__(
        self,
        state_dir: Path,
        *,
        pool_size: int = 2,
        start_timeout: float = 240.0,
        allowed_networks: list[str] | None = None,
        gateway_dir: Path | None = None,
        secret_files: list[Path] | None = None,
    ) -> None:
        base = state_dir.resolve()
        self.config = SandboxConfig(
            base=base / "sandboxes",
            policy=NetworkPolicy.from_settings(allowed_networks or []),
            gateway_dir=gateway_dir,
            start_timeout=start_timeout,
        )
        # Loaded into each sandbox again when a run takes it: the policy of the moment.
        self.policy = self.config.policy
        self.kept = KeptStore(base / "kept-workspaces")
        self._secret_files = secret_files or []
        self.pool = Pool(self._make, pool_size, wait_timeout=start_timeout + 30)
        self._prepared = False

    def _make(self) -> Sandbox:
        return Sandbox(self.config)

    def _prepare(self) -> None:
        if self._prepared:
            return
        why = sandboxes.available()
        if why is not None:
            raise WorkspaceError(f"cannot sandbox local runs: {why}")
        self.config.base.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.config.base.chmod(0o700)
        protect_secret_files(self._secret_files)
        sandbox_host.reap(self.config.base)
        sandbox_host.compile_environment(self.config.base)
        self._prepared = True

    async def start(self) -> None:
        """Check the host, then fill the pool (in the background)."""
        await asyncio.to_thread(self._prepare)
        self.pool.fill()

    async def close(self) -> None:
        await asyncio.to_thread(self.pool.close)

    def _finish(self, sandbox: Sandbox, workspace_id: str, keep_seconds: float) -> None:
        """Kill the sandbox first (nothing of the agent's may still run), then keep its checkout
        when asked, then delete it."""
        sandbox.stop()
        try:
            if keep_seconds > 0:
                self.kept.put(workspace_id, sandbox.work)
                self.kept.sweep(keep_seconds)
        finally:
            sandbox.remove()

    def _ready_for(self, sandbox: Sandbox, run_id: str) -> None:
        """The policy of the moment, the thread's kept checkout, and the run's directory (made
        here, as the sandbox's uid, rather than by a command in it: one round trip less)."""
        assert sandbox.child_pid is not None
        netns.apply_rules(sandbox.child_pid, self.policy)
        self.kept.take(run_id, sandbox.work, sandbox.uid)
        repo = sandbox.work / "repo"
        try:
            repo.mkdir(mode=0o755)  # never follows a link: an existing entry is left as it is
            os.lchown(repo, sandbox.uid, sandbox.uid)
        except FileExistsError:
            pass
        except OSError as exc:
            raise WorkspaceError(f"could not create the run directory: {exc}") from exc

    @asynccontextmanager
    async def open(self, run_id: str, *, keep_seconds: float = 0) -> AsyncIterator[Workspace]:
        """A fresh sandbox with, for a thread's follow-up, its kept checkout moved in."""
        await asyncio.to_thread(self._prepare)
        sandbox = await asyncio.to_thread(self.pool.take)
        try:
            await asyncio.to_thread(self._ready_for, sandbox, run_id)
            async with AgentServerClient(sandbox.url, sandbox.api_key) as client:
                yield Workspace(
                    client=client,
                    root=sandboxes.ROOT,
                    kind=self.kind,
                    llm_gateway_url=sandbox.llm_gateway_url,
                )
        finally:
            with contextlib.suppress(OSError):
                await asyncio.shield(asyncio.to_thread(self._finish, sandbox, run_id, keep_seconds))
