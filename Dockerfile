# openhands-bot: the web app, the worker and, for WORKSPACE_KIND=local, the OpenHands agent-server
# (a dependency, so it is in the venv). Deploying: docs/deploy.md.

# --- build: the locked dependencies and the bot, into /app/.venv ---------------------------------
FROM python:3.12-slim-trixie AS builder
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON=/usr/local/bin/python3.12 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies in a layer of their own: rebuilt only when the lock changes.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
# The bot as a regular (not editable) install, so the runtime stage needs only the venv.
# README.md is the package's readme, which the build backend reads.
COPY README.md app-manifest.yml ./
COPY bot ./bot
RUN uv sync --frozen --no-dev --no-editable

# --- runtime ----------------------------------------------------------------------------------
FROM python:3.12-slim-trixie
# git: the agent clones repositories. tmux: the agent's terminal (without it the agent-server
# falls back to plain subprocesses). tini: forwards signals and reaps the agent's orphans.
# redis-server: `serve` without REDIS_URL starts a private one (production sets REDIS_URL).
# bubblewrap, slirp4netns, nftables, socat: the `local` sandbox per run (namespaces, its network
# and firewall, the relay to the LLM gateway); the worker container then needs --privileged or
# the capabilities README.md lists.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git redis-server tini tmux \
       bubblewrap slirp4netns nftables socat util-linux \
    && rm -rf /var/lib/apt/lists/*
# The unprivileged user the agent runs as (AGENT_USER). The bot itself stays root on purpose: in
# `local` mode it starts the agent-server as this user, so the agent can read neither the bot's
# environment (App key, webhook secret, LLM key) nor its files. A non-root bot would have to run
# the agent as itself, with those secrets in reach. With WORKSPACE_KIND=server or runtime nothing
# runs here and the container can run as any user (`docker run --user`).
RUN useradd --system --user-group --shell /bin/bash \
    --home-dir /var/lib/openhands-bot/agent-server/home openhands-agent

COPY --from=builder /app/.venv /app/.venv
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    STATE_DIR=/var/lib/openhands-bot
# Settings also come from /app/.env when one is mounted there.
WORKDIR /app

EXPOSE 8000
# For `serve` and `web`; a `worker` container has no HTTP port (run it with --no-healthcheck).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# -s: also reap orphans where tini is not PID 1 (on Fly, its init is).
ENTRYPOINT ["tini", "-s", "--"]
CMD ["openhands-bot", "serve", "--host", "0.0.0.0", "--port", "8000"]
