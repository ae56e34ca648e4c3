"""Register the GitHub App from `app-manifest.yml` through GitHub's manifest flow, as Probot does.

A local page posts the manifest to GitHub; GitHub creates the App and redirects back with a
one-time code, which we exchange for the App's id, private key and webhook secret and keep in
`.env` and the state directory. Docs:
https://docs.github.com/en/apps/sharing-github-apps/registering-a-github-app-from-a-manifest
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import uvicorn
import yaml
from githubkit import GitHub
from githubkit.exception import RequestError, RequestFailed, RequestTimeout
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from bot.env_file import update_env_file, write_secret_file

log = logging.getLogger("bot.setup")

# The checkout's copy, else the one the wheel carries inside the package (see pyproject.toml).
MANIFEST_PATH = next(
    (
        path
        for path in (
            Path(__file__).resolve().parents[1] / "app-manifest.yml",
            Path(__file__).resolve().parent / "app-manifest.yml",
        )
        if path.is_file()
    ),
    Path(__file__).resolve().parents[1] / "app-manifest.yml",
)
WEBHOOK_PATH = "/webhooks/github"
CALLBACK_PATH = "/callback"
DEFAULT_API_URL = "https://api.github.com"
# Every credential setting a registration replaces: the private key goes in one of the two.
CREDENTIAL_KEYS = (
    "GITHUB_APP_ID",
    "GITHUB_APP_SLUG",
    "GITHUB_PRIVATE_KEY",
    "GITHUB_PRIVATE_KEY_PATH",
    "GITHUB_WEBHOOK_SECRET",
)

BAD_STATE = (
    "This answer does not belong to this setup (its state does not match). "
    "Start again from the setup page."
)
NO_CODE = "GitHub's redirect carried no code. Start again from the setup page."
CODE_REFUSED = (
    "GitHub did not accept the code ({status}): codes work once and expire after an hour. "
    "Start again from the setup page."
)
GITHUB_UNREACHABLE = "Could not reach GitHub at {api_url} to finish the registration: {error}"


class SetupError(Exception):
    """The registration cannot go on; the message says what to do."""


@dataclass(frozen=True, slots=True)
class GitHubHost:
    """Where Apps are registered (web) and where their credentials are fetched (REST API)."""

    web_url: str
    api_url: str

    @classmethod
    def from_urls(cls, github_url: str | None, api_url: str) -> GitHubHost:
        """`--github-url https://HOST` for GitHub Enterprise Server, else from GITHUB_API_URL."""
        if github_url:
            web = github_url.rstrip("/")
            return cls(web, DEFAULT_API_URL if web == "https://github.com" else f"{web}/api/v3")
        api = api_url.rstrip("/")
        if api == DEFAULT_API_URL:
            return cls("https://github.com", api)
        if api.endswith("/api/v3"):  # GitHub Enterprise Server
            return cls(api.removesuffix("/api/v3"), api)
        return cls(api, api)  # a stand-in that serves both, e.g. a test double

    def new_app_url(self, state: str, org: str | None = None) -> str:
        path = f"/organizations/{org}/settings/apps/new" if org else "/settings/apps/new"
        return f"{self.web_url}{path}?{urlencode({'state': state})}"


@dataclass(frozen=True, slots=True)
class SetupOptions:
    """What `openhands-bot setup` (or `serve` without credentials) was asked for."""

    host: GitHubHost
    env_file: Path
    state_dir: Path
    webhook_url: str | None = None  # None: the page asks for it
    org: str | None = None
    app_name: str | None = None
    inline_key: bool = False  # the key in .env instead of a file in the state directory
    record_api_url: bool = False  # write GITHUB_API_URL too (GitHub Enterprise Server)
    manifest_path: Path = MANIFEST_PATH


@dataclass(frozen=True, slots=True)
class Registered:
    """The App GitHub created: nothing secret, so it can be printed."""

    app_id: int
    slug: str
    html_url: str
    env_file: Path
    key_file: Path | None

    @property
    def install_url(self) -> str:
        return f"{self.html_url.rstrip('/')}/installations/new"


def webhook_url_from(public_url: str | None) -> str | None:
    return f"{public_url.rstrip('/')}{WEBHOOK_PATH}" if public_url else None


def valid_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in {"http", "https"} and bool(parts.netloc)


def load_manifest(
    path: Path, *, webhook_url: str, redirect_url: str, name: str | None = None
) -> dict[str, Any]:
    """The manifest to post: app-manifest.yml with this installation's URLs filled in."""
    manifest: dict[str, Any] = yaml.safe_load(path.read_text())
    manifest["hook_attributes"] = {**manifest.get("hook_attributes", {}), "url": webhook_url}
    manifest["redirect_url"] = redirect_url
    if name:
        manifest["name"] = name
    return manifest


