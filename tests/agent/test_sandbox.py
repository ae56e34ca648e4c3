"""`local` runs in sandboxes: a snooping agent (what a prompt-injected one would do) reaches
nothing of the host's, of another run's, or of the queue; two runs at once cannot see each
other; a sandbox is gone when its run ends. Real bwrap, slirp4netns, nft and agent-servers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from bot import keys
from bot.agent.gateway import Gateway
from bot.agent.run import AgentRun, Resume, RunSpec, run_agent
from bot.agent.workspace import sandbox
from bot.agent.workspace.netns import HOST_LOOPBACK, NetworkPolicy, host_addresses
from bot.agent.workspace.sandboxed import SandboxProvider
from bot.config import Settings
from bot.queue.tasks import RepoRef
from tests.agent.test_agent_run import INSTALLATION, clone_token
from tests.conftest import BOT_SECRETS, serving_gateway
from tests.fakes import llm as steps
from tests.fakes.git_host import FakeGitHost
from tests.fakes.github import FakeGitHub
from tests.fakes.llm import ScriptedLLM, content_text

pytestmark = pytest.mark.skipif(
    sandbox.available() is not None, reason=f"no sandbox here: {sandbox.available()}"
)

# What the snooping agent runs in its terminal: each probe prints `name: REACHED ...` or
# `name: blocked <why>`. Arguments: another run's host directory, a kept checkout's host
# directory, the Redis port, the fake GitHub's port, a port listening on every host address.
SNOOP = r"""
import glob, json, os, socket, sys, urllib.request
other, kept, redis_port, web_port, wide_port = sys.argv[1:6]

def attempt(name, fn):
    try:
        print(f"{name}: REACHED {fn()!r}"[:400])
    except Exception as exc:
        print(f"{name}: blocked {type(exc).__name__}")

def talk(host, port, data=b"PING\r\n"):
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        if data is None:
            return "connected"
        sock.sendall(data)
        return sock.recv(100)

attempt("other-run", lambda: os.listdir(other))
attempt("kept-checkout", lambda: os.listdir(kept))
attempt("shadow", lambda: open("/etc/shadow").read(10))
attempt("redis-loopback", lambda: talk("127.0.0.1", redis_port))
attempt("redis-host", lambda: talk("10.0.2.2", redis_port))
job = b"ZADD arq:queue 1 planted\r\nSET planted 1\r\n"
attempt("plant-job", lambda: talk("10.0.2.2", redis_port, job))
attempt("bot-port", lambda: talk("10.0.2.2", web_port, b"GET / HTTP/1.0\r\n\r\n"))
hosts = [a for a in sys.argv[6:]]
for address in hosts:
    attempt(f"host-address {address}", lambda: talk(address, wide_port, None))
attempt("metadata", lambda: talk("169.254.169.254", 80))
attempt("private", lambda: talk("192.168.1.1", 80))
pids = [p for p in os.listdir("/proc") if p.isdigit()]
cmdlines = []
for pid in pids:
    try:
        cmdlines.append(open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode())
    except OSError:
        pass
print("processes:", json.dumps(cmdlines))
key = None
names = set()
for path in glob.glob("/proc/*/environ"):
    try:
        for item in open(path, "rb").read().split(b"\0"):
            name, _, value = item.decode(errors="replace").partition("=")
            names.add(name)
            if name == "OH_SESSION_API_KEYS_0":
                key = value
    except OSError:
        pass
print("environment names:", json.dumps(sorted(names)))
request = urllib.request.Request(
    "http://127.0.0.1:8000/api/conversations/search", headers={"X-Session-API-Key": key or ""}
)
items = json.load(urllib.request.urlopen(request, timeout=10))["items"]
print("own-conversations:", json.dumps([item["id"] for item in items]))
"""


def _host_addresses() -> list[str]:
    """This host's non-loopback IPv4 addresses (a service bound to 0.0.0.0 answers on them)."""
    return [a.split("/")[0] for a in host_addresses() if ":" not in a and a != "127.0.0.1/32"]


