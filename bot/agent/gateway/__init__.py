"""The LLM gateway: the only holder of the provider key; runs reach the LLM through it with a
credential of their own, valid while the run lives and capped at its cost budget."""

from bot.agent.gateway.credentials import Usage
from bot.agent.gateway.server import Gateway, LLMAccess

__all__ = ["Gateway", "LLMAccess", "Usage"]