async def exchange_code(api_url: str, code: str) -> Any:
    """`POST /app-manifests/{code}/conversions` (no auth): the new App and its credentials."""
    github = GitHub(
        base_url=api_url, user_agent="openhands-bot", timeout=30, auto_retry=False, http_cache=False
    )
    try:
        response = await github.rest.apps.async_create_from_manifest(code)
    except RequestFailed as exc:
        raise SetupError(CODE_REFUSED.format(status=exc.response.status_code)) from None
    except (RequestError, RequestTimeout) as exc:
        raise SetupError(
            GITHUB_UNREACHABLE.format(api_url=api_url, error=type(exc).__name__)
        ) from None
    return response.parsed_data


def save_credentials(app: Any, options: SetupOptions) -> Registered:
    """Keep the App's credentials: the key in a 0600 file (or inline), the rest in `.env`."""
    values: dict[str, str] = {"GITHUB_APP_ID": str(app.id)}
    slug = app.slug if isinstance(app.slug, str) else None
    if slug:
        values["GITHUB_APP_SLUG"] = slug
    key_file: Path | None = None
    if options.inline_key:
        # One line (literal \n), which Settings.private_key_pem turns back into newlines.
        values["GITHUB_PRIVATE_KEY"] = app.pem.strip().replace("\n", "\\n")
    else:
        key_file = options.state_dir.resolve() / f"github-app-{app.id}.private-key.pem"
        write_secret_file(key_file, app.pem)
        values["GITHUB_PRIVATE_KEY_PATH"] = str(key_file)
    if app.webhook_secret:
        values["GITHUB_WEBHOOK_SECRET"] = app.webhook_secret
    if options.record_api_url:
        values["GITHUB_API_URL"] = options.host.api_url
    update_env_file(options.env_file, values, remove=CREDENTIAL_KEYS)
    return Registered(
        app_id=app.id,
        slug=slug or "",
        html_url=app.html_url,
        env_file=options.env_file,
        key_file=key_file,
    )


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status,
    )


class SetupFlow:
    """The local setup page (`/`) and GitHub's redirect target (`/callback`)."""

    def __init__(self, options: SetupOptions) -> None:
        self.options = options
        self.state = secrets.token_urlsafe(24)
        self.result: asyncio.Future[Registered] | None = None
        self._exchanging = asyncio.Lock()
        self.app = Starlette(
            routes=[Route("/", self.start_page), Route(CALLBACK_PATH, self.callback)]
        )

    def _done(self) -> asyncio.Future[Registered]:
        if self.result is None:
            self.result = asyncio.get_running_loop().create_future()
        return self.result

    async def wait(self) -> Registered:
        return await self._done()

    async def start_page(self, request: Request) -> Response:
        """The form that posts the manifest to GitHub, submitted as soon as it loads."""
        webhook_url = self.options.webhook_url or request.query_params.get("webhook_url", "")
        if not valid_url(webhook_url):
            return _page(
                "Register the OpenHands GitHub App",
                "<p>Where can GitHub reach this bot? Enter its public webhook URL (it ends in "
                f"<code>{WEBHOOK_PATH}</code>), or start again with <code>--webhook-url</code> or "
                "<code>PUBLIC_URL</code> set.</p>"
                '<form method="get" action="/"><input name="webhook_url" size="60" '
                f'placeholder="https://bot.example.com{WEBHOOK_PATH}"> '
                "<button>Continue</button></form>",
            )
        redirect_url = str(request.base_url).rstrip("/") + CALLBACK_PATH
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
        """GitHub's redirect after the App was created: `?code=...&state=...`."""
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
            try:
                app = await exchange_code(self.options.host.api_url, code)
                registered = save_credentials(app, self.options)
            except SetupError as exc:
                log.error("setup failed: %s", exc)
                return _page("Setup failed", f"<p>{html.escape(str(exc))}</p>", 502)
            done.set_result(registered)
        log.info("registered GitHub App", extra={"app_id": registered.app_id})
        return RedirectResponse(registered.install_url, status_code=302)


async def run_setup(options: SetupOptions, host: str, port: int) -> Registered:
    """Serve the setup page until the App is registered; Ctrl-C gives up."""
    if not options.manifest_path.is_file():
        raise SetupError(f"the App manifest is missing: no file at {options.manifest_path}")
    flow = SetupFlow(options)
    done = flow._done()
    server = uvicorn.Server(
        uvicorn.Config(
            flow.app, host=host, port=port, log_config=None, access_log=False, lifespan="off"
        )
    )
    serving = asyncio.create_task(server.serve(), name="setup-page")
    waiting: set[asyncio.Future[Any]] = {serving, done}
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    await serving
    if not done.done():
        raise SetupError("setup stopped before GitHub created the App")
    return done.result()
