"""What a run holds of the gateway, and how it gets it: a credential minted in Redis for the
run's life, whichever process serves the gateway. Imports no provider code (no litellm)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from redis.asyncio import Redis

from bot.agent.gateway.credentials import Credentials, Usage
from bot.config import Settings

log = logging.getLogger(__name__)

PROXY_PREFIX = "litellm_proxy/"  # the agent-server's litellm: an OpenAI-compatible proxy
USAGE_SECONDS = 24 * 3600  # a run's usage stays readable this long after its last call
SOCKET_NAME = "gateway.sock"  # in the gateway's own directory, which a sandbox sees whole


@dataclass(frozen=True, slots=True)
class LLMAccess:
    """All the agent-server learns of the LLM: where the gateway is, the run's credential, and
    the model name the gateway maps to the real one. Never the provider key."""

    base_url: str
    api_key: str
    model: str


class Gateway(Protocol):
    """A served gateway as runs use it: its addresses, a credential per run, what a run spent."""

    socket_path: Path

    @property
    def url(self) -> str: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def access(
        self, run_id: str, *, base_url: str | None = None
    ) -> contextlib.AbstractAsyncContextManager[LLMAccess]: ...

    async def usage(self, run_id: str) -> Usage: ...


class Grants:
    """Mint and revoke a run's credential against a gateway that is ready to serve it."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self._settings = settings
        self.credentials = Credentials(redis, usage_seconds=USAGE_SECONDS)

    @property
    def url(self) -> str:
        raise NotImplementedError

    async def ready(self) -> None:
        """Until the gateway can serve a call (its provider code loaded)."""

    @contextlib.asynccontextmanager
    async def access(self, run_id: str, *, base_url: str | None = None) -> AsyncIterator[LLMAccess]:
        """A credential for `run_id`, valid while the block runs (and never past the job's
        longest life, should the worker die): revoked on the way out, whatever happened."""
        settings = self._settings
        await self.ready()
        token = await self.credentials.mint(
            run_id, settings.max_cost_per_run, ttl_seconds=settings.job_timeout_seconds
        )
        try:
            yield LLMAccess(
                base_url=(base_url or self.url).rstrip("/"),
                api_key=token,
                model=PROXY_PREFIX + settings.llm_model,
            )
        finally:
            try:
                await asyncio.shield(self.credentials.revoke(token))
            except Exception as exc:  # Redis away: the credential's expiry revokes it
                log.warning("could not revoke the run's llm credential: %s", type(exc).__name__)

    async def usage(self, run_id: str) -> Usage:
        return await self.credentials.usage(run_id)
