"""The LLM gateway: the only holder of the provider key; runs reach the LLM through it with a
credential of their own, valid while the run lives and capped at its cost budget. Workers run it
as a process of its own (`process`); nothing imported here loads the provider client."""

from bot.agent.gateway.access import Gateway, LLMAccess
from bot.agent.gateway.credentials import Usage
from bot.agent.gateway.process import GatewayProcess

__all__ = ["Gateway", "GatewayProcess", "LLMAccess", "Usage"]