@pytest.fixture(scope="module")
def provider() -> Iterator[SandboxProvider]:
    """Two sandboxes kept warm for the module; their firewall is loaded when a run takes one."""
    state = Path(tempfile.mkdtemp(prefix="openhands-bot-sandbox-test-"))
    gateway_dir = state / "llm-gateway"  # where the worker's gateway puts its socket
    gateway_dir.mkdir()
    made = SandboxProvider(
        state, pool_size=2, allowed_networks=[f"{HOST_LOOPBACK}:1"], gateway_dir=gateway_dir
    )
    asyncio.run(made.start())
    yield made
    asyncio.run(made.close())
    assert not list(made.config.base.glob("*/work")), "a sandbox outlived the provider"


@pytest.fixture
def wide_listener() -> Iterator[int]:
    """A TCP service on every address of the host (as a careless one would be)."""
    with socket.socket() as server:
        server.bind(("0.0.0.0", 0))
        server.listen()
        yield server.getsockname()[1]


def _through_slirp(url: str) -> str:
    """The host's loopback as a sandbox reaches it (only the allow-listed ports)."""
    return url.replace("127.0.0.1", HOST_LOOPBACK)


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


@pytest.fixture
async def sandboxed(
    provider: SandboxProvider, llm: ScriptedLLM, git_host: FakeGitHost, agent_settings: Settings
) -> AsyncIterator[Settings]:
    """Settings whose git host the sandboxes may reach (and nothing else local): the LLM only
    through the worker's gateway, on the unix socket relayed into each sandbox."""
    allowed = [f"{HOST_LOOPBACK}:{_port(git_host.url)}"]
    provider.policy = NetworkPolicy.from_settings(allowed)
    # A run may wait for a sandbox to boot (slow on a busy machine): no run timeout meanwhile.
    update = {"state_dir": provider.config.base.parent, "run_timeout_seconds": 900.0}
    yield agent_settings.model_copy(update=update)
    provider.policy = provider.config.policy


def _spec(git_host: FakeGitHost, repo: str, prompt: str, **fields: Any) -> RunSpec:
    owner, name = repo.split("/")
    return RunSpec(
        run_id=f"run-{uuid.uuid4().hex[:12]}",
        installation_id=INSTALLATION,
        repo=RepoRef(owner=owner, name=name),
        clone_url=_through_slirp(git_host.clone_url(repo)),
        prompt=prompt,
        **fields,
    )


async def _run(
    settings: Settings,
    provider: SandboxProvider,
    redis: Redis,
    spec: RunSpec,
    gateway: Gateway | None = None,
) -> AgentRun:
    """One run, through `gateway` (a worker's, which its runs share) or a gateway of its own."""
    token = await clone_token(settings, redis, spec)
    if gateway is not None:
        return await run_agent(settings, provider, spec, gateway=gateway, clone_token=token)
    async with serving_gateway(settings, redis) as own:
        return await run_agent(settings, provider, spec, gateway=own, clone_token=token)


def _probes(output: str) -> dict[str, str]:
    return {
        line.split(": ", 1)[0]: line.split(": ", 1)[1]
        for line in output.splitlines()
        if ": " in line
    }


