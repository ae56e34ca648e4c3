"""What the user reads when a run ends: one headline per outcome, and what they can do next."""

from __future__ import annotations

import re

from bot.agent.repo_prep import SetupOutcome
from bot.agent.results import AgentError

# Classified failure code → (what happened, what the user can do).
FAILURES: dict[str, tuple[str, str]] = {
    "llm_auth": (
        "The LLM provider rejected the bot's API key.",
        "A maintainer of this bot should check `LLM_API_KEY` (`openhands-bot doctor` tests it).",
    ),
    "llm_rate_limit": (
        "The LLM provider is rate-limiting the bot.",
        "Try again in a few minutes by mentioning @{handle} again.",
    ),
    "llm_unavailable": (
        "The LLM provider could not be reached.",
        "Try again later; if it keeps happening, check `LLM_BASE_URL` and the provider's status.",
    ),
    "llm_timeout": (
        "The LLM provider did not answer in time.",
        "Try again later by mentioning @{handle} again.",
    ),
    "llm_context_window": (
        "The conversation outgrew the model's context window.",
        "Ask for a smaller, more focused change.",
    ),
    "max_iterations": (
        "The agent used all its steps without finishing.",
        "Narrow the request, or raise `MAX_ITERATIONS` in the bot's settings.",
    ),
    "stuck": (
        "The agent was repeating itself without making progress.",
        "Rephrase the request with more detail about what you expect.",
    ),
    "timeout": (
        "The run took longer than its time limit.",
        "Ask for a smaller change, or raise `RUN_TIMEOUT_SECONDS`.",
    ),
    "cost_limit": (
        "The run reached its cost limit.",
        "Ask for a smaller change, or raise `MAX_COST_PER_RUN`.",
    ),
    "workspace": (
        "The bot could not start or use its workspace.",
        "A maintainer of this bot should check the workspace settings "
        "(`openhands-bot doctor`); then mention @{handle} again.",
    ),
    "setup": (
        "The repository's `.openhands/setup.sh` failed.",
        "Fix the setup script (its output is in the bot's run log), then mention @{handle} again.",
    ),
    "github": (
        "GitHub refused a request the bot needed.",
        "Check that the app is still installed on this repository, then try again.",
    ),
    "publish": (
        "The change could not be published.",
        "Mention @{handle} again to retry; the agent's summary is below.",
    ),
    "permission_lookup": (
        "The bot could not check your permission on this repository.",
        "Try again in a few minutes by mentioning @{handle} again.",
    ),
    "shutdown": (
        "The bot's worker shut down while this run was in progress.",
        "Mention @{handle} again to start it over.",
    ),
    "internal": (
        "The bot hit an unexpected error.",
        "Mention @{handle} again to retry; a maintainer of this bot can find the details "
        "in its logs under this run id.",
    ),
}


def failure(code: str, handle: str, detail: str = "") -> tuple[str, list[str]]:
    """Headline and detail lines for a failed run."""
    what, todo = FAILURES.get(code, FAILURES["internal"])
    lines = [f"**What you can do:** {todo.format(handle=handle)}"]
    if detail:
        lines.insert(0, f"Details: {detail[:500]}")
    return f"❌ {what}", lines


def from_agent_error(error: AgentError | None, handle: str) -> tuple[str, list[str]]:
    if error is None:
        return failure("internal", handle)
    return failure(error.code, handle, error.detail)


def stopped(by: str) -> tuple[str, list[str]]:
    who = (
        f"@{by}" if re.fullmatch(r"[A-Za-z0-9-]+(\[bot\])?", by) else by
    )  # a login, or "the run API"
    return f"⏹️ Stopped by {who}.", []


def stats(duration: float, cost: float, steps: int) -> str:
    minutes, seconds = divmod(int(duration), 60)
    took = f"{minutes}m {seconds}s" if minutes else f"{seconds}s"
    return f"<sub>{took} · ${cost:.2f} · {steps} steps</sub>"


SETUP_FAILED_NOTE = "⚠️ `.openhands/setup.sh` failed (exit {exit_code}); the agent worked anyway."
FORK_CONTEXT_NOTE = (
    "🔒 This pull request comes from a fork: its setup script, hooks and skills did not run; "
    "the base branch's were used."
)


def run_notes(
    setup: SetupOutcome | None, hooks_error: str | None, *, fork: bool = False
) -> list[str]:
    """What to know about the run that did not stop it: a fork's context not used, a failed setup
    script, invalid hooks."""
    notes = [FORK_CONTEXT_NOTE] if fork else []
    if setup is not None and setup.ran and not setup.ok:
        notes.append(SETUP_FAILED_NOTE.format(exit_code=setup.exit_code))
    if hooks_error:
        notes.append(f"⚠️ {hooks_error}")
    return notes


# A worker stopped mid-run (a deploy sends SIGTERM) and arq will run the job again.
RESUMING = "the bot's worker restarted (a deploy?); this run resumes shortly on another worker"
# Shown while a re-run works, and as a note on its final comment.
RESUMED = "restarted after a worker restart, resuming (try {tries})"
RESUMED_NOTE = "🔁 Restarted after a worker restart (try {tries}), from a clean checkout."
