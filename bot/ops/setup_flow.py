"""Register the GitHub App from `app-manifest.yml` through GitHub's manifest flow, as Probot does.

A local page posts the manifest to GitHub; GitHub creates the App and redirects back with a
one-time code, which we exchange for the App's id, private key and webhook secret and keep in
`.env` and the state directory. The page and the redirect both need a one-time setup token that
only the console shows (in the page's query, then in the manifest's redirect path), so whoever
else reaches the port cannot make the bot trust an App of theirs. Docs:
https://docs.github.com/en/apps/sharing-github-apps/registering-a-github-app-from-a-manifest
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import secrets
import sys
from typing import Any
from urllib.parse import urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.status import HTTP_303_SEE_OTHER

from bot.ops.app_manifest import (
    WEBHOOK_PATH,
    Registered,
    SetupError,
    SetupOptions,
    exchange_code,
    load_manifest,
    save_credentials,
    valid_url,
)

log = logging.getLogger(__name__)


CALLBACK_PATH = "/callback"  # GitHub's redirect comes back to CALLBACK_PATH/<setup token>
SAVE_PATH = "/save"  # POST SAVE_PATH/<setup token>: save again credentials that failed to save
TOKEN_PARAM = "setup_token"

# Every credential setting a registration replaces: the private key goes in one of the two.
BAD_STATE = (
    "This answer does not belong to this setup (its state does not match). "
    "Start again from the setup page."
)
NO_CODE = "GitHub's redirect carried no code. Start again from the setup page."
NO_TOKEN = (
    "This setup page opens only with the link printed in the bot's console "
    f"(it ends in ?{TOKEN_PARAM}=...). Open that link."
)
NOT_SAVED = (
    "GitHub created the App {slug} (id {app_id}), but its credentials could not be saved: "
    "{error}. They are kept in this process's memory only: fix the problem, then save again. "
    "If the bot stops first, the private key is lost: generate a new one at {settings_url} "
    "(Private keys, Generate a private key) and set a new webhook secret there."
)
SAVE_AGAIN_HINT = "To save again, press Save again on the setup page (or reload it)."
STOPPED_UNSAVED = (
    "setup stopped before the credentials of GitHub App {slug} (id {app_id}) were saved: its "
    "private key is lost. Generate a new one at {settings_url} (Private keys), or delete the App "
    "there and run setup again."
)
OPEN_LINK = (
    "Open {link} in a browser to register the GitHub App (only this link opens the setup page; "
    "Ctrl-C to give up)."
)


def setup_page_url(host: str, port: int, token: str) -> str:
    """The link the console shows: the page on this machine, with the one-time setup token."""
    shown = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host
    if ":" in shown:  # an IPv6 address
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/?{urlencode({TOKEN_PARAM: token})}"


def _console(text: str) -> None:
    """For the operator at the console, not the logs (which may be shipped elsewhere)."""
    print(text, file=sys.stderr, flush=True)  # noqa: T201


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status,
        # The token is in this page's URL: only the origin goes to GitHub, and nothing is cached.
        headers={"Referrer-Policy": "strict-origin-when-cross-origin", "Cache-Control": "no-store"},
    )


def _refused() -> HTMLResponse:
    return _page("Setup page", f"<p>{html.escape(NO_TOKEN)}</p>", 403)


class SetupFlow:
    """The local setup page (`/?setup_token=...`), GitHub's redirect target
    (`/callback/<token>`) and, when saving failed, another try (`POST /save/<token>`)."""

    def __init__(self, options: SetupOptions) -> None:
        self.options = options
        self.state = secrets.token_urlsafe(24)
        self.token = secrets.token_urlsafe(24)  # only the console shows it
        self.result: asyncio.Future[Registered] | None = None
        self._exchanging = asyncio.Lock()
        self._unsaved: Any = None  # the exchanged App while its credentials could not be saved
        self.app = Starlette(
            routes=[
                Route("/", self.start_page),
                Route(CALLBACK_PATH, self.callback),  # no token: refused
                Route(f"{CALLBACK_PATH}/{{token}}", self.callback),
                Route(f"{SAVE_PATH}/{{token}}", self.save_again, methods=["POST"]),
            ]
        )

    def _token_ok(self, given: str) -> bool:
        return secrets.compare_digest(given.encode(), self.token.encode())

    def _done(self) -> asyncio.Future[Registered]:
        if self.result is None:
            self.result = asyncio.get_running_loop().create_future()
        return self.result

    async def wait(self) -> Registered:
        return await self._done()

    async def start_page(self, request: Request) -> Response:
        """The form that posts the manifest to GitHub, submitted as soon as it loads."""
        if not self._token_ok(request.query_params.get(TOKEN_PARAM, "")):
            log.warning("setup page refused: no or wrong setup token")
            return _refused()
        webhook_url = self.options.webhook_url or request.query_params.get("webhook_url", "")
        if not valid_url(webhook_url):
            return _page(
                "Register the OpenHands GitHub App",
                "<p>Where can GitHub reach this bot? Enter its public webhook URL (it ends in "
                f"<code>{WEBHOOK_PATH}</code>), or start again with <code>--webhook-url</code> or "
                "<code>PUBLIC_URL</code> set.</p>"
                '<form method="get" action="/">'
                f'<input type="hidden" name="{TOKEN_PARAM}" value="{html.escape(self.token)}">'
                '<input name="webhook_url" size="60" '
                f'placeholder="https://bot.example.com{WEBHOOK_PATH}"> '
                "<button>Continue</button></form>",
            )
        # GitHub sends the browser back to exactly this URL (plus ?code=&state=).
        redirect_url = f"{str(request.base_url).rstrip('/')}{CALLBACK_PATH}/{self.token}"
        manifest = load_manifest(
            self.options.manifest_path,
            webhook_url=webhook_url,
            redirect_url=redirect_url,
            name=self.options.app_name,
        )
        action = self.options.host.new_app_url(self.state, self.options.org)
        return _page(
            "Register the OpenHands GitHub App",
            f'<form id="register" method="post" action="{html.escape(action)}">'
            f'<input type="hidden" name="manifest" value="{html.escape(json.dumps(manifest))}">'
            f"<p>Sending you to GitHub to create the App (webhook: "
            f"<code>{html.escape(webhook_url)}</code>)...</p>"
            "<button>Create the GitHub App</button></form>"
            "<script>document.getElementById('register').submit()</script>",
        )

    async def callback(self, request: Request) -> Response:
        """GitHub's redirect after the App was created: `/callback/<token>?code=...&state=...`."""
        if not self._token_ok(request.path_params.get("token", "")):
            log.warning("setup callback refused: no or wrong setup token")
            return _refused()
        state = request.query_params.get("state", "")
        if not secrets.compare_digest(state.encode(), self.state.encode()):
            log.warning("setup callback refused: state does not match")
            return _page("Setup refused", f"<p>{html.escape(BAD_STATE)}</p>", 400)
        code = request.query_params.get("code", "")
        if not code:
            return _page("Setup refused", f"<p>{html.escape(NO_CODE)}</p>", 400)
        done = self._done()
        async with self._exchanging:
            if done.done():  # a second redirect for the same setup: the App exists already
                return RedirectResponse(done.result().install_url, status_code=302)
            if self._unsaved is None:  # else the code was exchanged already: save again
                try:
                    self._unsaved = await exchange_code(self.options.host.api_url, code)
                except SetupError as exc:
                    log.error("setup failed: %s", exc)
                    return _page("Setup failed", f"<p>{html.escape(str(exc))}</p>", 502)
            return self._save(done, status=302)

    async def save_again(self, request: Request) -> Response:
        """The "Save again" button of the page shown when saving failed."""
        if not self._token_ok(request.path_params.get("token", "")):
            log.warning("setup save refused: no or wrong setup token")
            return _refused()
        done = self._done()
        async with self._exchanging:
            if done.done():
                return RedirectResponse(done.result().install_url, status_code=HTTP_303_SEE_OTHER)
            if self._unsaved is None:
                return _page("Nothing to save", "<p>Start from the setup page.</p>", 409)
            return self._save(done, status=HTTP_303_SEE_OTHER)

    def _save(self, done: asyncio.Future[Registered], *, status: int) -> Response:
        """Save the exchanged credentials; on failure keep them and say how to go on."""
        app = self._unsaved
        try:
            registered = save_credentials(app, self.options)
        except (OSError, ValueError) as exc:  # e.g. a read-only directory: the key is not lost
            return self._not_saved(exc)
        self._unsaved = None
        done.set_result(registered)
        log.info("registered GitHub App", extra={"app_id": registered.app_id})
        return RedirectResponse(registered.install_url, status_code=status)

    def unsaved_app(self) -> tuple[int, str, str] | None:
        """Id, slug and settings page of an App created but not saved (nothing secret)."""
        app = self._unsaved
        if app is None:
            return None
        slug = app.slug if isinstance(app.slug, str) and app.slug else "?"
        return app.id, slug, self.options.host.app_settings_url(slug, self.options.org)

    def _not_saved(self, exc: Exception) -> Response:
        unsaved = self.unsaved_app()
        assert unsaved is not None
        app_id, slug, settings_url = unsaved
        message = NOT_SAVED.format(
            slug=slug,
            app_id=app_id,
            error=f"{type(exc).__name__}: {exc}",  # paths and errno, never a credential
            settings_url=settings_url,
        )
        log.error("setup could not save the App's credentials", extra={"app_id": app_id})
        _console(f"openhands-bot: {message}\n{SAVE_AGAIN_HINT}")
        return _page(
            "The App was created, but its credentials are not saved yet",
            f"<p>{html.escape(message)}</p>"
            f'<form method="post" action="{SAVE_PATH}/{html.escape(self.token)}">'
            "<button>Save again</button></form>",
            503,
        )


