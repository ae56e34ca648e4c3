"""The resume benchmark's world: a private redis-server, the test fakes, the real web app, one real
agent-server, and `openhands-bot worker` processes started as an operator starts them."""
# ruff: noqa: T201

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bot.agent.workspace import local
from bot.agent.workspace.local import LocalProvider
from bot.config import Settings
from bot.intake.app import create_app
from tests import redis_server
from tests.conftest import APP_ID, WEBHOOK_SECRET, Deliverer
from tests.fakes.git_host import FakeGitHost
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import Script, ScriptedLLM, Step
from tests.helpers import rsa_key_pair
from tests.jobs.test_mention import INSTALLATION, OWNER, REPO, WRITER, mention
from tests.jobs.test_resume import settings_env
from tests.paths import ROOT
from tests.servers import ServerThread

LLM_KEY = "sk-bench-fake-3b7e"


@contextlib.contextmanager
def redis_server_in(directory: Path) -> Iterator[str]:
    """A redis-server of our own on a free loopback port, without persistence."""
    try:
        process, url = redis_server.start(directory)
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from exc
    try:
        yield url
    finally:
        redis_server.stop(process)


@contextlib.contextmanager
def agent_server(max_concurrent_runs: int | None = None) -> Iterator[LocalProvider]:
    """One real agent-server for the whole benchmark (as tests/conftest.py's fixture): it takes
    15-45 s to start. LocalProvider gives it a scrubbed environment of its own; with
    `max_concurrent_runs`, that environment raises the server's limit on conversations running
    at once (OH_MAX_CONCURRENT_RUNS, 10 by default: it answers 429 past it)."""
    state = Path(tempfile.mkdtemp(prefix="openhands-bot-bench-"))
    provider = LocalProvider(state, start_timeout=240)
    scrubbed = local.scrubbed_env
    if max_concurrent_runs is not None:

        def raised(**kwargs: Any) -> dict[str, str]:
            return {**scrubbed(**kwargs), "OH_MAX_CONCURRENT_RUNS": str(max_concurrent_runs)}

        local.scrubbed_env = raised  # only while it starts: the bot's own use is untouched
    try:
        try:
            asyncio.run(provider.start())
        finally:
            local.scrubbed_env = scrubbed
        yield provider
    finally:
        asyncio.run(provider.close())
        shutil.rmtree(state, ignore_errors=True)


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    started: float  # time.time() just before the process was spawned
    log: Path

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


@dataclass
class World:
    github: FakeGitHub
    llm: ScriptedLLM
    deliver: Deliverer
    settings: Settings
    home: Path
    workers: list[WorkerProcess] = field(default_factory=list)
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(100))

    def start_worker(self, name: str) -> WorkerProcess:
        """`python -m bot.ops.cli worker` in a process of its own, settings from the environment."""
        home = self.home / name
        home.mkdir(parents=True)
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(home),
            "PYTHONPATH": str(ROOT),
            **settings_env(self.settings),
        }
        with (home / "worker.log").open("wb") as log:
            started = time.time()
            process = subprocess.Popen(
                [sys.executable, "-m", "bot.ops.cli", "worker"],
                cwd=home,  # no .env there
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=redis_server.die_with_parent,
            )
        worker = WorkerProcess(process, started, home / "worker.log")
        self.workers.append(worker)
        return worker

    def new_run(self, *steps: Step) -> tuple[Script, str]:
        """A new issue mentioning the bot, its own LLM script; (script, run id) once queued."""
        number = next(self._numbers)
        marker = f"bench-{uuid.uuid4().hex[:12]}"
        body = f"parse('') raises IndexError ({marker})"
        self.github.add_issue(REPO, number, "Crash on empty input", body, "reporter")
        script = self.llm.script(*steps, match=marker)
        payload = mention("@openhands fix this please", number=number)
        comment = payload["comment"]
        self.github.add_comment(REPO, number, comment["body"], WRITER, comment_id=comment["id"])
        response = self.deliver.post("issue_comment", payload)
        if response.status_code != 202:
            raise RuntimeError(f"the mention was answered {response.status_code}: {response.text}")
        run_id: str = response.json()["run_id"]
        return script, run_id


def bench_settings(api_url: str, private_key: str, home: Path, **values: Any) -> Settings:
    """Product defaults, but for where things are and the scripted LLM. The LLM may take long
    and is asked once per call: a killed worker's orphaned conversation waits in the fake's
    hang() for the rest of the benchmark instead of asking again."""
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        github_app_id=APP_ID,
        github_private_key=private_key,
        github_webhook_secret=WEBHOOK_SECRET,
        github_api_url=api_url,
        github_app_slug="openhands-bench",
        state_dir=home / "state",
        llm_model="openai/fake",
        llm_api_key=SecretStr(LLM_KEY),
        llm_timeout_seconds=900.0,
        llm_num_retries=1,
        llm_input_cost_per_token=3e-6,
        llm_output_cost_per_token=15e-6,
        **values,
    )


@contextlib.contextmanager
def world(lease: float, agent_runs: int | None = None, **values: Any) -> Iterator[World]:
    """The world; `values` are settings over bench_settings' (MAX_JOBS, write limits...),
    `agent_runs` the agent-server's limit on conversations running at once."""
    with contextlib.ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-resume-")))
        print("starting the agent-server (15-45 s)...", file=sys.stderr, flush=True)
        agent = stack.enter_context(agent_server(agent_runs))
        redis_url = stack.enter_context(redis_server_in(home))
        private_key, public_key = rsa_key_pair()
        github = stack.enter_context(FakeGitHub(APP_ID, public_key).serving())
        git = stack.enter_context(FakeGitHost(github, home / "git").serving())
        git.create_repo(
            REPO,
            {"README.md": "# app\n", "app.py": "def parse(text):\n    return text.split()[0]\n"},
        )
        github.add_installation(INSTALLATION, OWNER, [REPO])
        github.set_permission(REPO, WRITER, "write")
        llm = stack.enter_context(ScriptedLLM(api_key=LLM_KEY).serving())
        settings = bench_settings(
            github.url,
            private_key,
            home,
            redis_url=redis_url,
            llm_base_url=llm.base_url,
            worker_lease_seconds=lease,
            workspace_kind="server",
            agent_server_url=agent.url,
            agent_server_api_key=SecretStr(agent.api_key),
            agent_server_workspace_root=str(agent.workspaces_dir / "bench"),
            **values,
        )
        web = stack.enter_context(
            ServerThread(create_app(settings), health_path="/healthz", lifespan="on")
        )
        deliver = stack.enter_context(Deliverer(web.url))
        made = World(github, llm, deliver, settings, home)
        try:
            yield made
        finally:
            for worker in made.workers:
                redis_server.stop(worker.process, grace=10)
