"""Every Redis key the bot writes, in one place: the schema the web and worker processes share."""

from __future__ import annotations

NS = "openhands-bot:"

# --- intake and queue
DELIVERY_PREFIX = NS + "delivery:"  # delivery id → seen (a redelivery is a no-op for days)
# A signed job's MAC → the job id it first ran as: a copy queued under another id is refused.
CONSUMED_JOB_PREFIX = NS + "consumed-job:"
QUEUE_WAKE = NS + "queue-wake"  # pub/sub channel: a job was queued or moved up, look now

# --- installations
REPO_INSTALLATION = NS + "repo-installation"  # hash: "owner/name" → installation id
INSTALLATION_REPOS_PREFIX = NS + "installation-repos:"  # set per installation: its repos

# --- run records
RUN_PREFIX = NS + "run:"  # hash per run
RUN_LOG_PREFIX = NS + "run-log:"  # list per run: its phases and log lines, oldest first
RUN_INDEX = NS + "runs"  # sorted set: run id by creation time
STOP_PREFIX = NS + "stop:"  # run id → who asked to stop it
RUN_TRY_PREFIX = NS + "run-try:"  # run id → {try, base}: the conversation a later try continues

# --- turns (one run per thread, a few per installation; the others wait in line)
TURN_HOLDERS_PREFIX = NS + "turn-holders:"  # sorted set per turnstile: run id → hold expiry (ms)
TURN_LINE_PREFIX = NS + "turn-line:"  # sorted set per turnstile: waiting run id → arrival (ms)
TURN_SEEN_PREFIX = NS + "turn-seen:"  # sorted set per turnstile: waiting run id → last seen (ms)
TURN_JOBS_PREFIX = NS + "turn-jobs:"  # hash per turnstile: waiting run id → its arq job id
WAITING_PREFIX = NS + "waiting:"  # run id → what it waits for, as last told

# --- threads (what a follow-up on an issue or pull request continues from)
ACTIVE_PREFIX = NS + "active:"  # hash per thread: run_id, job_id of the run in progress
SUMMARY_PREFIX = NS + "thread-summary:"  # thread → the last run's summary, for a follow-up
THREAD_PREFIX = NS + "thread-conversation:"  # thread → the conversation a follow-up continues

# --- the LLM gateway (one credential per run try; the usage is the run's, across its tries)
GATEWAY_CREDENTIAL_PREFIX = NS + "llm-credential:"  # sha256 of a token → hash {run_id, budget}
GATEWAY_USAGE_PREFIX = NS + "llm-usage:"  # run id → hash {cost, prompt_tokens, ...}

# --- GitHub
WRITE_LOG_PREFIX = NS + "write-log:"  # sorted set per installation: its recent writes (ms)
WRITE_LOCK_PREFIX = NS + "write-lock:"  # installation → the token of the write in flight
WRITE_WAKE_PREFIX = NS + "write-wake:"  # list per installation: a released lock wakes a waiter
WRITE_BLOCK_PREFIX = NS + "write-block:"  # installation → no writes until then (ms, Redis clock)
PERMISSION_PREFIX = NS + "permission:"  # repo:user → their permission, cached briefly
TRACKING_PREFIX = NS + "tracking:"  # run id → its tracking comment's id
REVIEWED_PREFIX = NS + "reviewed:"  # repo#pr:sha → reviewed once
CHECK_PREFIX = NS + "check-run:"  # run id → the id of its review check run
REVIEW_STATE_PREFIX = NS + "review-state:"  # hash per PR thread: last reviewed head, summary
FINDINGS_PREFIX = NS + "findings:"  # hash per PR thread: fingerprint → the finding (JSON)
REVIEW_ACTIVE_PREFIX = NS + "review-active:"  # hash per PR thread: the review running on it
FIX_TARGETS_PREFIX = NS + "fix-targets:"  # hash per fix run: F1… → its review thread

# --- repository config and automations
CONFIG_PREFIX = NS + "repo-config:"  # repo → {"sha", "config"} of the last valid file
CONFIG_REPOS = NS + "config-repos"  # set: repos whose config declares automations
CONFIG_REPORTED_PREFIX = NS + "config-reported:"  # repo:blob sha → reported once
CONFIG_ISSUE_PREFIX = NS + "config-issue:"  # repo → the open report issue's number
CONFIG_CHECKED_PREFIX = NS + "config-checked:"  # repo → when its config was last read
AUTOMATION_LAST_PREFIX = NS + "automation-last:"  # repo:name → the last slot claimed (epoch)

# --- metrics
METRICS_PREFIX = NS + "metrics:"


def thread(repo: str, number: int) -> str:
    """The id of an issue or pull request thread, as the thread keys use it."""
    return f"{repo.lower()}#{number}"


def thread_line(thread_id: str) -> str:
    """The turnstile of a thread (`thread(...)`): one run at a time."""
    return f"thread:{thread_id}"


def installation_line(installation_id: int) -> str:
    """The turnstile of an installation: MAX_RUNS_PER_INSTALLATION runs at a time."""
    return f"installation:{installation_id}"
