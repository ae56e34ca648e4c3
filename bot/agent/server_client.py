"""A thin typed client for the OpenHands agent-server's REST API (see shared agent-server facts).

Every call has a bounded timeout; any transport failure or unexpected status becomes
`AgentServerError`, so a dead or wedged workspace fails a run clearly instead of hanging it.
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass
from typing import Any

import httpx

from bot.errors import AgentServerError

API_KEY_HEADER = "X-Session-API-Key"


@dataclass(frozen=True, slots=True)
class BashResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@functools.cache
def _tls() -> ssl.SSLContext:
    """The verifying TLS context httpx would make for each client, made once: making one reads
    the CA store (tens of milliseconds of a run's start, for a client per run)."""
    return httpx.create_ssl_context(trust_env=False)


class AgentServerClient:
    """REST calls against one agent-server, authenticated with its session API key."""

    def __init__(self, base_url: str, api_key: str | None, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        headers = {API_KEY_HEADER: api_key} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            trust_env=False,
            verify=_tls(),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AgentServerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _request(
        self, method: str, path: str, *, expect: tuple[int, ...] = (200,), **kwargs: Any
    ) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise AgentServerError(f"agent-server timed out on {method} {path}") from exc
        except httpx.HTTPError as exc:
            raise AgentServerError(f"agent-server unreachable ({type(exc).__name__})") from exc
        if response.status_code not in expect:
            detail = response.text[:300]
            raise AgentServerError(
                f"agent-server answered {response.status_code} to {method} {path}: {detail}",
                status=response.status_code,
            )
        return response

    async def healthy(self) -> bool:
        try:
            response = await self._http.get("/health", timeout=3)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def bash(
        self, command: str, *, cwd: str | None = None, limit_seconds: int = 300
    ) -> BashResult:
        """Run a shell command in the workspace and wait for it (exit -1 past the limit)."""
        body: dict[str, Any] = {"command": command, "timeout": limit_seconds}
        if cwd is not None:
            body["cwd"] = cwd
        response = await self._request(
            "POST", "/api/bash/execute_bash_command", json=body, timeout=limit_seconds + 30
        )
        data = response.json()
        code = data.get("exit_code")
        return BashResult(
            exit_code=-1 if code is None else int(code),
            stdout=data.get("stdout") or "",
            stderr=data.get("stderr") or "",
        )

    async def upload(self, path: str, content: bytes) -> None:
        """Write a file in the workspace (absolute path); its content never enters an event."""
        await self._request(
            "POST",
            "/api/file/upload",
            params={"path": path},
            files={"file": ("upload", content, "application/octet-stream")},
        )

    async def download(self, path: str) -> bytes:
        response = await self._request("GET", "/api/file/download", params={"path": path})
        return response.content

    async def download_exact(self, path: str, size: int) -> bytearray:
        """A file of known size, streamed into one buffer (a big file is in memory once)."""
        content = bytearray(size)
        view = memoryview(content)
        got = 0
        try:
            async with self._http.stream(
                "GET", "/api/file/download", params={"path": path}, timeout=300
            ) as response:
                if response.status_code != 200:
                    raise AgentServerError(
                        f"agent-server answered {response.status_code} to a download",
                        status=response.status_code,
                    )
                async for chunk in response.aiter_bytes(1 << 20):
                    if got + len(chunk) > size:
                        raise AgentServerError(f"{path} grew while it was read")
                    view[got : got + len(chunk)] = chunk
                    got += len(chunk)
        except httpx.HTTPError as exc:
            raise AgentServerError(f"agent-server download failed ({type(exc).__name__})") from exc
        finally:
            view.release()
        if got != size:
            raise AgentServerError(f"{path} changed while it was read")
        return content

    async def create_conversation(self, request: dict[str, Any]) -> dict[str, Any]:
        """Create (201) or, for a known id, return (200) the conversation: a retry-safe create."""
        response = await self._request(
            "POST", "/api/conversations", json=request, expect=(200, 201), timeout=60
        )
        info: dict[str, Any] = response.json()
        return info

    async def conversation(self, conversation_id: str) -> dict[str, Any]:
        response = await self._request("GET", f"/api/conversations/{conversation_id}")
        info: dict[str, Any] = response.json()
        return info

    async def final_response(self, conversation_id: str) -> str:
        response = await self._request(
            "GET", f"/api/conversations/{conversation_id}/agent_final_response"
        )
        return str(response.json().get("response") or "")

    async def send_message(self, conversation_id: str, text: str, *, run: bool = True) -> None:
        await self._request(
            "POST",
            f"/api/conversations/{conversation_id}/events",
            json={"role": "user", "content": [{"type": "text", "text": text}], "run": run},
        )

    async def switch_llm(self, conversation_id: str, llm: dict[str, Any]) -> None:
        """Give a kept conversation a new `llm` block (a follow-up's own gateway credential)."""
        await self._request(
            "POST", f"/api/conversations/{conversation_id}/switch_llm", json={"llm": llm}
        )

    async def interrupt(self, conversation_id: str) -> None:
        await self._request("POST", f"/api/conversations/{conversation_id}/interrupt")

    async def delete_conversation(self, conversation_id: str) -> None:
        await self._request("DELETE", f"/api/conversations/{conversation_id}", expect=(200, 404))

    async def events(
        self, conversation_id: str, *, page_id: str | None = None, limit: int = 100
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of events in timestamp order, and the id that starts the next page."""
        params: dict[str, Any] = {"limit": limit, "sort_order": "TIMESTAMP"}
        if page_id:
            params["page_id"] = page_id
        response = await self._request(
            "GET", f"/api/conversations/{conversation_id}/events/search", params=params
        )
        data = response.json()
        return list(data.get("items") or []), data.get("next_page_id")

    async def all_events(self, conversation_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page: str | None = None
        while True:
            batch, page = await self.events(conversation_id, page_id=page)
            items.extend(batch)
            if not page:
                return items

    def socket_url(self, conversation_id: str) -> str:
        base = self.base_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        return f"{base}/sockets/events/{conversation_id}"
