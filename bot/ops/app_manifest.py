"""The GitHub App as its manifest describes it: where GitHub is, the manifest filled in for this
installation, the one-time code exchanged for the App's credentials, and saving them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import yaml
from githubkit import GitHub
from githubkit.exception import RequestError, RequestFailed, RequestTimeout

from bot.ops.env_file import update_env_file, write_secret_file

# The checkout's copy, else the one the wheel carries inside the package (see pyproject.toml).
MANIFEST_PATH = next(
    (
        path
        for path in (
            Path(__file__).resolve().parents[2] / "app-manifest.yml",
            Path(__file__).resolve().parents[1] / "app-manifest.yml",
        )
        if path.is_file()
    ),
    Path(__file__).resolve().parents[2] / "app-manifest.yml",
)
WEBHOOK_PATH = "/webhooks/github"
CODE_REFUSED = (
    "GitHub did not accept the code ({status}): codes work once and expire after an hour. "
    "Start again from the setup page."
)
GITHUB_UNREACHABLE = "Could not reach GitHub at {api_url} to finish the registration: {error}"
DEFAULT_API_URL = "https://api.github.com"
CREDENTIAL_KEYS = (
    "GITHUB_APP_ID",
    "GITHUB_APP_SLUG",
    "GITHUB_PRIVATE_KEY",
    "GITHUB_PRIVATE_KEY_PATH",
    "GITHUB_WEBHOOK_SECRET",
)


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

    def app_settings_url(self, slug: str, org: str | None = None) -> str:
        """The App's settings page, where new private keys are generated."""
        path = f"/organizations/{org}/settings/apps/{slug}" if org else f"/settings/apps/{slug}"
        return f"{self.web_url}{path}"


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
