"""The walls between the packages hold at run time, not only in `lint-imports`: the web process
loads no agent, job or GitHub code, and the routing table loads no client."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.paths import ROOT


def _loaded_after(module: str) -> list[str]:
    """The modules in sys.modules after importing `module` in a fresh interpreter."""
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def _under(loaded: list[str], *packages: str) -> list[str]:
    return [m for m in loaded if any(m == p or m.startswith(p + ".") for p in packages)]


def test_the_web_app_loads_no_agent_job_or_github_code() -> None:
    loaded = _loaded_after("bot.intake.app")
    assert "bot.intake.app" in loaded  # the import really happened
    assert _under(loaded, "bot.agent", "bot.jobs", "bot.github", "bot.ops") == []
    assert _under(loaded, "githubkit", "litellm", "websockets") == []


def test_the_routing_table_loads_no_client() -> None:
    loaded = _loaded_after("bot.intake.triggers")
    assert "bot.intake.triggers" in loaded
    assert _under(loaded, "githubkit", "redis", "httpx", "arq") == []


@pytest.mark.parametrize("module", ["bot.agent.run", "bot.agent.workspace.factory"])
def test_the_agent_layer_loads_no_github_code(module: str) -> None:
    loaded = _loaded_after(module)
    assert _under(loaded, "bot.github", "githubkit") == []
