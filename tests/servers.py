"""Run an ASGI app on a real loopback port in a background thread, so tests talk real HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Literal, Self

import httpx
import uvicorn
from starlette.types import ASGIApp


class ServerThread:
    """Serve `app` with uvicorn on 127.0.0.1 and a free port until `stop()`.

    Usage::

        with ServerThread(app, health_path="/healthz") as server:
            httpx.get(f"{server.url}/healthz")

    Port 0 lets the kernel pick a free port; the real one is read back once uvicorn listens.
    With `health_path`, `start()` also waits until that path answers below 500. `lifespan="on"`
    runs the app's startup and shutdown events (off by default: fakes have none).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        health_path: str | None = None,
        lifespan: Literal["on", "off", "auto"] = "off",
        startup_timeout: float = 10.0,
    ) -> None:
        self._config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            loop="asyncio",
            ws="none",  # no websockets: avoids their deprecation warnings under -W error
            lifespan=lifespan,  # "on" runs the app's startup/shutdown in the server thread
            log_config=None,  # leave the test's logging configuration alone
            log_level="warning",
            access_log=False,
        )
        self._server = uvicorn.Server(self._config)
        self._thread = threading.Thread(target=self._server.run, name="uvicorn-test", daemon=True)
        self._health_path = health_path
        self._startup_timeout = startup_timeout
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server is not running")
        return self._port

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:54321``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("uvicorn exited during startup")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("uvicorn did not start in time")
            time.sleep(0.01)
        self._port = self._server.servers[0].sockets[0].getsockname()[1]
        if self._health_path is not None:
            self._wait_healthy(self._health_path, deadline)
        return self

    def _wait_healthy(self, path: str, deadline: float) -> None:
        while True:
            try:
                if httpx.get(self.url + path, timeout=1.0).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{path} did not answer in time")
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)
        self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class FakeServer:
    """A fake served over loopback HTTP for the duration of `with fake.serving():`.

    The fake is the ASGI app it serves (it defines ``async __call__(scope, receive, send)``)
    unless it overrides `_asgi_app`. The `_serving_*` hooks run around the server's life: after
    it started, before it stops (to release requests still waiting), and after it stopped.
    """

    _server: ServerThread | None = None

    @contextmanager
    def serving(self) -> Iterator[Self]:
        """Serve on a loopback port for the duration of the block; `url` is set inside it."""
        server = ServerThread(self._asgi_app()).start()
        self._server = server
        try:
            self._serving_started()
            yield self
        finally:
            self._server = None
            try:
                self._serving_stopping()
            finally:
                server.stop()
                self._serving_stopped()

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:54321``."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not serving; use `with fake.serving():`")
        return self._server.url

    def _asgi_app(self) -> ASGIApp:
        if not callable(self):
            raise TypeError(f"{type(self).__name__} is no ASGI app: override _asgi_app")
        return self

    def _serving_started(self) -> None:
        """Called once the server listens (and `url` answers), before the block runs."""

    def _serving_stopping(self) -> None:
        """Called when the block ends, while the server still runs."""

    def _serving_stopped(self) -> None:
        """Called after the server stopped."""
