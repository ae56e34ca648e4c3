"""The completion callback: exactly the five fields the openhands-automation service accepts,
retried on network errors and 5xx, never on 4xx."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from bot.config import Settings
from bot.errors import CallbackRejected, CallbackUnavailable
from bot.runs.store import RunRecord, RunStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    api_key: str | None
    run_id: str


def target(settings: Settings, record: RunRecord, key: str | None) -> Target | None:
    """Where this run's callback goes: the run's own request, else the environment."""
    if record.callback_url:
        return Target(record.callback_url, key, record.callback_run_id or record.run_id)
    if settings.automation_callback_url:
        env_key = settings.automation_callback_api_key
        return Target(
            settings.automation_callback_url,
            env_key.get_secret_value() if env_key else None,
            settings.automation_run_id or record.run_id,
        )
    return None


def payload(record: RunRecord, run_id: str) -> dict[str, Any]:
    """The body: nothing beyond these five fields (the receiver answers 422 to unknown ones).
    A cancelled run reports FAILED, with the reason."""
    error: dict[str, str] | str | None = None
    if record.status != RunStatus.COMPLETED:
        if record.error is not None:
            error = {"code": record.error.code, "detail": record.error.detail}
        else:
            error = "cancelled" if record.status == RunStatus.CANCELLED else "failed"
    return {
        "status": "COMPLETED" if record.status == RunStatus.COMPLETED else "FAILED",
        "run_id": run_id,
        "conversation_id": record.conversation_id,
        "cost": round(record.cost, 6),
        "error": error,
    }


async def send(client: httpx.AsyncClient, to: Target, body: dict[str, Any]) -> int:
    """POST once; return the status, or raise by what should happen next."""
    headers = {"Content-Type": "application/json"}
    if to.api_key:
        headers["Authorization"] = f"Bearer {to.api_key}"
    try:
        response = await client.post(to.url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise CallbackUnavailable(f"{type(exc).__name__} reaching the callback URL") from exc
    except (httpx.InvalidURL, ValueError) as exc:  # a URL or key no request can carry
        raise CallbackRejected(f"the callback request cannot be made: {exc}") from exc
    if response.status_code >= 500:
        raise CallbackUnavailable(f"the callback URL answered {response.status_code}")
    if response.status_code >= 400:
        raise CallbackRejected(f"the callback URL answered {response.status_code}")
    return response.status_code
