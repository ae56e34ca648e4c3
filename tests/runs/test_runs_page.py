"""The runs page in real headless Chromium (basic auth from the URL, as a person's browser does it)
and over plain HTTP: a delivered run appears, its page shows its log, untrusted text stays text."""

from __future__ import annotations

import asyncio
import base64
import copy
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from bot.config import Settings
from bot.intake.app import create_app
from bot.runs.page import PAGE_DENIED, PAGE_OFF
from bot.runs.store import RunError, RunRecord, RunStatus, RunStore
from tests.conftest import Deliverer, load_payload, run_worker
from tests.fakes.github import FakeGitHub
from tests.servers import ServerThread

TOKEN = "runs-page-token-7c2e"
REPO = "Codertocat/Hello-World"
INSTALLATION = 1  # as in the stored deliveries
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"  # git-ignored
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium package: apt-get install -y chromium"
)


@pytest.fixture
def page_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"bot_api_token": SecretStr(TOKEN), "review_on_open": False})


@pytest.fixture
def web(page_settings: Settings, redis: Redis) -> Iterator[ServerThread]:
    with ServerThread(create_app(page_settings), health_path="/healthz", lifespan="on") as server:
        yield server


class Browser:
    """Headless Chromium, one process per page load, with its own profile directory."""

    def __init__(self, profile: Path) -> None:
        assert CHROMIUM is not None
        self.args = [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
        ]

    async def _run(self, *args: str) -> bytes:
        process = await asyncio.create_subprocess_exec(
            *self.args, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), 90)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.returncode == 0, err.decode(errors="replace")[-2000:]
        return out

    async def dom(self, url: str) -> str:
        return (await self._run("--dump-dom", url)).decode()

    async def screenshot(self, url: str, path: Path) -> Path:
        await self._run(f"--screenshot={path}", url)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # noqa: ASYNC240 - a small file
        return path


def _row(dom: str, run_id: str) -> str:
    match = re.search(rf'<tr data-run-id="{re.escape(run_id)}">(.*?)</tr>', dom, re.S)
    assert match, f"no row for {run_id}"
    return match.group(1)


