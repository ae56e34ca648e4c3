"""A fresh agent-server's first conversation and first upload are slow (its agent, tools and LLM
client load then): a pooled sandbox has both, thrown away, before a run takes it."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid

import httpx

from bot.agent.server_client import API_KEY_HEADER

log = logging.getLogger(__name__)

WARM_DIR = "warm-up"  # its working directory, under the sandbox's root; removed after
# Nothing listens there: the one LLM call fails at once, after the client has loaded. No run's
# credential, and no key of the bot's, is ever in it.
NOWHERE = "http://127.0.0.1:9/v1"
DONE = {"finished", "error", "stuck", "paused"}


def _body(conversation_id: str, working_dir: str) -> dict[str, object]:
    llm = {
        "usage_id": "agent",
        "model": "openai/warm-up",
        "base_url": NOWHERE,
        "api_key": "none",
        "num_retries": 0,
    }
    return {
        "conversation_id": conversation_id,
        "agent_settings": {
            "llm": llm,
            "agent_context": {"load_project_skills": False, "load_public_skills": False},
        },
        "workspace": {"kind": "LocalWorkspace", "working_dir": working_dir},
        "initial_message": {"role": "user", "content": [{"type": "text", "text": "warm-up"}]},
        "max_iterations": 1,
        "autotitle": False,
        "confirmation_policy": {"kind": "NeverConfirm"},
    }


def first_conversation(
    http: httpx.Client, url: str, api_key: str, root: str, *, limit: float = 60.0
) -> str | None:
    """Run one conversation to its (failed) end, upload a file beside it, and delete both with
    their directory; the status it ended in. Best effort: a warm-up that goes wrong leaves the
    sandbox only colder."""
    headers = {API_KEY_HEADER: api_key}
    conversation_id = str(uuid.uuid4())
    working_dir = f"{root}/{WARM_DIR}"
    status: str | None = None
    try:
        http.post(
            f"{url}/api/conversations",
            json=_body(conversation_id, working_dir),
            headers=headers,
            timeout=limit,
        ).raise_for_status()
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            info = http.get(f"{url}/api/conversations/{conversation_id}", headers=headers)
            status = info.json().get("execution_status")
            if status in DONE:
                break
            time.sleep(0.1)
        http.post(  # a run's first upload is its clone credentials
            f"{url}/api/file/upload",
            params={"path": f"{working_dir}/upload"},
            files={"file": ("upload", b"warm", "application/octet-stream")},
            headers=headers,
            timeout=limit,
        ).raise_for_status()
    except (httpx.HTTPError, ValueError) as exc:
        log.info("a sandbox's warm-up conversation failed: %s", str(exc)[:300])
    finally:
        with contextlib.suppress(httpx.HTTPError):
            http.delete(f"{url}/api/conversations/{conversation_id}", headers=headers, timeout=30)
            http.post(
                f"{url}/api/bash/execute_bash_command",
                json={"command": f"rm -rf {working_dir}", "timeout": 60},
                headers=headers,
                timeout=90,
            )
    return status