async def test_a_snooping_agent_reaches_nothing_but_its_own_run(
    provider: SandboxProvider,
    sandboxed: Settings,
    fake_github: FakeGitHub,
    git_host: FakeGitHost,
    llm: ScriptedLLM,
    redis: Redis,
    redis_url: str,
    wide_listener: int,
) -> None:
    for repo, secret in (("octo/victim", "victim's private code"), ("octo/tools", "x")):
        git_host.create_repo(repo, {"SECRET.md": secret})
    fake_github.add_installation(INSTALLATION, "octo", ["octo/victim", "octo/tools"])
    # The victim: a live run that wrote its checkout and keeps working.
    beats = itertools.count()
    llm.script(
        steps.tool_call("terminal", command="echo victim-was-here >> SECRET.md"),
        # Busy until cancelled, each step different (repeats would end it as `stuck`).
        steps.repeat(lambda _: steps.tool_call("terminal", command=f"sleep 3 # {next(beats)}")),
        match="[[victim]]",
    )
    victim_spec = _spec(git_host, "octo/victim", "Work [[victim]]", max_iterations=10_000)
    victim = asyncio.create_task(_run(sandboxed, provider, redis, victim_spec))
    while len([r for r in llm.completions if "[[victim]]" in r.text]) < 2:
        assert not victim.done(), victim.result().result.error
        await asyncio.sleep(0.2)
    # The victim's sandbox is the one with a checkout (a warm one has an empty run directory).
    (victim_dir,) = [
        d for d in provider.config.base.iterdir() if (d / "work/repo/SECRET.md").exists()
    ]
    # A thread's checkout kept from an earlier run.
    kept = provider.kept.base / "thread-other"
    (kept / "content" / "repo").mkdir(parents=True)
    (kept / "content" / "repo" / "KEPT.md").write_text("kept checkout")
    hosts = _host_addresses()
    args = [
        str(victim_dir / "work"),
        str(kept),
        str(_port(redis_url)),
        str(_port(fake_github.url)),
        str(wide_listener),
        *hosts,
    ]
    command = f"cat > /tmp/snoop.py <<'EOF'\n{SNOOP}\nEOF\npython /tmp/snoop.py {' '.join(args)}"
    llm.script(
        steps.tool_call("terminal", command=command),
        steps.finish("looked around"),
        match="[[snoop]]",
    )
    keys_before = set(await redis.keys("*"))

    snoop = await _run(sandboxed, provider, redis, _spec(git_host, "octo/tools", "[[snoop]]"))

    assert snoop.result.status == "finished", snoop.result.error
    output = next(r for r in llm.tool_results() if "processes:" in r)
    probes = _probes(output)
    for name in ("other-run", "kept-checkout", "shadow", "redis-loopback", "redis-host"):
        assert probes[name].startswith("blocked"), (name, probes[name])
    for name in ("plant-job", "bot-port", "metadata", "private"):
        assert probes[name].startswith("blocked"), (name, probes[name])
    for address in hosts:
        assert probes[f"host-address {address}"].startswith("blocked"), probes
    # The only keys the run added are the gateway's record of its credential and usage.
    added = set(await redis.keys("*")) - keys_before
    gateway = (keys.GATEWAY_CREDENTIAL_PREFIX, keys.GATEWAY_USAGE_PREFIX)
    assert all(key.decode().startswith(gateway) for key in added), added
    assert await redis.get("planted") is None
    # Its own processes only: no Redis, no test runner, no other run's server.
    assert "redis-server" not in probes["processes"]
    assert "pytest" not in probes["processes"]
    assert len(json.loads(probes["processes"])) < 10
    for value in BOT_SECRETS.values():
        assert value not in output
    assert "GITHUB_WEBHOOK_SECRET" not in probes["environment names"]
    # Its own server lists its own conversation, not the victim's.
    (own,) = json.loads(probes["own-conversations"])
    assert own.replace("-", "") == snoop.result.conversation_id.replace("-", "")
    assert "victim" not in output

    assert not victim.done()  # it was alive all along
    victim.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await victim
    assert not victim_dir.exists(), "the victim's sandbox outlived its run"


