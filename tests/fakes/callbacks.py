"""A completion-callback receiver on loopback, standing in for the openhands-automation service:
it records each POST and answers with scripted statuses (then 200), rejecting unknown fields
with 422 as that service does."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from tests.servers import ServerThread

FIELDS = {"status", "run_id", "conversation_id", "cost", "error"}


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    answered: int


class CallbackReceiver:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._statuses: list[int] = []
        self._received: list[Received] = []
        self._server: ServerThread | None = None

    def answer(self, *statuses: int) -> None:
        """Answer the next POSTs with these statuses, in order; 200 after that."""
        with self._lock:
            self._statuses.extend(statuses)

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    @contextmanager
    def serving(self) -> Iterator[CallbackReceiver]:
        with ServerThread(self) as server:
            self._server = server
            try:
                yield self
            finally:
                self._server = None

    def url(self, path: str = "/callback") -> str:
        if self._server is None:
            raise RuntimeError("not serving")
        return self._server.url + path

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
