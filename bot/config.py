"""One typed Settings object, built once at start-up from the environment and `.env`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024


def parse_limits(text: str) -> list[tuple[int, float]]:
    """`"80/60,500/3600"` → [(80, 60.0), (500, 3600.0)]: at most N writes in any S seconds."""
    limits = []
    for part in text.split(","):
        if not part.strip():
            continue
        count, _, seconds = part.partition("/")
        limit = (int(count), float(seconds))
        if limit[0] < 1 or limit[1] <= 0:
            raise ValueError(f"a write limit needs a positive count and window: {part!r}")
        limits.append(limit)
    return limits


class MissingSetting(Exception):
    """A setting the process cannot start without; the message names the variable."""


class Settings(BaseSettings):
    """Every knob of the bot. Names are the environment variable names, upper-cased."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    # GitHub App credentials.
    github_app_id: int | None = None
    github_private_key: SecretStr | None = None
    github_private_key_path: Path | None = None
    github_webhook_secret: SecretStr | None = None
    github_api_url: str = "https://api.github.com"
    github_app_slug: str | None = None  # its comments (`<slug>[bot]`) never trigger a run

    # Queue.
    redis_url: str = "redis://127.0.0.1:6379/0"

    # Triggers.
    bot_handle: str = "openhands"
    trigger_label: str = "openhands"
    review_on_open: bool = True
    review_on_push: bool = False
    allowed_bots: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # LLM (litellm naming).
    llm_model: str = "anthropic/claude-sonnet-4-5"
    llm_api_key: SecretStr | None = None
    llm_base_url: str | None = None

    # Intake.
    max_body_bytes: int = 25 * MiB
    delivery_dedup_seconds: int = 7 * 24 * 3600  # GitHub redelivers for up to days

    # Worker and GitHub client behaviour.
    permission_cache_seconds: int = 300
    # Content writes per installation, across every worker: at most N in any S seconds, for
    # each "N/S" (GitHub's secondary limits: 80 a minute, 500 an hour), one at a time.
    github_write_limits: str = "80/60,500/3600"
    github_max_retry_wait_seconds: float = 60.0  # longer rate-limit waits fail instead
    github_timeout_seconds: float = 30.0
    github_retry_base_seconds: float = 1.0  # first back-off after a 5xx; doubles per retry
    # Jobs at once per worker process. The worker costs ~1.05 MiB per run over ~94 MiB, its
    # gateway process a flat ~290 MiB (benchmarks/concurrency.py); 10 is what a local sandbox
    # per run (~336 MiB each) and a stock agent-server (10 conversations at once, then 429)
    # allow, not what the worker allows.
    max_jobs: int = 10
    # A queued job wakes a worker at once (pub/sub); this is how often it looks anyway.
    queue_poll_seconds: float = Field(default=5.0, gt=0)
    # Runs of one installation at a time, across every worker: the others wait in line, holding
    # no worker slot, so one busy installation cannot starve the rest.
    max_runs_per_installation: int = Field(default=5, ge=1)
    job_timeout_seconds: int = 3600
    # A job's claim on its run lives this long unless its worker renews it (every third of it):
    # a killed worker's run is taken up by another within about this time.
    worker_lease_seconds: float = Field(default=30.0, ge=3.0)
    # A worker rides out a Redis outage this long: each command retries with back-off meanwhile.
    redis_outage_seconds: float = Field(default=90.0, ge=0.0)
    wait_poll_seconds: float = 10.0  # a waiting run looks again this often (one ending wakes it)

    # Workspaces: where the agent runs.
    workspace_kind: Literal["local", "server", "runtime"] = "local"
    workspace_start_timeout_seconds: float = 90.0
    agent_user: str = "openhands-agent"  # the local agent-server's user when the bot is root
    # `local`: a bubblewrap sandbox per run (own namespaces, uid, network); False runs every run
    # on one shared, unsandboxed agent-server (development only: the worker then refuses an
    # unauthenticated TCP Redis).
    local_sandbox: bool = True
    local_sandbox_pool: int = Field(default=2, ge=0)  # sandboxes started ahead, per worker
    # Networks (CIDR, optionally `:port`) a sandbox may reach although loopback, private or
    # link-local; `10.0.2.2:PORT` is the host's loopback port PORT.
    sandbox_allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    agent_server_url: str | None = None
    agent_server_api_key: SecretStr | None = None
    agent_server_workspace_root: str = "/workspace/runs"
    runtime_api_url: str | None = None
    runtime_api_key: SecretStr | None = None
    runtime_image: str = "ghcr.io/openhands/agent-server:latest-python"
    runtime_working_dir: str = "/workspace"

    # Agent runs.
    workspace_keep_seconds: float = 3600.0  # a thread's workspace waits this long for a follow-up
    max_iterations: int = 100
    run_timeout_seconds: float = 1800.0
    setup_timeout_seconds: int = 600
    setup_failure_fatal: bool = False
    clone_timeout_seconds: int = 300
    # A dead LLM is reported within 2 minutes: attempts x first-token bound + waits (2 x 55 +
    # 2 s). The gateway fails an attempt whose first chunk is later than LLM_FIRST_TOKEN_SECONDS
    # or that goes silent for LLM_IDLE_SECONDS; an answer that keeps streaming is never cut, up
    # to the agent-server's generous per-attempt LLM_TIMEOUT_SECONDS (see bot/agent/request.py).
    llm_num_retries: int = 2  # total attempts per LLM call (the agent-server counts that way)
    llm_retry_min_wait: int = 1  # seconds; the agent-server wants whole numbers
    llm_retry_max_wait: int = 8
    llm_first_token_seconds: float = Field(default=55.0, gt=0)
    llm_idle_seconds: float = Field(default=55.0, gt=0)
    llm_timeout_seconds: float = 900.0  # the agent-server's limit on one whole attempt
    # The LLM gateway (bot/agent/gateway/), the only holder of the provider key. Every worker
    # serves it on a unix socket under STATE_DIR and on this TCP address (port 0: any free one),
    # which `server`/`runtime` workspaces reach at LLM_GATEWAY_URL (default: that address).
    llm_gateway_listen: str = "127.0.0.1:0"
    llm_gateway_url: str | None = None
    progress_interval_seconds: float = 2.0  # how often a run reports its progress at most
    max_cost_per_run: float | None = None  # USD; the run is interrupted once it costs more
    stop_hook_grace_seconds: float = 90.0  # how long a `finished` waits for the repo's stop hooks
    llm_input_cost_per_token: float | None = None  # for models litellm has no price for
    llm_output_cost_per_token: float | None = None

    # Automatic reviews.
    review_max_changed_lines: int = 5000  # larger PRs get a short note instead of a review
    review_max_files: int = 300
    review_diff_budget_chars: int = 60_000  # diff text given to the reviewer, important first
    review_max_passes: int = Field(default=4, ge=1, le=20)  # a larger PR's rest is listed
    review_allow_request_changes: bool = False  # otherwise reviews are COMMENT, never APPROVE

    # Publishing and the tracking comment.
    open_pr_ready: bool = False  # open pull requests ready for review instead of as drafts
    tracking_interval_seconds: float = 5.0  # minimum spacing of progress edits
    public_url: str | None = None  # where this bot is reachable, for run links

    # Run API, run records and completion callbacks.
    bot_api_token: SecretStr | None = None  # bearer token for /api/runs; the API is off without it
    metrics_token: SecretStr | None = None  # when set, /metrics needs it as a bearer token
    run_retention_seconds: int = 14 * 24 * 3600
    automation_callback_url: str | None = None  # as in the OpenHands SDK: a default for every run
    automation_callback_api_key: SecretStr | None = None
    automation_run_id: str | None = None  # the id reported to AUTOMATION_CALLBACK_URL
    callback_max_attempts: int = 5
    callback_retry_base_seconds: float = 2.0  # doubles per attempt
    callback_timeout_seconds: float = 10.0
    # Hosts a callback URL may name although they are loopback, private or link-local.
    callback_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)

    state_dir: Path = Path(".openhands-bot")
    log_level: str = "INFO"

    @field_validator(
        "allowed_bots", "callback_allowed_hosts", "sandbox_allowed_networks", mode="before"
    )
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("github_write_limits")
    @classmethod
    def _check_limits(cls, value: str) -> str:
        parse_limits(value)  # refuses what it cannot read
        return value

    def write_limits(self) -> list[tuple[int, float]]:
        """GITHUB_WRITE_LIMITS read: (count, window seconds) pairs."""
        return parse_limits(self.github_write_limits)

    @field_validator("bot_handle")
    @classmethod
    def _strip_at(cls, value: str) -> str:
        handle = value.strip().lstrip("@")
        if not handle:
            raise ValueError("BOT_HANDLE must not be empty")
        return handle

    def run_url(self, run_id: str) -> str | None:
        """Where a run can be looked at, when the bot's public URL is known."""
        return f"{self.public_url.rstrip('/')}/runs/{run_id}" if self.public_url else None

    def private_key_pem(self) -> str:
        """The App private key as PEM text, from the variable or the file it points to."""
        if self.github_private_key is not None:
            return self.github_private_key.get_secret_value().replace("\\n", "\n")
        if self.github_private_key_path is not None:
            return self.github_private_key_path.read_text()
        raise MissingSetting("GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH is not set")

    def webhook_secret(self) -> bytes:
        """The webhook secret as bytes, ready for HMAC."""
        if self.github_webhook_secret is None or not self.github_webhook_secret.get_secret_value():
            raise MissingSetting("GITHUB_WEBHOOK_SECRET is not set")
        return self.github_webhook_secret.get_secret_value().encode()

    def require_web(self) -> None:
        """Refuse to serve webhooks without a secret and App credentials, naming what is missing."""
        missing = []
        if self.github_webhook_secret is None or not self.github_webhook_secret.get_secret_value():
            missing.append("GITHUB_WEBHOOK_SECRET")
        missing.extend(self._missing_app())
        if missing:
            raise MissingSetting("missing required settings: " + ", ".join(missing))

    def require_app(self) -> None:
        """Refuse to act on GitHub without App credentials, naming what is missing."""
        missing = self._missing_app()
        if missing:
            raise MissingSetting("missing required settings: " + ", ".join(missing))

    def _missing_app(self) -> list[str]:
        missing = []
        if self.github_app_id is None:
            missing.append("GITHUB_APP_ID")
        if self.github_private_key is None and self.github_private_key_path is None:
            missing.append("GITHUB_PRIVATE_KEY (or GITHUB_PRIVATE_KEY_PATH)")
        elif self.github_private_key_path is not None and self.github_private_key is None:
            if not self.github_private_key_path.is_file():
                path = self.github_private_key_path
                missing.append(f"GITHUB_PRIVATE_KEY_PATH (no file at {path})")
        return missing
