"""GitHub client errors sorted into the bot's error tree (`bot.errors`), and told in a line."""

from __future__ import annotations

from githubkit.exception import GitHubException, RateLimitExceeded, RequestError, RequestFailed

from bot.errors import BotError, PermanentError, TransientError


def classify(exc: GitHubException, doing: str) -> BotError:
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


def describe(exc: GitHubException | BotError) -> str:
    """One line for the user: our own message, or what GitHub answered."""
    if isinstance(exc, BotError):
        return exc.user_message or str(exc)
    if isinstance(exc, RequestFailed):
        return f"GitHub answered {exc.response.status_code}"
    return type(exc).__name__
