"""A pooled sandbox's throw-away first conversation runs to its end and leaves nothing behind."""

from __future__ import annotations

import asyncio

import httpx

from bot.agent.server_client import API_KEY_HEADER
from bot.agent.workspace.local import LocalProvider
from bot.agent.workspace.warm import WARM_DIR, first_conversation


async def test_the_warm_up_conversation_ends_and_is_gone(agent_server: LocalProvider) -> None:
    root = agent_server.workspaces_dir  # the server's own: its user may write there
    headers = {API_KEY_HEADER: agent_server.api_key}

    def warm_up() -> tuple[str | None, list[str]]:
        with httpx.Client(timeout=10) as http:
            before = _ids(http, agent_server.url, headers)
            status = first_conversation(http, agent_server.url, agent_server.api_key, str(root))
            left = [i for i in _ids(http, agent_server.url, headers) if i not in before]
        return status, left

    status, left = await asyncio.to_thread(warm_up)

    assert status == "error"  # it ran: its one LLM call failed, as meant
    assert left == []  # deleted
    assert not (root / WARM_DIR).exists()


def _ids(http: httpx.Client, url: str, headers: dict[str, str]) -> list[str]:
    found = http.get(f"{url}/api/conversations/search", params={"limit": 100}, headers=headers)
    found.raise_for_status()
    return [item["id"] for item in found.json().get("items", [])]
