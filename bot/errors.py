"""Errors sorted by what happens next: transient ones are retried, permanent ones reported.

Every exception the bot raises on purpose is here, each carrying the failure `code` that the run
record, the callback and `github.messages.FAILURES` are keyed on:

BotError                    code        what happens next
├── TransientError          transient   retry the job with back-off (`retry_after` when known)
│   ├── QueueUnavailable    queue       the web answers 503; GitHub redelivers
│   └── CallbackUnavailable callback    the callback job runs again with back-off
└── PermanentError          permanent   no retry: a clear comment, a FAILED record and callback
    ├── CallbackRejected    callback    the receiver answered 4xx: recorded, not retried
    ├── PublishError        publish     the change could not be published; the message says why
    │   └── BranchMoved     publish     the PR's branch moved meanwhile: nothing is forced
    ├── UnsafeDeployment    permanent   the worker refuses to start: the agent could reach Redis
    ├── WorkspaceError      workspace   the agent's workspace could not start or be prepared
    ├── AgentServerError    workspace   the agent-server refused or could not be reached
    ├── GatewayError        workspace   the LLM gateway could not start (its address is taken)
    ├── CostBudgetReached   cost_limit  the run's LLM spend reached MAX_COST_PER_RUN
    ├── SetupFailed         setup       `.openhands/setup.sh` failed and that is fatal
    ├── InvalidConfig       config      `.openhands/config.yml` is invalid: reported on GitHub
    ├── InvalidHooks        hooks       `.openhands/hooks.json` is invalid: a note, not fatal
    ├── RefusedJob          refused     a replayed job, or one GitHub contradicts: logged, unrun
    └── InvalidReview       invalid_review  the agent's review JSON is unusable

GitHub client errors are sorted into this tree by `bot.github.failures.classify`.
"""

from __future__ import annotations

from typing import ClassVar


class BotError(Exception):
    """Base of the bot's own errors; `user_message` is safe to show on GitHub."""

    code: ClassVar[str] = "internal"

    def __init__(self, user_message: str = "", *, code: str | None = None) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        if code is not None:
            self.code = code  # type: ignore[misc]  # an instance may be more specific


class TransientError(BotError):
    """Worth trying again later; `retry_after` seconds when the cause said how long."""

    code = "transient"

    def __init__(
        self, user_message: str = "", *, code: str | None = None, retry_after: float = 0
    ) -> None:
        super().__init__(user_message, code=code)
        self.retry_after = retry_after


class PermanentError(BotError):
    """Retrying will not help."""

    code = "permanent"


class QueueUnavailable(TransientError):
    """Redis did not take the job: the delivery is answered 503 so GitHub sends it again."""

    code = "queue"


class CallbackUnavailable(TransientError):
    """A network error or 5xx from the callback URL: worth another try."""

    code = "callback"


class CallbackRejected(PermanentError):
    """The callback URL answered 4xx: sending the same body again cannot help."""

    code = "callback"


class PublishError(PermanentError):
    """The change could not be published; the message is for the user."""

    code = "publish"


class BranchMoved(PublishError):
    """The pull request's branch moved while the agent worked; we do not force-push."""


class UnsafeDeployment(PermanentError):
    """The configuration would let the agent reach what it must not: the worker refuses to start."""


class WorkspaceError(PermanentError):
    """The workspace could not be started, reached or prepared; the message says which."""

    code = "workspace"


class AgentServerError(PermanentError):
    """The agent-server could not be reached or refused a request."""

    code = "workspace"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GatewayError(PermanentError):
    """The LLM gateway could not listen where settings say."""

    code = "workspace"


class CostBudgetReached(PermanentError):
    """The run has spent its cost budget: the gateway refuses its further LLM calls."""

    code = "cost_limit"


class SetupFailed(PermanentError):
    """`.openhands/setup.sh` failed and settings make that fatal."""

    code = "setup"


class InvalidConfig(PermanentError):
    """The file is not a valid configuration; `errors` lists each problem, located."""

    code = "config"

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class InvalidHooks(PermanentError):
    """`.openhands/hooks.json` does not match the agent-server's schema."""

    code = "hooks"


class RefusedJob(PermanentError):
    """A validly signed job that must not run: a copy of one that already ran under another job
    id, or one whose installation or sender GitHub contradicts. Logged; nothing runs."""

    code = "refused"


class InvalidReview(PermanentError):
    """The agent's review is not the JSON we asked for."""

    code = "invalid_review"


def backoff(tries: int, *, base: float = 1.0, retry_after: float = 0.0) -> float:
    """Seconds before try `tries + 1`: doubling from `base`, never sooner than the cause asked."""
    return max(retry_after, base * 2.0 ** (tries - 1))
