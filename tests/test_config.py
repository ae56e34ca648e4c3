"""Settings are built once and the processes refuse to start without what they need."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.config import MissingSetting, Settings


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "REDIS_", "BOT_"))}
    return subprocess.run(
        [sys.executable, "-m", "bot.ops.cli", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_web_refuses_to_start_naming_every_missing_variable(tmp_path: Path) -> None:
    result = _cli(["web"], {"PYTHONPATH": str(Path(__file__).parents[1])}, tmp_path)
    assert result.returncode == 2
    for name in ("GITHUB_WEBHOOK_SECRET", "GITHUB_APP_ID", "GITHUB_PRIVATE_KEY"):
        assert name in result.stderr


def test_web_names_only_what_is_missing(tmp_path: Path) -> None:
    env = {
        "PYTHONPATH": str(Path(__file__).parents[1]),
        "GITHUB_APP_ID": "1",
        "GITHUB_PRIVATE_KEY": "pem",
    }
    result = _cli(["web"], env, tmp_path)
    assert result.returncode == 2
    assert "GITHUB_WEBHOOK_SECRET" in result.stderr
    assert "GITHUB_APP_ID" not in result.stderr


def test_settings_read_env_and_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "app.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n")
    (tmp_path / ".env").write_text(
        f"GITHUB_APP_ID=12\nGITHUB_PRIVATE_KEY_PATH={key}\nGITHUB_WEBHOOK_SECRET=s3\n"
        "ALLOWED_BOTS=renovate[bot], dependabot[bot]\nBOT_HANDLE=@MyBot\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GITHUB_API_URL", "https://ghe.example.com/api/v3")
    settings = Settings()
    settings.require_web()
    assert settings.github_app_id == 12
    assert settings.private_key_pem().startswith("-----BEGIN PRIVATE KEY-----")
    assert settings.webhook_secret() == b"s3"
    assert settings.allowed_bots == ["renovate[bot]", "dependabot[bot]"]
    assert settings.bot_handle == "MyBot"
    assert settings.github_api_url == "https://ghe.example.com/api/v3"
    assert "s3" not in repr(settings)


def test_a_key_path_that_does_not_exist_is_named(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        github_app_id=1,
        github_private_key_path=tmp_path / "missing.pem",
        github_webhook_secret="x",
    )
    with pytest.raises(MissingSetting, match="GITHUB_PRIVATE_KEY_PATH"):
        settings.require_web()


def test_write_limits_read_as_count_per_window(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).write_limits() == [(80, 60.0), (500, 3600.0)]  # type: ignore[call-arg]
    monkeypatch.setenv("GITHUB_WRITE_LIMITS", "8/0.6, 50/36")
    assert Settings(_env_file=None).write_limits() == [(8, 0.6), (50, 36.0)]  # type: ignore[call-arg]
    monkeypatch.setenv("GITHUB_WRITE_LIMITS", "0/60")
    with pytest.raises(ValidationError, match="positive count"):
        Settings(_env_file=None)  # type: ignore[call-arg]
