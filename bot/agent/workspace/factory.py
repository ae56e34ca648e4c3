"""Pick the workspace provider named in settings."""

from __future__ import annotations

from pathlib import Path

from bot.agent.workspace.base import WorkspaceProvider
from bot.agent.workspace.local import LocalProvider
from bot.agent.workspace.runtime import RuntimeProvider
from bot.agent.workspace.sandboxed import SandboxProvider
from bot.agent.workspace.server import ServerProvider
from bot.config import Settings


def make_provider(settings: Settings, *, gateway_dir: Path | None = None) -> WorkspaceProvider:
    """The provider WORKSPACE_KIND names; a local sandbox sees `gateway_dir` (the LLM gateway's
    socket directory, STATE_DIR/llm-gateway by default) and nothing else of the host's state."""
    if settings.workspace_kind == "server":
        if not settings.agent_server_url:
            raise ValueError("WORKSPACE_KIND=server needs AGENT_SERVER_URL")
        key = settings.agent_server_api_key
        return ServerProvider(
            settings.agent_server_url,
            key.get_secret_value() if key else None,
            settings.agent_server_workspace_root,
        )
    if settings.workspace_kind == "runtime":
        if not settings.runtime_api_url:
            raise ValueError("WORKSPACE_KIND=runtime needs RUNTIME_API_URL")
        key = settings.runtime_api_key
        return RuntimeProvider(
            settings.runtime_api_url,
            key.get_secret_value() if key else None,
            image=settings.runtime_image,
            working_dir=settings.runtime_working_dir,
            start_timeout=settings.workspace_start_timeout_seconds,
        )
    secret_files = [Path(".env").resolve()]
    if settings.github_private_key_path is not None:
        secret_files.append(settings.github_private_key_path.resolve())
    if settings.local_sandbox:
        return SandboxProvider(
            settings.state_dir,
            pool_size=settings.local_sandbox_pool,
            start_timeout=settings.workspace_start_timeout_seconds,
            allowed_networks=settings.sandbox_allowed_networks,
            gateway_dir=gateway_dir or settings.state_dir.resolve() / "llm-gateway",
            secret_files=secret_files,
        )
    return LocalProvider(
        settings.state_dir,
        agent_user=settings.agent_user,
        start_timeout=settings.workspace_start_timeout_seconds,
        secret_files=secret_files,
    )
