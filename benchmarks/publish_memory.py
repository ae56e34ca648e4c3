"""How much the bot's memory grows to publish one big file: reading it from the workspace and
writing its blob to GitHub, the way the bot does it (read once, streamed up in base64 pieces)
next to the way it did before (whole download, base64 string, JSON body), in one run.

Each way runs in a fresh child process (peak RSS is a high-water mark), against the fake GitHub
and a loopback file server standing in for the agent-server's download endpoint, both in this
process so their memory is not counted.

    python -m benchmarks.publish_memory --megabytes 60
"""
# ruff: noqa: T201

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Route

from benchmarks._world import redis_server_in
from tests.conftest import APP_ID, make_settings
from tests.fakes.git_host import FakeGitHost
from tests.fakes.github import FakeGitHub
from tests.helpers import rsa_key_pair
from tests.paths import ROOT
from tests.servers import ServerThread

REPO, OWNER, NAME, INSTALLATION = "octo/big", "octo", "big", 61


def _peak_kib() -> int:
    """This process's peak RSS (VmHWM: its own, where ru_maxrss keeps the parent's across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise SystemExit("no VmHWM in /proc/self/status (Linux only)")


async def _child(way: str, env: dict[str, str]) -> dict[str, float]:
    """One publish of the file, the bot's way or the old one: peak RSS before and after."""
    from redis.asyncio import Redis

    from bot.agent.results import ChangedFile
    from bot.agent.server_client import AgentServerClient
    from bot.github import commits, publish
    from bot.github.client import GitHubApp
    from bot.queue.tasks import RepoRef

    settings = make_settings(
        env["api_url"], env["private_key"], Path(env["home"]), redis_url=env["redis_url"]
    )
    redis = Redis.from_url(settings.redis_url)
    writer = await GitHubApp(settings, redis).installation_client(
        INSTALLATION, repositories=[NAME], permissions=publish.PUBLISH_PERMISSIONS
    )
    files = AgentServerClient(env["files_url"], None, timeout=300)
    repo, size, base = RepoRef(owner=OWNER, name=NAME), int(env["size"]), env["base"]
    await writer.rest.git.async_get_commit(OWNER, NAME, base)  # warm: connections, models
    before = _peak_kib()
    if way == "streamed":
        content = await files.download_exact("big.bin", size)
        change = ChangedFile("big.bin", "added", content, size=size)
        await commits.create_commit(
            writer, repo, base_sha=base, changes=[change], message="big", when=datetime.now(UTC)
        )
    else:  # what publishing did before: the whole file, then a base64 string in a JSON body
        whole = await files.download("big.bin")
        await writer.rest.git.async_create_blob(
            OWNER, NAME, content=base64.b64encode(whole).decode(), encoding="base64"
        )
    after = _peak_kib()
    await files.aclose()
    await redis.aclose()
    return {"before_mib": before / 1024, "peak_mib": after / 1024}


def _measure(way: str, env: dict[str, str]) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.publish_memory", "--child", way],
        input=json.dumps(env).encode(),
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the {way} child failed:\n{done.stderr.decode()[-3000:]}")
    figures: dict[str, float] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=60)
    parser.add_argument("--child", choices=("streamed", "old"))
    args = parser.parse_args()
    if args.child:
        env = json.loads(sys.stdin.read())
        print(json.dumps(asyncio.run(_child(args.child, env))))
        return
    size = args.megabytes * 1024 * 1024
    with contextlib.ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-publish-")))
        big = home / "big.bin"
        with big.open("wb") as out:  # incompressible, as a real binary would be
            for _ in range(args.megabytes):
                out.write(os.urandom(1024 * 1024))

        async def download(request: Request) -> FileResponse:
            return FileResponse(big)

        files = stack.enter_context(
            ServerThread(Starlette(routes=[Route("/api/file/download", download)]))
        )
        redis_url = stack.enter_context(redis_server_in(home))
        private_key, public_key = rsa_key_pair()
        github = stack.enter_context(FakeGitHub(APP_ID, public_key).serving())
        git = stack.enter_context(FakeGitHost(github, home / "git").serving())
        git.create_repo(REPO, {"README.md": "# big\n"})
        github.add_installation(INSTALLATION, OWNER, [REPO])
        env = {
            "api_url": github.url,
            "private_key": private_key,
            "home": str(home),
            "redis_url": redis_url,
            "files_url": files.url,
            "size": str(size),
            "base": git.rev_parse(REPO, "refs/heads/main"),
        }
        print(f"peak RSS of the bot's process publishing one {args.megabytes} MiB file")
        print(f"{'way':<36}{'before':>10}{'peak':>10}{'growth':>10}")
        for way, title in (("old", "baseline: whole file, base64 string"), ("streamed", "now")):
            got = _measure(way, env)
            growth = got["peak_mib"] - got["before_mib"]
            print(f"{title:<36}{got['before_mib']:>9.0f}M{got['peak_mib']:>9.0f}M{growth:>9.0f}M")


if __name__ == "__main__":
    main()