async def run_setup(options: SetupOptions, host: str, port: int) -> Registered:
    """Serve the setup page until the App is registered; Ctrl-C gives up."""
    if not options.manifest_path.is_file():
        raise SetupError(f"the App manifest is missing: no file at {options.manifest_path}")
    flow = SetupFlow(options)
    done = flow._done()
    print(  # noqa: T201 - the operator's link, on the console only
        OPEN_LINK.format(link=setup_page_url(host, port, flow.token)), flush=True
    )
    server = uvicorn.Server(
        uvicorn.Config(
            flow.app, host=host, port=port, log_config=None, access_log=False, lifespan="off"
        )
    )
    serving = asyncio.create_task(server.serve(), name="setup-page")
    waiting: set[asyncio.Future[Any]] = {serving, done}
    try:
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    finally:  # done, Ctrl-C or cancelled: the page stops
        server.should_exit = True
        await asyncio.wait({serving})
        unsaved = None if done.done() else flow.unsaved_app()
        if unsaved:
            stopped = STOPPED_UNSAVED.format(
                slug=unsaved[1], app_id=unsaved[0], settings_url=unsaved[2]
            )
            _console(f"openhands-bot: {stopped}")
    await serving  # its error, if the page could not be served (e.g. the port is taken)
    if not done.done():
        raise SetupError("setup stopped before GitHub created the App")
    return done.result()
