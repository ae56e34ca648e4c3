"""What a route handler gets and gives: the recorded request, its reply, GitHub-style errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DOCS = "https://docs.github.com/rest"
# Route patterns' parts: `_Call.full_name` reads the owner and repo they capture.
_OWNER = r"(?P<owner>[^/]+)"
_REPO = r"(?P<repo>[^/]+)"
_R = f"/repos/{_OWNER}/{_REPO}"


@dataclass
class RecordedRequest:
    """One request the fake received, and the status it answered."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    status: int = 0
    # When it arrived and when its answer was made, on one counter of such events: two requests
    # were in flight together exactly when each arrived before the other's answer.
    arrived: int = 0
    answered: int = 0
    at: float = 0.0  # time.time() at arrival, for benchmarks' phases (tests assert no times)

    def overlaps(self, other: RecordedRequest) -> bool:
        return self.arrived < other.answered and other.arrived < self.answered


@dataclass
class _Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """Raised by a handler to answer with a GitHub-style error body."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(f"{status} {message}")
        self.reply = _Reply(
            status, {"message": message, "documentation_url": DOCS, **extra, "status": str(status)}
        )


def _not_found() -> ApiError:
    return ApiError(404, "Not Found")


def _validation_failed(*errors: dict[str, Any]) -> ApiError:
    return ApiError(422, "Validation Failed", errors=list(errors))


@dataclass
class _Call:
    """What a handler gets: the recorded request, the URL params and the fake's public base URL."""

    request: RecordedRequest
    params: dict[str, str]
    api_base: str

    @property
    def body(self) -> dict[str, Any]:
        data = self.request.json
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ApiError(400, "Problems parsing JSON")
        return data

    @property
    def full_name(self) -> str:
        return f"{self.params['owner']}/{self.params['repo']}"

    def int_param(self, name: str) -> int:
        return int(self.params[name])


Handler = Callable[[_Call], _Reply]
