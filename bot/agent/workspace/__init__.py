"""Workspaces: where an agent runs. One interface, three providers (local, server, runtime)."""

from bot.agent.workspace.base import Workspace, WorkspaceError, WorkspaceProvider
from bot.agent.workspace.factory import make_provider

__all__ = ["Workspace", "WorkspaceError", "WorkspaceProvider", "make_provider"]
