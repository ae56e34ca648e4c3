"""Workspaces: where an agent runs. One interface, three providers (local, server, runtime)."""

from bot.agent.workspace.base import Workspace, WorkspaceProvider
from bot.agent.workspace.factory import make_provider
from bot.errors import WorkspaceError

__all__ = ["Workspace", "WorkspaceError", "WorkspaceProvider", "make_provider"]
