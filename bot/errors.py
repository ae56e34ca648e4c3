"""Errors sorted by what happens next: transient ones are retried, permanent ones reported.

BotError
├── TransientError   retry the job with back-off (GitHub 5xx, rate limit, network, Redis)
└── PermanentError   do not retry: tell the user clearly what went wrong and what to do
"""

from __future__ import annotations

from githubkit.exception import GitHubException, RateLimitExceeded, RequestError, RequestFailed


class BotError(Exception):
    """Base of the bot's own errors; `user_message` is safe to show on GitHub."""

    def __init__(self, user_message: str, *, code: str = "error") -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.code = code


class TransientError(BotError):
    """Worth trying again later; `retry_after` seconds when the cause said how long."""

    def __init__(
        self, user_message: str, *, code: str = "transient", retry_after: float = 0
    ) -> None:
        super().__init__(user_message, code=code)
        self.retry_after = retry_after


class PermanentError(BotError):
    """Retrying will not help."""


def classify_github(exc: GitHubException, doing: str) -> BotError:
    """Sort a GitHub client error by what happens next."""
    if isinstance(exc, RateLimitExceeded):
        return TransientError(
            f"GitHub rate limit reached while {doing}",
            code="github_rate_limit",
            retry_after=exc.retry_after.total_seconds(),
        )
    if isinstance(exc, RequestFailed):
        status = exc.response.status_code
        if status >= 500:
            return TransientError(
                f"GitHub answered {status} while {doing}", code="github_unavailable"
            )
        return PermanentError(f"GitHub refused {doing} ({status})", code=f"github_{status}")
    if isinstance(exc, RequestError):
        return TransientError(f"could not reach GitHub while {doing}", code="github_unreachable")
    return PermanentError(f"GitHub client error while {doing}", code="github_error")
