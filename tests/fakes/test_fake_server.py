"""Checks that FakeServer serves a fake only inside `serving()` and runs its hooks in order."""

from __future__ import annotations

import httpx
import pytest
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from tests.servers import FakeServer


class _Echo(FakeServer):
    def __init__(self) -> None:
        self.events: list[str] = []
        self.served_url = ""  # kept by the test, as `url` is gone once the block ends

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await PlainTextResponse(scope["path"])(scope, receive, send)

    def _serving_started(self) -> None:
        self.events.append(f"started {httpx.get(self.url + '/up').text}")

    def _serving_stopping(self) -> None:
        # The server still answers here: this is where fakes release waiting requests.
        self.events.append(f"stopping {httpx.get(self.served_url + '/still').text}")

    def _serving_stopped(self) -> None:
        self.events.append("stopped")


def test_url_exists_only_while_serving_and_hooks_run_in_order() -> None:
    fake = _Echo()
    with pytest.raises(RuntimeError, match="_Echo is not serving"):
        _ = fake.url
    with fake.serving() as served:
        assert served is fake
        fake.served_url = fake.url
        assert httpx.get(fake.url + "/hello").text == "/hello"
    assert fake.events == ["started /up", "stopping /still", "stopped"]
    with pytest.raises(RuntimeError, match="not serving"):
        _ = fake.url
    with pytest.raises(httpx.TransportError):
        httpx.get(fake.served_url + "/gone", timeout=2)


def test_hooks_run_and_the_server_stops_when_the_block_raises() -> None:
    fake = _Echo()

    def serve_and_fail() -> None:
        with fake.serving():
            fake.served_url = fake.url
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        serve_and_fail()
    assert fake.events[1:] == ["stopping /still", "stopped"]
    with pytest.raises(httpx.TransportError):
        httpx.get(fake.served_url + "/gone", timeout=2)
