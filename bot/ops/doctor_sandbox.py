"""`doctor`'s sandbox row: whether `local` runs get their sandbox here, and if not, why and what
the worker will do about it."""

from __future__ import annotations

import asyncio

from bot.agent.workspace import sandbox
from bot.config import Settings
from bot.jobs.worker import QUEUE_EXPOSED, exposed_queue
from bot.ops.checks import Check

NAME = "sandbox"
UNSANDBOXED = (
    "LOCAL_SANDBOX=false: every run shares one agent-server on this host and can read the "
    "others' checkouts and conversations (development only)"
)
HOW_TO_SANDBOX = (
    "run the bot as root with bubblewrap, slirp4netns and nftables installed (in Docker: "
    "--cap-add SYS_ADMIN --security-opt seccomp=unconfined --security-opt apparmor=unconfined, "
    "or --privileged), or use WORKSPACE_KIND=runtime"
)


async def check_sandbox(settings: Settings) -> Check:
    if settings.workspace_kind != "local":
        return Check(NAME, "skip", f"WORKSPACE_KIND={settings.workspace_kind} runs no agent here")
    if not settings.local_sandbox:
        if exposed_queue(settings):
            return Check(NAME, "FAIL", QUEUE_EXPOSED, "set LOCAL_SANDBOX=true")
        return Check(NAME, "warn", UNSANDBOXED, "set LOCAL_SANDBOX=true")
    why = await asyncio.to_thread(sandbox.probe)
    if why is not None:
        return Check(NAME, "FAIL", f"runs cannot be sandboxed: {why}", HOW_TO_SANDBOX)
    pool = settings.local_sandbox_pool
    return Check(NAME, "ok", f"bubblewrap namespaces work; {pool} sandbox(es) kept warm")
