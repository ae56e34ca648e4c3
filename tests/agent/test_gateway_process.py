"""The gateway as its own process, as a worker runs it: the worker never loads the provider
client, the process holds no secret but the key it was handed on stdin, it is started again if
it dies, it dies with its worker however the worker died, and each worker's socket is its own."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from bot.agent.gateway import GatewayProcess, LLMAccess
from bot.agent.gateway.process import LOCK_NAME, gateway_settings, sweep
from bot.config import Settings
from tests.conftest import BOT_SECRETS
from tests.fakes import llm as steps
from tests.fakes.llm import ScriptedLLM

PROMPT = [{"role": "user", "content": "Hello [[gwp]]"}]


async def _via_socket(gateway: GatewayProcess, access: LLMAccess) -> httpx.Response:
    transport = httpx.AsyncHTTPTransport(uds=str(gateway.socket_path))
    async with httpx.AsyncClient(transport=transport, timeout=30) as http:
        return await http.post(
            "http://gateway/v1/chat/completions",
            json={"model": "m", "messages": PROMPT},
            headers={"Authorization": f"Bearer {access.api_key}"},
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


async def _gone(pid: int) -> bool:
    for _ in range(200):
        if not _alive(pid):
            return True
        await asyncio.sleep(0.1)
    return False


def _environ_and_argv(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes() + Path(f"/proc/{pid}/cmdline").read_bytes()


def test_the_worker_loads_no_provider_client() -> None:
    code = "import sys, bot.jobs.worker; print(sorted(m for m in sys.modules if 'litellm' in m))"
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == "[]"


def test_the_process_is_handed_only_the_llm_and_redis_settings(agent_settings: Settings) -> None:
    handed = gateway_settings(agent_settings)
    assert handed["llm_api_key"] == BOT_SECRETS["LLM_API_KEY"]
    assert handed["llm_base_url"] == agent_settings.llm_base_url
    assert not {name for name in handed if name.startswith(("github_", "bot_api"))}
    # What it is handed rebuilds the same settings, secrets included.
    rebuilt = Settings(_env_file=None, **handed)
    for name in handed:
        assert getattr(rebuilt, name) == getattr(agent_settings, name), name


async def test_a_dead_gateway_process_is_started_again_on_the_same_socket(
    agent_settings: Settings, redis: Redis, llm: ScriptedLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in BOT_SECRETS.items():  # the worker's environment holds every secret
        monkeypatch.setenv(name, value)
    llm.script(steps.text("before"), steps.text("after"), match="[[gwp]]")
    gateway = GatewayProcess(agent_settings, redis)
    await gateway.start()
    try:
        async with gateway.access("run-a") as access:
            first = await _via_socket(gateway, access)
            pid = gateway.pid
            assert pid is not None
            seen = _environ_and_argv(pid)
            for secret in BOT_SECRETS.values():  # not even the LLM key: it came on stdin
                assert secret.encode() not in seen
            os.kill(pid, signal.SIGKILL)
            assert await _gone(pid)
            for _ in range(600):  # the supervisor sees it die, and starts another
                if gateway.pid != pid:
                    break
                await asyncio.sleep(0.05)
            assert gateway.pid not in (None, pid)
            await gateway.ready()  # a run's calls wait for the new process to be warm
            second = await _via_socket(gateway, access)  # the run's credential still holds
    finally:
        await gateway.stop()
    assert first.json()["choices"][0]["message"]["content"] == "before"
    assert second.json()["choices"][0]["message"]["content"] == "after"
    assert not gateway.socket_path.parent.exists()


async def test_one_workers_gateway_stopping_leaves_anothers_serving(
    agent_settings: Settings, redis: Redis, llm: ScriptedLLM
) -> None:
    llm.script(steps.text("still here"), match="[[gwp]]")
    first, second = GatewayProcess(agent_settings, redis), GatewayProcess(agent_settings, redis)
    await first.start()
    await second.start()
    try:
        assert first.socket_path.parent != second.socket_path.parent
        await first.stop()
        async with second.access("run-b") as access:
            response = await _via_socket(second, access)
    finally:
        await second.stop()
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "still here"


WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from redis.asyncio import Redis
    from bot.agent.gateway import GatewayProcess
    from bot.config import Settings

    async def main():
        settings = Settings(_env_file=None, **json.loads(sys.argv[1]))
        gateway = GatewayProcess(settings, Redis.from_url(settings.redis_url))
        await gateway.start()
        print(gateway.pid, gateway.socket_path, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def test_the_gateway_process_dies_with_its_worker_and_its_directory_is_swept(
    agent_settings: Settings,
) -> None:
    fields = gateway_settings(agent_settings)
    with subprocess.Popen(
        [sys.executable, "-c", WORKER, json.dumps(fields)], stdout=subprocess.PIPE, text=True
    ) as worker:
        try:
            assert worker.stdout is not None
            pid_text, socket_text = worker.stdout.readline().split()
            pid, socket_path = int(pid_text), Path(socket_text)
            assert _alive(pid)
            worker.kill()  # SIGKILL: the worker cannot clean up
            worker.wait()
            for _ in range(200):
                if not _alive(pid):
                    break
                time.sleep(0.1)
            assert not _alive(pid), "the gateway process outlived its worker"
        finally:
            if worker.poll() is None:
                worker.kill()
    assert (socket_path.parent / LOCK_NAME).exists()  # left behind by the killed worker
    sweep(socket_path.parent.parent)  # the next worker's start
    assert not socket_path.parent.exists()
