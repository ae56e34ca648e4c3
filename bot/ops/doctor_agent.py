"""`doctor`'s checks of where the agent runs: the workspace answers, what a `server` workspace
shares between runs (one trust domain), and the LLM answers."""

from __future__ import annotations

import importlib.util
import os
import time

import httpx

from bot.agent.server_client import AgentServerClient
from bot.agent.workspace.factory import make_provider
from bot.config import Settings
from bot.errors import WorkspaceError
from bot.ops.checks import Check, _redact

AGENT_SERVER_DOWN_FIX = "start the agent-server there, or fix AGENT_SERVER_URL"
SHARED_SERVER = (
    "WORKSPACE_KIND=server serves one trust domain: every run, whatever its repository or "
    "installation, works as the same user on the same agent-server, which can read every "
    "other run's checkout, conversations and the server's session key"
)
SHARED_SERVER_FIX = (
    "install the App only where everyone may see all these repositories' code, or use "
    "WORKSPACE_KIND=runtime (a sandbox per run)"
)


def check_trust_domain(settings: Settings) -> Check | None:
    """A warning row for a `server` workspace, which cannot keep runs apart; None otherwise."""
    if settings.workspace_kind != "server":
        return None
    return Check("trust domain", "warn", SHARED_SERVER, SHARED_SERVER_FIX)


async def check_workspace(settings: Settings, *, full: bool = False) -> Check:
    name = f"workspace ({settings.workspace_kind})"
    try:
        provider = make_provider(settings)
    except ValueError as exc:
        return Check(name, "FAIL", str(exc), f"set it, or WORKSPACE_KIND={settings.workspace_kind}")
    if settings.workspace_kind == "server":
        assert settings.agent_server_url is not None
        key = settings.agent_server_api_key
        async with AgentServerClient(
            settings.agent_server_url, key.get_secret_value() if key else None
        ) as client:
            if await client.healthy():
                return Check(name, "ok", f"{settings.agent_server_url}/health answers")
        return Check(
            name,
            "FAIL",
            f"{settings.agent_server_url}/health does not answer 200",
            AGENT_SERVER_DOWN_FIX,
        )
    if settings.workspace_kind == "runtime":
        return await _check_runtime_api(settings, name)
    if importlib.util.find_spec("openhands.agent_server") is None:
        return Check(
            name,
            "FAIL",
            "the openhands-agent-server package is not installed",
            "reinstall the bot (`uv sync`), or use WORKSPACE_KIND=server or runtime",
        )
    if not full:
        return Check(name, "ok", "agent-server installed (`doctor --full` starts it once)")
    started = time.monotonic()
    try:
        async with provider.open("doctor"):  # a sandbox (or the shared server), started once
            pass
    except WorkspaceError as exc:
        return Check(name, "FAIL", str(exc), "read the agent-server log named above")
    finally:
        await provider.close()
    return Check(name, "ok", f"agent-server started in {time.monotonic() - started:.0f} s")


async def _check_runtime_api(settings: Settings, name: str) -> Check:
    assert settings.runtime_api_url is not None
    key = settings.runtime_api_key
    headers = {"X-API-Key": key.get_secret_value()} if key else {}
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        try:
            response = await http.get(settings.runtime_api_url, headers=headers)
        except httpx.HTTPError as exc:
            return Check(
                name,
                "FAIL",
                f"{settings.runtime_api_url} unreachable ({type(exc).__name__})",
                "fix RUNTIME_API_URL, or start the runtime API",
            )
    if response.status_code in {401, 403}:
        return Check(name, "FAIL", f"answered {response.status_code}", "fix RUNTIME_API_KEY")
    if response.status_code >= 500:
        return Check(name, "FAIL", f"answered {response.status_code}", "the runtime API is down")
    return Check(name, "ok", f"{settings.runtime_api_url} answers ({response.status_code})")


async def check_llm(settings: Settings) -> Check:
    """One completion of one token, as the agent would ask for it."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch on import
    import litellm

    litellm.suppress_debug_info = True
    try:
        return await _one_token(settings)
    finally:  # litellm caches its HTTP clients per event loop; this loop ends with the check
        from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

        await close_litellm_async_clients()  # type: ignore[no-untyped-call]
        litellm.in_memory_llm_clients_cache.flush_cache()  # type: ignore[no-untyped-call]


async def _one_token(settings: Settings) -> Check:
    import litellm
    from litellm import exceptions

    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    name = f"LLM ({settings.llm_model})"
    try:
        await litellm.acompletion(
            model=settings.llm_model,
            messages=[{"role": "user", "content": "Say OK."}],
            max_tokens=1,
            api_key=key,
            base_url=settings.llm_base_url,
            timeout=min(settings.llm_timeout_seconds, 60.0),
            num_retries=0,
            max_retries=0,
        )
    except exceptions.AuthenticationError as exc:
        return Check(name, "FAIL", _redact(str(exc), key), "set a valid LLM_API_KEY")
    except exceptions.NotFoundError as exc:
        return Check(name, "FAIL", _redact(str(exc), key), "fix LLM_MODEL (litellm's naming)")
    except (exceptions.APIConnectionError, exceptions.Timeout) as exc:
        return Check(
            name,
            "FAIL",
            _redact(str(exc), key),
            "check LLM_BASE_URL and the network (or the provider's status)",
        )
    except Exception as exc:  # litellm maps every provider error; show whichever it is
        return Check(
            name,
            "FAIL",
            f"{type(exc).__name__}: {_redact(str(exc), key)}",
            "check LLM_MODEL, LLM_API_KEY and LLM_BASE_URL",
        )
    return Check(name, "ok", "answered a one-token completion")
