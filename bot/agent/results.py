"""What an agent run gives back, as plain data: its result, error, progress and changed files
(kept apart from the conversation driver, so readers of a result load no WebSocket client)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

Status = Literal["finished", "error", "stuck", "timeout", "cost_limit", "cancelled"]

# ConversationErrorEvent codes → what the user can do about them.
ERROR_CODES: dict[str, str] = {
    "LLMAuthenticationError": "llm_auth",
    "LLMRateLimitError": "llm_rate_limit",
    "LLMServiceUnavailableError": "llm_unavailable",
    "LLMTimeoutError": "llm_timeout",
    "LLMBadRequestError": "llm_bad_request",
    "LLMContextWindowExceedError": "llm_context_window",
    "MaxIterationsReached": "max_iterations",
}


@dataclass(frozen=True, slots=True)
class AgentError:
    code: str  # llm_auth, llm_rate_limit, llm_unavailable, llm_timeout, max_iterations, stuck, ...
    detail: str


@dataclass(slots=True)
class Progress:
    """What the caller's progress callback sees."""

    steps: int = 0
    last_action: str = ""
    cost: float = 0.0
    status: str = "starting"


@dataclass(frozen=True, slots=True)
class ChangedFile:
    path: str
    status: Literal["added", "modified", "deleted"]
    # None for deletions and refused files; read once into one buffer, never copied whole
    content: bytes | bytearray | None
    mode: str = "100644"  # git's: 100644, 100755 (executable), 120000 (symlink: its target)
    size: int = 0
    refused: str | None = None  # why it cannot be published (too big, a link leaving the repo)


@dataclass(frozen=True, slots=True)
class Patch:
    """The change as a git patch: `size` bytes in all, of which `text` may be only the head."""

    text: str
    size: int


@dataclass(slots=True)
class AgentResult:
    conversation_id: str
    status: Status
    final_response: str = ""
    error: AgentError | None = None
    cost: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    steps: int = 0
    duration: float = 0.0
    changes: list[ChangedFile] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.status == "finished"


ProgressCallback = Callable[[Progress], Awaitable[None]]
