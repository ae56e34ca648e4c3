"""`openhands-bot doctor` against the fake GitHub, the scripted LLM and real Redis."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# Before litellm is imported: else it fetches its model cost map from the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm
from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients
from pydantic import SecretStr

from bot.agent.workspace import sandbox
from bot.config import Settings
from bot.ops import cli, doctor, doctor_agent
from tests.conftest import APP_ID, BOT_SECRETS, WEBHOOK_SECRET
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import ScriptedLLM, error, text
from tests.fakes.runtime_api import FakeRuntimeAPI
from tests.helpers import free_port, rsa_key_pair

# litellm's response types hold a TypedDict with a ReadOnly item; pydantic warns once, when it
# first builds their schema, and under `-W error` litellm turns that into APIConnectionError.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Item 'summary' on TypedDict class 'ChatCompletionReasoningItem' is using the"
    " `ReadOnly` qualifier:UserWarning"
)


@pytest.fixture(autouse=True)
async def _close_litellm_clients() -> AsyncIterator[None]:
    # litellm caches one HTTP client per (key, base URL); each test has its own event loop.
    yield
    await close_litellm_async_clients()  # type: ignore[no-untyped-call]
    litellm.in_memory_llm_clients_cache.flush_cache()  # type: ignore[no-untyped-call]


@pytest.fixture
def closed_port() -> int:
    return free_port()


def _other_key() -> str:
    return rsa_key_pair()[0]


def _rows(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {check.name.split(" (")[0]: check for check in checks}


async def test_a_working_configuration_passes_every_check(
    agent_settings: Settings, llm: ScriptedLLM, fake_github: FakeGitHub
) -> None:
    llm.script(text("OK"))
    fake_github.add_installation(7, "octo", ["octo/app"])
    configured = agent_settings.model_copy(update={"github_app_slug": fake_github.app_slug})

    checks = await doctor.run_checks(configured)

    rows = _rows(checks)
    assert {name: row.status for name, row in rows.items()} == {
        "private key": "ok",
        "GitHub App JWT": "ok",
        "App permissions": "ok",
        "Redis": "ok",
        "workspace": "ok",
        "sandbox": "ok" if sandbox.available() is None else "FAIL",
        "LLM": "ok",
    }
    assert rows["GitHub App JWT"].detail == f"accepted: App fake-bot (id {APP_ID})"
    assert rows["App permissions"].detail == "as needed; 1 installation(s)"
    assert fake_github.jwt_claims[0]["iss"] == str(APP_ID)
    (call,) = llm.completions
    assert call.json["max_tokens"] == 1
    assert not doctor.failed(checks)
    assert doctor.render(checks).endswith("all checks passed")


async def test_a_slug_that_is_not_the_apps_fails(
    settings: Settings, fake_github: FakeGitHub
) -> None:
    wrong = settings.model_copy(update={"github_app_slug": "someone-else"})

    _, row = await doctor.check_app(wrong)

    assert (row.status, row.fix) == ("FAIL", "set GITHUB_APP_SLUG=fake-bot")


async def test_each_failure_says_what_to_fix(
    agent_settings: Settings, llm: ScriptedLLM, fake_github: FakeGitHub, closed_port: int
) -> None:
    llm.script(error(401, "Incorrect API key provided: sk-llm-never-show-9e8d7c"))
    broken = agent_settings.model_copy(
        update={
            "github_private_key": SecretStr(_other_key()),  # not the App's key
            "redis_url": f"redis://:hunter2@127.0.0.1:{closed_port}/0",
            "workspace_kind": "server",
            "agent_server_url": f"http://127.0.0.1:{closed_port}",
        }
    )

    checks = await doctor.run_checks(broken)

    rows = _rows(checks)
    assert {name: row.status for name, row in rows.items()} == {
        "private key": "ok",
        "GitHub App JWT": "FAIL",
        "Redis": "FAIL",
        "sandbox": "skip",  # WORKSPACE_KIND=server runs no agent here
        "workspace": "FAIL",
        "trust domain": "warn",  # a `server` workspace: every run shares it
        "LLM": "FAIL",
    }
    assert rows["trust domain"].detail == doctor_agent.SHARED_SERVER
    assert f"fix: {doctor_agent.SHARED_SERVER_FIX}" in doctor.render(checks)
    assert rows["GitHub App JWT"].detail.startswith("GET /app answered 401")
    assert rows["GitHub App JWT"].fix == doctor.JWT_REFUSED_FIX
    assert fake_github.jwt_rejections  # GitHub's side really refused the JWT
    assert f"127.0.0.1:{closed_port}" in rows["Redis"].detail
    assert rows["Redis"].fix == doctor.REDIS_DOWN_FIX
    assert rows["workspace"].fix == doctor_agent.AGENT_SERVER_DOWN_FIX
    assert rows["LLM"].fix == "set a valid LLM_API_KEY"
    report = doctor.render(checks)
    assert report.endswith("4 check(s) failed")
    assert report.count("fix: ") == 5  # four failures and the warning
    for secret in (BOT_SECRETS["LLM_API_KEY"], "hunter2"):
        assert secret not in report
    assert doctor.failed(checks)


@pytest.mark.parametrize("where", ["inline", "missing file"])
async def test_a_key_that_is_no_key_skips_the_github_check(
    where: str, settings: Settings, llm: ScriptedLLM, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    llm.script(text("OK"))
    key: dict[str, object] = (
        {"github_private_key": SecretStr("-----BEGIN PRIVATE KEY-----\nnope\n")}
        if where == "inline"
        else {"github_private_key": None, "github_private_key_path": tmp_path / "gone.pem"}
    )
    broken = settings.model_copy(
        update={
            **key,
            "llm_model": "openai/fake",
            "llm_api_key": SecretStr(BOT_SECRETS["LLM_API_KEY"]),
            "llm_base_url": llm.base_url,
        }
    )

    rows = _rows(await doctor.run_checks(broken))

    assert rows["private key"].status == "FAIL"
    assert rows["private key"].fix == doctor.KEY_UNREADABLE_FIX
    assert rows["GitHub App JWT"].status == "skip"
    assert fake_github.requests == []


async def test_an_unset_redis_url_is_fine_when_serve_can_start_its_own(
    tmp_path: Path, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    fresh = Settings(_env_file=None, state_dir=tmp_path / "state")  # type: ignore[call-arg]

    row = await doctor.check_redis(fresh, default_address=("127.0.0.1", closed_port))

    assert row.status == "ok"
    executable = shutil.which("redis-server")
    assert row.detail == doctor.REDIS_BY_SERVE.format(
        executable=executable, data=fresh.state_dir / "redis"
    )


def test_the_command_prints_the_table_and_fails(
    fake_github: FakeGitHub,
    llm: ScriptedLLM,
    rsa_keys: tuple[str, str],
    tmp_path: Path,
    closed_port: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    llm.script(text("OK"))
    for name in list(os.environ):
        if name.startswith(("GITHUB_", "REDIS_", "LLM_", "WORKSPACE_", "AGENT_")):
            monkeypatch.delenv(name)
    key_file = tmp_path / "app.pem"
    key_file.write_text(rsa_keys[0])
    (tmp_path / ".env").write_text(
        f"GITHUB_APP_ID={APP_ID}\nGITHUB_PRIVATE_KEY_PATH={key_file}\n"
        f"GITHUB_WEBHOOK_SECRET={WEBHOOK_SECRET}\nGITHUB_API_URL={fake_github.url}\n"
        f"REDIS_URL=redis://127.0.0.1:{closed_port}/0\nLLM_MODEL=openai/fake\n"
        f"LLM_API_KEY={BOT_SECRETS['LLM_API_KEY']}\nLLM_BASE_URL={llm.base_url}\n"
    )
    monkeypatch.chdir(tmp_path)

    code = cli.main(["doctor"])

    out = capsys.readouterr().out
    assert code == 1
    lines = out.splitlines()
    assert lines[0].split() == [
        "ok",
        "settings",
        "App",
        str(APP_ID) + ",",
        "webhook",
        "secret",
        "set",
    ]
    assert any(line.split()[:2] == ["FAIL", "Redis"] for line in lines)
    assert any(line.split()[:3] == ["ok", "GitHub", "App"] for line in lines)
    assert lines[-1] == "1 check(s) failed"
    assert WEBHOOK_SECRET not in out
    assert BOT_SECRETS["LLM_API_KEY"] not in out


def test_invalid_settings_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MAX_JOBS", raising=False)
    (tmp_path / ".env").write_text("MAX_JOBS=lots\n")
    monkeypatch.chdir(tmp_path)

    assert cli.main(["doctor"]) == 1

    (line, *_) = capsys.readouterr().out.splitlines()
    assert line.startswith("FAIL  settings  MAX_JOBS: Input should be a valid integer")


async def test_a_runtime_api_must_answer(
    settings: Settings, tmp_path: Path, closed_port: int
) -> None:
    runtime = FakeRuntimeAPI(tmp_path / "runtimes")
    with runtime.serving():
        up = settings.model_copy(
            update={"workspace_kind": "runtime", "runtime_api_url": runtime.url}
        )
        answering = await doctor.check_workspace(up)
    down = up.model_copy(update={"runtime_api_url": f"http://127.0.0.1:{closed_port}"})

    unreachable = await doctor.check_workspace(down)

    assert answering.status == "ok"
    assert (unreachable.status, unreachable.fix) == (
        "FAIL",
        "fix RUNTIME_API_URL, or start the runtime API",
    )
    assert runtime.started == []  # checking starts no sandbox
