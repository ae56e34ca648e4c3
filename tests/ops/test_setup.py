"""Registering the GitHub App from its manifest: the real setup page over HTTP, the fake GitHub's
conversion endpoint, and `.env` and key files as they land on disk."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import yaml
from dotenv import dotenv_values
from githubkit_schemas.latest.models import AppManifestsCodeConversionsPostResponse201

from bot.config import Settings
from bot.intake import signature
from bot.ops.app_manifest import CODE_REFUSED, MANIFEST_PATH, GitHubHost, SetupOptions
from bot.ops.env_file import quote, update_env_file
from bot.ops.setup_flow import (
    BAD_STATE,
    NO_TOKEN,
    NOT_SAVED,
    OPEN_LINK,
    SAVE_AGAIN_HINT,
    STOPPED_UNSAVED,
    SetupFlow,
    run_setup,
    setup_page_url,
)
from tests.conftest import load_payload
from tests.fakes.github import FakeGitHub
from tests.fakes.manifest import ManifestConversions, check_manifest, manifest_conversions
from tests.servers import ServerThread

WEBHOOK_URL = "https://bot.example.com/webhooks/github"
PERMISSIONS = {
    "contents": "write",
    "issues": "write",
    "pull_requests": "write",
    "checks": "write",
    "metadata": "read",
}
EVENTS = [
    "check_run",
    "issue_comment",
    "issues",
    "pull_request",
    "pull_request_review_comment",
    "push",
]


class _Forms(HTMLParser):
    """The forms of a page: action, method and input values."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self.forms.append({"action": values.get("action"), "method": values.get("method")})
            self.forms[-1]["inputs"] = {}
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"][values.get("name")] = values.get("value")


@pytest.fixture
def github_side(fake_github: FakeGitHub) -> ManifestConversions:
    return manifest_conversions(fake_github)


def _options(fake_github: FakeGitHub, tmp_path: Path, **overrides: Any) -> SetupOptions:
    values: dict[str, Any] = {
        "host": GitHubHost.from_urls(None, fake_github.url),
        "env_file": tmp_path / ".env",
        "state_dir": tmp_path / "state",
        "webhook_url": WEBHOOK_URL,
    }
    values.update(overrides)
    return SetupOptions(**values)


@dataclass(frozen=True)
class _Served:
    """A setup flow on a real port, and the link with its token that the console would show."""

    url: str
    flow: SetupFlow

    @property
    def link(self) -> str:
        return f"{self.url}/?{urlencode({'setup_token': self.flow.token})}"


@pytest.fixture
def page(fake_github: FakeGitHub, tmp_path: Path) -> Iterator[_Served]:
    """The setup page, served for real on a loopback port."""
    flow = SetupFlow(_options(fake_github, tmp_path))
    with ServerThread(flow.app) as server:
        yield _Served(server.url, flow)


