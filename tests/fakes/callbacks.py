"""A completion-callback receiver on loopback, standing in for the openhands-automation service:
it records each POST and answers with scripted statuses (then 200), rejecting unknown fields
with 422 as that service does."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from tests.servers import FakeServer

FIELDS = {"status", "run_id", "conversation_id", "cost", "error"}


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    answered: int


class CallbackReceiver(FakeServer):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._statuses: list[int] = []
        self._received: list[Received] = []

    def answer(self, *statuses: int) -> None:
        """Answer the next POSTs with these statuses, in order; 200 after that."""
        with self._lock:
            self._statuses.extend(statuses)

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def url(self, path: str = "/callback") -> str:  # type: ignore[override]
        """Where to send callbacks: a path on the server (a method here, unlike other fakes)."""
        return super().url + path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        with self._lock:
            status = self._statuses.pop(0) if self._statuses else 200
            if status == 200 and (
                request.method != "POST" or not isinstance(body, dict) or set(body) - FIELDS
            ):
                status = 422
            self._received.append(Received(request.url.path, dict(request.headers), body, status))
        await JSONResponse({"ok": status < 400}, status_code=status)(scope, receive, send)