def _keep(path: Path) -> None:
    """Print where a screenshot is, and keep a copy in test-artifacts/ (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    kept = ARTIFACTS / path.name
    shutil.copyfile(path, kept)
    print(f"screenshot: {path} (copy: {kept})")  # noqa: T201 - where to look, on purpose


def _mention_from(login: str) -> dict[str, Any]:
    payload = copy.deepcopy(load_payload("issue_comment/created.with-installation.json"))
    payload["comment"].update(body="@openhands fix this", id=4242)
    payload["comment"]["user"]["login"] = login
    payload["sender"]["login"] = login
    return payload


@needs_chromium
async def test_a_delivered_run_shows_up_in_chromium_with_its_log(
    web: ServerThread,
    fake_github: FakeGitHub,
    page_settings: Settings,
    redis: Redis,
    tmp_path: Path,
) -> None:
    fake_github.add_repo(REPO)
    fake_github.add_installation(INSTALLATION, "Codertocat", [REPO])
    fake_github.set_permission(REPO, "octo-dev", "write")
    mention = _mention_from("octo-dev")  # its run fails: this test's workspace answers nowhere
    fake_github.add_from_webhook(mention)
    browser = Browser(tmp_path / "profile")
    signed_in = f"http://viewer:{TOKEN}@127.0.0.1:{web.port}"  # Chromium answers the challenge

    assert "No runs yet." in await browser.dom(f"{signed_in}/runs")

    with Deliverer(web.url) as deliver:
        review = deliver.post("pull_request", load_payload("pull_request/opened.json"))
        failed = deliver.post("issue_comment", mention)
    assert (review.status_code, failed.status_code) == (202, 202)
    review_id, failed_id = review.json()["run_id"], failed.json()["run_id"]
    await run_worker(page_settings)

    listing = await browser.dom(f"{signed_in}/runs")
    row = _row(listing, review_id)
    assert REPO in row
    assert "COMPLETED" in row
    assert "pull_request" in row  # the trigger
    row = _row(listing, failed_id)
    assert "FAILED" in row
    assert f'href="https://github.com/{REPO}/issues/1"' not in row  # links follow the API URL
    assert f'href="{fake_github.url}/{REPO}/issues/1"' in row
    assert listing.index(failed_id) < listing.index(review_id)  # newest first

    page = await browser.dom(f"{signed_in}/runs/{review_id}")
    assert f"Run <code>{review_id}</code>" in page
    assert "started (review, pull_request)" in page
    assert "COMPLETED: skipped: automatic reviews are off" in page
    failed_page = await browser.dom(f"{signed_in}/runs/{failed_id}")
    assert "workspace: " in failed_page

    for name, path in [
        ("runs-page-list.png", "/runs"),
        ("runs-page-run.png", f"/runs/{failed_id}"),
    ]:
        _keep(await browser.screenshot(signed_in + path, tmp_path / name))


@needs_chromium
async def test_untrusted_run_fields_stay_text_in_chromium(
    web: ServerThread, redis: Redis, tmp_path: Path
) -> None:
    store = RunStore(redis, 3600)
    hostile = '<img src=x onerror="document.title=1">'
    await store.create(
        RunRecord(
            run_id="hostile-1",
            kind="mention",
            trigger="issue_comment",
            repo='o/r"><script>document.title=2</script>',
            status=RunStatus.FAILED,
            outcome=hostile,
            error=RunError(code="x", detail=hostile),
            links={"pull_request": "javascript:document.title=3", "comment": "https://ok/c"},
        )
    )
    await store.log("hostile-1", f"the agent said {hostile}")
    browser = Browser(tmp_path / "profile")
    signed_in = f"http://viewer:{TOKEN}@127.0.0.1:{web.port}"

    pages = [("/runs", "Runs", "document.title=2"), ("/runs/hostile-1", "Run hostile-1", "=1")]
    for path, title, shown in pages:
        dom = await browser.dom(signed_in + path)
        assert "<img" not in dom
        assert "<script" not in dom
        assert 'href="javascript:' not in dom
        assert f"<title>{title} · openhands-bot</title>" in dom  # no script changed it
        assert shown in dom  # the hostile text is there, as text
        assert 'href="https://ok/c"' in dom
    assert "&lt;img src=x onerror=" in dom


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_the_page_is_off_without_an_api_token(settings: Settings, redis: Redis) -> None:
    with ServerThread(create_app(settings), health_path="/healthz", lifespan="on") as server:
        response = httpx.get(f"{server.url}/runs", headers=_basic("me", "anything"))
    assert response.status_code == 401
    assert PAGE_OFF.replace("<", "&lt;").replace(">", "&gt;") in response.text
    assert response.headers["www-authenticate"] == "Bearer"  # no password prompt: none can work


@pytest.mark.parametrize(
    "headers",
    [
        {},
        _basic("me", "wrong"),
        _basic(TOKEN, ""),
        {"Authorization": "Basic !!!"},
        {"Authorization": TOKEN},
    ],
    ids=["none", "wrong-password", "token-as-user", "garbled", "no-scheme"],
)
def test_wrong_credentials_get_a_basic_challenge(
    web: ServerThread, headers: dict[str, str]
) -> None:
    for path in ["/runs", "/runs/anything"]:
        response = httpx.get(web.url + path, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith('Basic realm="openhands-bot runs"')
        assert PAGE_DENIED.replace("<", "&lt;").replace(">", "&gt;") in response.text


@pytest.mark.parametrize(
    "headers",
    [_basic("anyone", TOKEN), {"Authorization": f"Bearer {TOKEN}"}],
    ids=["basic", "bearer"],
)
def test_the_token_opens_the_page_either_way(web: ServerThread, headers: dict[str, str]) -> None:
    listing = httpx.get(f"{web.url}/runs", headers=headers)
    assert listing.status_code == 200
    assert listing.headers["content-type"].startswith("text/html")
    assert listing.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in listing.headers["content-security-policy"]
    assert '<meta http-equiv="refresh" content="15">' in listing.text
    missing = httpx.get(f"{web.url}/runs/no-such-run", headers=headers)
    assert missing.status_code == 404
    assert "No run no-such-run" in missing.text