def _register_form(link: str) -> dict[str, Any]:
    response = httpx.get(link)
    assert response.status_code == 200
    (form,) = _Forms(response.text).forms
    assert "document.getElementById('register').submit()" in response.text  # posts itself
    return form


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_the_page_posts_the_manifest_and_the_callback_keeps_the_credentials(
    page: _Served,
    fake_github: FakeGitHub,
    github_side: ManifestConversions,
    rsa_keys: tuple[str, str],
    tmp_path: Path,
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("LLM_MODEL=openai/gpt-4o\n# my notes\nGITHUB_APP_ID=1\nexport X='a b'\n")

    form = _register_form(page.link)
    action = urlsplit(form["action"])
    assert form["method"] == "post"
    assert f"{action.scheme}://{action.netloc}{action.path}" == (
        f"{fake_github.url}/settings/apps/new"
    )
    (state,) = parse_qs(action.query)["state"]
    assert len(state) >= 32
    manifest = json.loads(form["inputs"]["manifest"])
    assert manifest["hook_attributes"] == {"url": WEBHOOK_URL, "active": True}
    # GitHub redirects back to exactly this URL: the token travels in its path.
    assert manifest["redirect_url"] == f"{page.url}/callback/{page.flow.token}"
    assert manifest["default_permissions"] == PERMISSIONS
    assert manifest["default_events"] == EVENTS
    assert manifest["public"] is False

    # The person confirms on GitHub, which redirects back with a code and the state.
    code = github_side.issue_code(manifest, rsa_keys[0])
    callback = f"{manifest['redirect_url']}?{urlencode({'code': code, 'state': state})}"
    answer = httpx.get(callback)

    (app,) = github_side.created
    assert answer.status_code == 302
    assert answer.headers["location"] == f"https://github.com/apps/{app.slug}/installations/new"
    assert app.slug == "openhands-bot"
    assert app.pem not in answer.text
    assert app.webhook_secret not in answer.text
    env = dotenv_values(env_file)
    key_file = Path(str(env["GITHUB_PRIVATE_KEY_PATH"]))
    assert env == {
        "LLM_MODEL": "openai/gpt-4o",
        "X": "a b",
        "GITHUB_APP_ID": str(fake_github.app_id),
        "GITHUB_APP_SLUG": "openhands-bot",
        "GITHUB_PRIVATE_KEY_PATH": str(key_file),
        "GITHUB_WEBHOOK_SECRET": app.webhook_secret,
    }
    assert "# my notes" in env_file.read_text()
    assert key_file.parent == (tmp_path / "state").resolve()
    assert key_file.read_text() == rsa_keys[0]
    assert (_mode(env_file), _mode(key_file)) == (0o600, 0o600)
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    settings.require_web()
    assert settings.private_key_pem() == rsa_keys[0]

    # GitHub may send the browser back twice; the App exists already, the code is not reused.
    again = httpx.get(callback)
    assert (again.status_code, again.headers["location"]) == (302, answer.headers["location"])
    assert len(fake_github.requests_to("POST", r"^/app-manifests/[^/]+/conversions$")) == 1


@pytest.mark.parametrize("token", [None, "", "forged", "x" * 32])
def test_the_page_opens_only_with_the_token_the_console_shows(
    page: _Served, token: str | None
) -> None:
    for params in ({}, {"webhook_url": WEBHOOK_URL}):
        if token is not None:
            params = {**params, "setup_token": token}
        answer = httpx.get(f"{page.url}/", params=params)

        assert answer.status_code == 403
        assert NO_TOKEN in answer.text.replace("&#x27;", "'")
        assert page.flow.state not in answer.text
        assert page.flow.token not in answer.text
        assert _Forms(answer.text).forms == []


def test_a_callback_without_the_token_is_refused_and_nothing_is_written(
    page: _Served,
    fake_github: FakeGitHub,
    github_side: ManifestConversions,
    rsa_keys: tuple[str, str],
    tmp_path: Path,
) -> None:
    # Someone who reached the port registered an App of theirs and comes back with its code and
    # the right state (say it leaked), but cannot know the token in the redirect path.
    manifest = json.loads(_register_form(page.link)["inputs"]["manifest"])
    code = github_side.issue_code(manifest, rsa_keys[0])
    query = urlencode({"code": code, "state": page.flow.state})

    for path in ("/callback", "/callback/", "/callback/forged", f"/callback/{page.flow.token}x"):
        answer = httpx.get(f"{page.url}{path}?{query}", follow_redirects=True)
        assert answer.status_code == 403, path
        assert NO_TOKEN in answer.text.replace("&#x27;", "'")

    assert fake_github.requests_to("POST", r"^/app-manifests/") == []
    assert not (tmp_path / ".env").exists()
    assert not (tmp_path / "state").exists()
    assert httpx.get(f"{manifest['redirect_url']}?{query}").status_code == 302  # the code was good


def test_a_callback_with_another_state_is_refused(
    page: _Served,
    fake_github: FakeGitHub,
    github_side: ManifestConversions,
    rsa_keys: tuple[str, str],
    tmp_path: Path,
) -> None:
    manifest = json.loads(_register_form(page.link)["inputs"]["manifest"])
    code = github_side.issue_code(manifest, rsa_keys[0])

    for query in ({"code": code, "state": "forged"}, {"code": code}):
        answer = httpx.get(f"{manifest['redirect_url']}?{urlencode(query)}")
        assert answer.status_code == 400
        assert BAD_STATE in answer.text

    assert fake_github.requests_to("POST", r"^/app-manifests/") == []
    assert not (tmp_path / ".env").exists()


def test_a_code_github_does_not_know_is_a_clear_error_and_setup_goes_on(
    page: _Served,
    github_side: ManifestConversions,
    rsa_keys: tuple[str, str],
    tmp_path: Path,
) -> None:
    form = _register_form(page.link)
    (state,) = parse_qs(urlsplit(form["action"]).query)["state"]
    callback = json.loads(form["inputs"]["manifest"])["redirect_url"]

    answer = httpx.get(f"{callback}?{urlencode({'code': 'c0ffee', 'state': state})}")

    assert answer.status_code == 502
    assert html.escape(CODE_REFUSED.format(status=404)) in answer.text
    assert not (tmp_path / ".env").exists()
    # A good code afterwards still completes the same setup.
    code = github_side.issue_code(json.loads(form["inputs"]["manifest"]), rsa_keys[0])
    answer = httpx.get(f"{callback}?{urlencode({'code': code, 'state': state})}")
    assert answer.status_code == 302
    assert (tmp_path / ".env").is_file()


def test_credentials_that_fail_to_save_are_kept_until_saved_again(
    page: _Served,
    fake_github: FakeGitHub,
    github_side: ManifestConversions,
    rsa_keys: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env_file = tmp_path / ".env"
    env_file.mkdir()  # cannot be written, even as root: GitHub shows the private key only once
    form = _register_form(page.link)
    manifest = json.loads(form["inputs"]["manifest"])
    state = parse_qs(urlsplit(form["action"]).query)["state"][0]
    code = github_side.issue_code(manifest, rsa_keys[0])
    callback = f"{manifest['redirect_url']}?{urlencode({'code': code, 'state': state})}"

    answer = httpx.get(callback)

    (app,) = github_side.created
    settings_url = f"{fake_github.url}/settings/apps/{app.slug}"  # its web side too
    assert answer.status_code == 503
    # The message up to the error, the error's type, and what to do.
    before_error, _, after_error = NOT_SAVED.partition("{error}")
    not_saved = before_error.format(slug=app.slug, app_id=app.id) + "IsADirectoryError"
    what_to_do = after_error.format(settings_url=settings_url)
    assert html.escape(not_saved) in answer.text
    assert html.escape(what_to_do) in answer.text
    assert settings_url in answer.text  # where to get a new key if the bot stops first
    (save,) = _Forms(answer.text).forms
    assert (save["method"], save["action"]) == ("post", f"/save/{page.flow.token}")
    console = capsys.readouterr()
    assert not_saved in console.err
    assert what_to_do in console.err
    assert SAVE_AGAIN_HINT in console.err
    for secret in (app.pem.splitlines()[1], app.webhook_secret, app.client_secret):
        assert secret not in answer.text + console.out + console.err

    # Reloading the page tries again without spending the code twice; still failing.
    assert httpx.get(callback).status_code == 503
    # The button needs the token too.
    assert httpx.post(f"{page.url}/save/forged").status_code == 403

    env_file.rmdir()  # the operator fixes the problem and presses the button
    saved = httpx.post(f"{page.url}{save['action']}")

    install = f"https://github.com/apps/{app.slug}/installations/new"
    assert (saved.status_code, saved.headers["location"]) == (303, install)
    env = dotenv_values(env_file)
    assert env["GITHUB_APP_ID"] == str(app.id)
    assert env["GITHUB_WEBHOOK_SECRET"] == app.webhook_secret
    assert Path(str(env["GITHUB_PRIVATE_KEY_PATH"])).read_text() == rsa_keys[0]
    assert _mode(env_file) == 0o600
    assert page.flow.result is not None
    assert page.flow.result.result().app_id == app.id
    # Pressing again, or GitHub's redirect again, only points at the install page.
    assert httpx.post(f"{page.url}{save['action']}").headers["location"] == install
    assert httpx.get(callback).headers["location"] == install
    assert len(fake_github.requests_to("POST", r"^/app-manifests/[^/]+/conversions$")) == 1


async def test_stopping_with_the_credentials_unsaved_says_how_to_get_a_new_key(
    fake_github: FakeGitHub,
    github_side: ManifestConversions,
    rsa_keys: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / ".env").mkdir()
    port = _free_port()
    setup = asyncio.create_task(run_setup(_options(fake_github, tmp_path), "127.0.0.1", port))
    async with httpx.AsyncClient(timeout=10) as client:
        printed = ""
        while "\n" not in printed:
            await asyncio.sleep(0.05)
            printed += capsys.readouterr().out
        link = printed.split()[1]
        assert link.startswith(f"http://127.0.0.1:{port}/?setup_token=")
        for _ in range(200):  # until the page listens
            with contextlib.suppress(httpx.TransportError):
                form = _Forms((await client.get(link)).text).forms[0]
                break
            await asyncio.sleep(0.05)
        manifest = json.loads(form["inputs"]["manifest"])
        state = parse_qs(urlsplit(form["action"]).query)["state"][0]
        code = github_side.issue_code(manifest, rsa_keys[0])
        query = urlencode({"code": code, "state": state})
        answer = await client.get(f"{manifest['redirect_url']}?{query}")
        assert answer.status_code == 503

        setup.cancel()  # as Ctrl-C does
        with pytest.raises(asyncio.CancelledError):
            await setup
        with pytest.raises(httpx.TransportError):
            await client.get(link)  # the page stopped

    (app,) = github_side.created
    console = capsys.readouterr()
    settings_url = f"{fake_github.url}/settings/apps/{app.slug}"
    stopped = STOPPED_UNSAVED.format(slug=app.slug, app_id=app.id, settings_url=settings_url)
    assert stopped in console.err
    for secret in (app.pem.splitlines()[1], app.webhook_secret):
        assert secret not in console.out + console.err


@pytest.mark.parametrize(
    ("host", "shown"),
    [("0.0.0.0", "127.0.0.1"), ("::", "127.0.0.1"), ("::1", "[::1]"), ("10.0.0.5", "10.0.0.5")],
)
def test_the_printed_link_carries_the_token(host: str, shown: str) -> None:
    assert setup_page_url(host, 8000, "t-k_1") == f"http://{shown}:8000/?setup_token=t-k_1"


def test_without_a_webhook_url_the_page_asks_for_it(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    flow = SetupFlow(_options(fake_github, tmp_path, webhook_url=None, org="acme"))
    with ServerThread(flow.app) as server:
        link = _Served(server.url, flow).link
        asked = httpx.get(link)
        (question,) = _Forms(asked.text).forms
        assert (question["method"], question["action"]) == ("get", "/")
        assert question["inputs"] == {"setup_token": flow.token, "webhook_url": None}

        # Submitting the question keeps the token.
        answer = {**question["inputs"], "webhook_url": WEBHOOK_URL}
        form = _register_form(f"{server.url}/?{urlencode(answer)}")

    assert form["action"].startswith(f"{fake_github.url}/organizations/acme/settings/apps/new?")
    assert json.loads(form["inputs"]["manifest"])["hook_attributes"]["url"] == WEBHOOK_URL


def test_an_inline_key_replaces_a_key_file_setting(
    fake_github: FakeGitHub,
    github_side: ManifestConversions,
    rsa_keys: tuple[str, str],
    tmp_path: Path,
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "GITHUB_PRIVATE_KEY_PATH=/old/key.pem\nGITHUB_PRIVATE_KEY='-----BEGIN OLD\nstale\n'\nA=1\n"
    )
    flow = SetupFlow(
        _options(fake_github, tmp_path, inline_key=True, app_name="My Bot", record_api_url=True)
    )
    with ServerThread(flow.app) as server:
        form = _register_form(_Served(server.url, flow).link)
        manifest = json.loads(form["inputs"]["manifest"])
        code = github_side.issue_code(manifest, rsa_keys[0])
        state = parse_qs(urlsplit(form["action"]).query)["state"][0]
        answer = httpx.get(
            f"{manifest['redirect_url']}?{urlencode({'code': code, 'state': state})}"
        )

    assert answer.headers["location"] == "https://github.com/apps/my-bot/installations/new"
    env = dotenv_values(env_file)
    assert env["GITHUB_API_URL"] == fake_github.url  # as for GitHub Enterprise Server
    assert set(env) == {
        "A",
        "GITHUB_API_URL",
        "GITHUB_APP_ID",
        "GITHUB_APP_SLUG",
        "GITHUB_PRIVATE_KEY",
        "GITHUB_WEBHOOK_SECRET",
    }
    assert "\n" not in str(env["GITHUB_PRIVATE_KEY"])  # one line, readable by any env-file tool
    assert Settings(_env_file=env_file).private_key_pem().strip() == rsa_keys[0].strip()  # type: ignore[call-arg]
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(
    ("github_url", "api_url", "org", "new_app", "api"),
    [
        (None, "https://api.github.com", None, "https://github.com/settings/apps/new", None),
        (
            None,
            "https://api.github.com",
            "acme",
            "https://github.com/organizations/acme/settings/apps/new",
            None,
        ),
        (
            "https://github.corp/",
            "https://api.github.com",
            None,
            "https://github.corp/settings/apps/new",
            "https://github.corp/api/v3",
        ),
        (
            None,
            "https://github.corp/api/v3",
            "acme",
            "https://github.corp/organizations/acme/settings/apps/new",
            "https://github.corp/api/v3",
        ),
    ],
    ids=["github.com", "github.com-org", "ghes-flag", "ghes-from-api-url"],
)
def test_where_apps_are_registered(
    github_url: str | None, api_url: str, org: str | None, new_app: str, api: str | None
) -> None:
    host = GitHubHost.from_urls(github_url, api_url)
    assert host.new_app_url("s1", org) == f"{new_app}?state=s1"
    assert host.api_url == (api or api_url)


def test_the_manifest_asks_for_least_privilege_and_the_handled_events() -> None:
    manifest = yaml.safe_load(MANIFEST_PATH.read_text())
    assert manifest["default_permissions"] == PERMISSIONS
    assert manifest["default_events"] == EVENTS
    assert manifest["public"] is False
    check_manifest(manifest)  # as GitHub's page would
    # Every permission says why it is needed.
    lines = MANIFEST_PATH.read_text().splitlines()
    for name in PERMISSIONS:
        (line,) = [line for line in lines if line.strip().startswith(f"{name}:")]
        assert len(line.partition("#")[2].strip()) > 10, line


def test_the_fake_answers_in_githubs_documented_shape(
    fake_github: FakeGitHub, github_side: ManifestConversions, rsa_keys: tuple[str, str]
) -> None:
    manifest = yaml.safe_load(MANIFEST_PATH.read_text())
    code = github_side.issue_code(manifest, rsa_keys[0])
    url = f"{fake_github.url}/app-manifests/{code}/conversions"

    created = httpx.post(url)
    reused = httpx.post(url)

    assert created.status_code == 201
    app = AppManifestsCodeConversionsPostResponse201.model_validate(created.json())
    assert (app.id, app.slug, app.pem) == (fake_github.app_id, "openhands-bot", rsa_keys[0])
    assert sorted(app.events) == sorted(EVENTS)
    assert reused.status_code == 404  # a code works once


@pytest.mark.parametrize(
    "value", ["plain-1.2:3/x@y+z", "with space", "it's", "back\\slash", 'dq"', "multi\nline", ""]
)
def test_env_values_read_back_unchanged(value: str, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    update_env_file(env_file, {"V": value})
    assert dotenv_values(env_file) == {"V": value}
    with pytest.raises(ValueError, match=r"\$\{"):
        quote("a${HOME}")


# ----------------------------------------------------------------------- `serve` on a fresh machine


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _wait_for(url: str, seconds: float = 30) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _printed_link(process: subprocess.Popen[str], printed: list[str]) -> str:
    """The setup link `serve` prints (the only way to learn its token), read as it is printed."""
    assert process.stdout is not None
    for line in process.stdout:
        printed.append(line)
        if line.startswith("Open "):
            return line.split()[1]
    raise AssertionError(f"no setup link printed: {''.join(printed)}")


def test_serve_without_credentials_registers_the_app_then_serves(
    fake_github: FakeGitHub,
    github_side: ManifestConversions,
    rsa_keys: tuple[str, str],
    tmp_path: Path,
    redis_url: str,
) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GITHUB_", "REDIS_", "PUBLIC_URL", "WORKSPACE_", "AGENT_"))
    }
    env.update(
        GITHUB_API_URL=fake_github.url,
        PUBLIC_URL="https://bot.example.com",
        REDIS_URL=redis_url,
        WORKSPACE_KIND="server",  # so the worker starts no agent-server of its own
        AGENT_SERVER_URL="http://127.0.0.1:9",
    )
    command = [sys.executable, "-m", "bot.ops.cli", "serve", "--port", str(port)]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    printed: list[str] = []
    try:
        link = _printed_link(process, printed)
        assert link.startswith(f"{base}/?setup_token=")
        assert _wait_for(f"{base}/").status_code == 403  # the page needs the printed link
        _wait_for(link)
        form = _register_form(link)
        manifest = json.loads(form["inputs"]["manifest"])
        assert manifest["hook_attributes"]["url"] == WEBHOOK_URL  # from PUBLIC_URL
        state = parse_qs(urlsplit(form["action"]).query)["state"][0]
        code = github_side.issue_code(manifest, rsa_keys[0])
        answer = httpx.get(
            f"{manifest['redirect_url']}?{urlencode({'code': code, 'state': state})}"
        )
        assert answer.status_code == 302

        # The same port now serves the bot, with the credentials just written.
        deadline = time.monotonic() + 60
        while _wait_for(f"{base}/healthz").status_code != 200:
            assert process.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.1)
        (app,) = github_side.created
        body = json.dumps(load_payload("ping/default.json")).encode()
        headers = {
            "X-GitHub-Event": "ping",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": signature.sign(app.webhook_secret.encode(), body),
        }
        ping = httpx.post(f"{base}/webhooks/github", content=body, headers=headers)
        assert (ping.status_code, ping.json()["status"]) == (200, "ignored")
    finally:
        process.send_signal(signal.SIGTERM)  # as a process manager stops it
        stdout, stderr = process.communicate(timeout=30)
        stdout = "".join(printed) + stdout
    assert process.returncode == 0, stderr
    assert '"worker stopping"' in stderr, stderr  # a clean stop, not a kill
    assert OPEN_LINK.format(link=link) in stdout
    assert f"https://github.com/apps/{app.slug}/installations/new" in stdout
    for secret in (app.webhook_secret, app.client_secret, app.pem.splitlines()[1]):
        assert secret not in stdout + stderr
    assert _mode(tmp_path / ".env") == 0o600