async def test_two_runs_at_once_cannot_see_each_others_files(
    provider: SandboxProvider,
    sandboxed: Settings,
    fake_github: FakeGitHub,
    git_host: FakeGitHost,
    llm: ScriptedLLM,
    redis: Redis,
) -> None:
    git_host.create_repo("octo/alpha", {"ALPHA.md": "alpha only"})
    git_host.create_repo("octo/beta", {"BETA.md": "beta only"})
    fake_github.add_installation(INSTALLATION, "octo", ["octo/alpha", "octo/beta"])
    look = "find /workspace /tmp /home /run /var /opt /srv /mnt -name '*.md' 2>/dev/null"
    for name in ("alpha", "beta"):
        llm.script(
            steps.tool_call("terminal", command=f"echo {name}-run > /tmp/{name}-mark; {look}"),
            steps.tool_call("terminal", command="ls /tmp; echo UID=$(id -u)"),
            steps.finish(f"{name} done"),
            match=f"[[{name}]]",
        )

    async with serving_gateway(sandboxed, redis) as gateway:  # one worker's, as in production
        alpha, beta = await asyncio.gather(
            _run(sandboxed, provider, redis, _spec(git_host, "octo/alpha", "[[alpha]]"), gateway),
            _run(sandboxed, provider, redis, _spec(git_host, "octo/beta", "[[beta]]"), gateway),
        )

    assert alpha.result.status == beta.result.status == "finished", (
        alpha.result.error,
        beta.result.error,
    )
    seen = {name: _tool_output(llm, f"[[{name}]]") for name in ("alpha", "beta")}
    assert "/workspace/repo/ALPHA.md" in seen["alpha"]
    assert "/workspace/repo/BETA.md" in seen["beta"]
    assert "BETA" not in seen["alpha"]
    assert "beta-mark" not in seen["alpha"]
    assert "ALPHA" not in seen["beta"]
    assert "alpha-mark" not in seen["beta"]
    uids = {re.search(r"UID=(\d+)", text).group(1) for text in seen.values()}  # type: ignore[union-attr]
    assert len(uids) == 2  # a host uid each


def _tool_output(llm: ScriptedLLM, marker: str) -> str:
    """Every tool result the run marked `marker` sent back to the LLM."""
    last = [r for r in llm.completions if marker in r.text][-1]
    return "\n".join(
        content_text(m.get("content")) for m in last.messages if m.get("role") == "tool"
    )


async def test_a_follow_up_continues_its_kept_conversation_in_a_fresh_sandbox(
    provider: SandboxProvider,
    sandboxed: Settings,
    fake_github: FakeGitHub,
    git_host: FakeGitHost,
    llm: ScriptedLLM,
    redis: Redis,
) -> None:
    """The thread's checkout and conversation wait outside every sandbox; the follow-up's
    sandbox (its server started before they moved in) goes on with the same conversation."""
    git_host.create_repo("octo/gamma", {"README.md": "gamma\n"})
    fake_github.add_installation(INSTALLATION, "octo", ["octo/gamma"])
    # The follow-up's requests carry the first run's messages too: its script is matched first.
    llm.script(steps.finish("second done"), match="[[second]]")
    llm.script(
        steps.tool_call("terminal", command="echo first > /workspace/repo/FIRST.txt"),
        steps.finish("first done"),
        match="[[first]]",
    )
    thread = f"thread-{uuid.uuid4().hex[:8]}"
    first = _spec(
        git_host,
        "octo/gamma",
        "[[first]] the word is pelican",
        workspace_id=thread,
        keep_seconds=600,
    )
    one = await _run(sandboxed, provider, redis, first)
    assert one.result.status == "finished"
    assert one.head_sha is not None

    resume = Resume(conversation_run_id=first.run_id, base_sha=one.head_sha)
    second = _spec(
        git_host,
        "octo/gamma",
        "unused",
        workspace_id=thread,
        resume=resume,
        follow_up_prompt="[[second]] what was the word?",
    )
    two = await _run(sandboxed, provider, redis, second)

    assert two.result.status == "finished"
    assert two.resumed == resume
    assert two.result.conversation_id == one.result.conversation_id
    asked = [r for r in llm.completions if "[[second]]" in r.text][-1]
    assert "pelican" in asked.text  # the agent still has the first run's conversation
    assert "FIRST.txt" in [change.path for change in two.result.changes]
