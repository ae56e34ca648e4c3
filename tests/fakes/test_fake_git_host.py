"""Real `git` over HTTP against FakeGitHost: tokens from FakeGitHub gate clone, fetch and push."""

from __future__ import annotations

import base64
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import APP_ID
from tests.fakes.git_host import RECEIVE_PACK, UPLOAD_PACK, FakeGitHost
from tests.fakes.github import FakeGitHub

INSTALLATION_ID = 77
WIDGETS = "acme/widgets"
GADGETS = "acme/gadgets"
ELSEWHERE = "other/thing"  # a repo the App is not installed on
FILES: dict[str, bytes | str] = {
    "README.md": "# Widgets\n",
    "src/widgets/__init__.py": "VERSION = '1.0'\n",
    "data/blob.bin": bytes(range(256)),
}


@pytest.fixture
def host(fake_github: FakeGitHub, tmp_path: Path) -> Iterator[FakeGitHost]:
    git_host = FakeGitHost(fake_github, tmp_path / "git")
    git_host.create_repo(WIDGETS, FILES)
    with git_host.serving():
        git_host.create_repo(GADGETS, {"gadget.txt": "gadget\n"}, branch="trunk")
        git_host.create_repo(ELSEWHERE, {"x.txt": "x\n"})
        fake_github.add_installation(INSTALLATION_ID, "acme", [WIDGETS, GADGETS])
        yield git_host
    git_host.assert_no_errors()


@pytest.fixture
def app_jwt(rsa_keys: tuple[str, str]) -> str:
    now = int(time.time())
    claims = {"iss": str(APP_ID), "iat": now - 30, "exp": now + 540}
    return jwt.encode(claims, rsa_keys[0], algorithm="RS256")


def _mint(github: FakeGitHub, app_jwt: str, **body: Any) -> str:
    response = httpx.post(
        f"{github.url}/app/installations/{INSTALLATION_ID}/access_tokens",
        headers={"Authorization": f"Bearer {app_jwt}", "Accept": "application/vnd.github+json"},
        json=body,
        trust_env=False,
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def _read_token(github: FakeGitHub, app_jwt: str, repo: str = "widgets") -> str:
    return _mint(github, app_jwt, repositories=[repo], permissions={"contents": "read"})


def _git(
    *args: str, cwd: Path | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The real git CLI, never prompting and ignoring any system or user configuration."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": tempfile.gettempdir(),  # any existing dir; the global config is ignored anyway
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "Tester",
        "GIT_AUTHOR_EMAIL": "tester@example.com",
        "GIT_COMMITTER_NAME": "Tester",
        "GIT_COMMITTER_EMAIL": "tester@example.com",
        "LC_ALL": "C",
    }
    return subprocess.run(
        ["git", "-c", "credential.helper=", *args],
        cwd=cwd,
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _basic(token: str) -> str:
    return "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()


def test_clone_and_fetch_pull_ref_with_a_narrowed_read_token(
    host: FakeGitHost, fake_github: FakeGitHub, app_jwt: str, tmp_path: Path
) -> None:
    head = host.rev_parse(WIDGETS, "main")
    pr_head = host.commit(WIDGETS, {"feature.py": "x = 1\n"}, branch="feature")
    host.create_ref(WIDGETS, "refs/pull/7/head", pr_head)
    assert host.branches(WIDGETS) == {"main": head, "feature": pr_head}
    token = _read_token(fake_github, app_jwt)

    api = httpx.get(
        f"{fake_github.url}/repos/{WIDGETS}",
        headers={"Authorization": f"token {token}"},
        trust_env=False,
    )
    assert api.json()["clone_url"] == host.clone_url(WIDGETS)

    work = tmp_path / "work"
    cloned = _git("clone", "--quiet", host.clone_url(WIDGETS, token=token), str(work))
    assert cloned.returncode == 0, cloned.stderr
    for path, content in FILES.items():
        expected = content.encode() if isinstance(content, str) else content
        assert (work / path).read_bytes() == expected
    assert _git("rev-parse", "HEAD", cwd=work).stdout.strip() == head

    fetched = _git("fetch", "--quiet", "origin", "refs/pull/7/head", cwd=work)
    assert fetched.returncode == 0, fetched.stderr
    assert _git("rev-parse", "FETCH_HEAD", cwd=work).stdout.strip() == pr_head
    by_sha = _git("fetch", "--quiet", "origin", pr_head, cwd=work)
    assert by_sha.returncode == 0, by_sha.stderr

    answered = [r for r in host.requests if r.status == 200]
    assert answered
    assert {r.service for r in answered} == {UPLOAD_PACK}
    assert {r.token for r in answered} == {token}
    assert {(r.installation_id, tuple(r.repositories or ())) for r in answered} == {
        (INSTALLATION_ID, (WIDGETS,))
    }
    assert all(r.permissions == {"contents": "read"} for r in answered)
    assert set(host.authorizations) == {_basic(token)}


def test_protocol_v0_and_gzipped_negotiation(
    host: FakeGitHost, fake_github: FakeGitHub, app_jwt: str, tmp_path: Path
) -> None:
    token = _read_token(fake_github, app_jwt, "gadgets")
    work = tmp_path / "v0"
    v0 = ("-c", "protocol.version=0")
    cloned = _git(*v0, "clone", "--quiet", host.clone_url(GADGETS, token=token), str(work))
    assert cloned.returncode == 0, cloned.stderr
    assert (work / "gadget.txt").read_text() == "gadget\n"
    assert _git("branch", "--show-current", cwd=work).stdout.strip() == "trunk"

    # Many local commits the server lacks: the "have" lines exceed 1 KiB, which git gzips.
    stream = "".join(
        f"commit refs/heads/local\ncommitter T <t@example.com> {1700000000 + n} +0000\n"
        f"data 2\n{n % 10}\n" + ("from refs/heads/trunk\n" if n == 0 else "")
        for n in range(60)
    )
    imported = _git("fast-import", "--quiet", cwd=work, input=stream)
    assert imported.returncode == 0, imported.stderr
    new = host.commit(GADGETS, {"more.txt": "more\n"}, branch="trunk")
    fetched = _git(*v0, "fetch", "--quiet", "origin", cwd=work)
    assert fetched.returncode == 0, fetched.stderr
    assert _git("rev-parse", "origin/trunk", cwd=work).stdout.strip() == new
    assert "gzip" in {r.content_encoding for r in host.requests if r.status == 200}


def test_push_needs_contents_write(
    host: FakeGitHost, fake_github: FakeGitHub, app_jwt: str, tmp_path: Path
) -> None:
    read_token = _read_token(fake_github, app_jwt)
    work = tmp_path / "work"
    cloned = _git("clone", "--quiet", host.clone_url(WIDGETS, token=read_token), str(work))
    assert cloned.returncode == 0, cloned.stderr
    (work / "README.md").write_text("# Widgets, improved\n")
    (work / "big.bin").write_bytes(os.urandom(200_000))  # bigger than postBuffer: chunked upload
    assert _git("commit", "--quiet", "-am", "Improve", cwd=work).returncode == 0
    assert _git("add", "big.bin", cwd=work).returncode == 0
    assert _git("commit", "--quiet", "-m", "Add blob", cwd=work).returncode == 0
    before = host.rev_parse(WIDGETS, "main")

    refused = _git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    assert refused.returncode != 0
    assert "403" in refused.stderr
    assert [r.status for r in host.requests if r.service == RECEIVE_PACK][-1] == 403
    assert host.rev_parse(WIDGETS, "main") == before

    write_token = _mint(
        fake_github, app_jwt, repositories=["widgets"], permissions={"contents": "write"}
    )
    pushed = _git(
        "-c",
        "http.postBuffer=4096",
        "push",
        "--quiet",
        host.clone_url(WIDGETS, token=write_token),
        "HEAD:main",
        "HEAD:refs/heads/bot/fix",
        cwd=work,
    )
    assert pushed.returncode == 0, pushed.stderr
    local = _git("rev-parse", "HEAD", cwd=work).stdout.strip()
    assert host.rev_parse(WIDGETS, "main") == local
    assert host.branches(WIDGETS)["bot/fix"] == local
    assert host.read_file(WIDGETS, "main", "README.md") == b"# Widgets, improved\n"
    assert host.read_file(WIDGETS, "main", "big.bin") == (work / "big.bin").read_bytes()
    pushes = [r for r in host.requests if r.service == RECEIVE_PACK and r.status == 200]
    assert pushes
    assert {r.token for r in pushes} == {write_token}


@pytest.mark.parametrize("case", ["other repo", "not installed", "no token", "expired", "bogus"])
def test_clone_is_refused(
    case: str, host: FakeGitHost, fake_github: FakeGitHub, app_jwt: str, tmp_path: Path
) -> None:
    repo, status = WIDGETS, 404
    if case == "other repo":
        url = host.clone_url(WIDGETS, token=_read_token(fake_github, app_jwt, "gadgets"))
    elif case == "not installed":
        repo = ELSEWHERE
        url = host.clone_url(ELSEWHERE, token=_mint(fake_github, app_jwt))
    elif case == "no token":
        url, status = host.clone_url(WIDGETS), 401
    elif case == "expired":
        token = _read_token(fake_github, app_jwt)
        fake_github.expire_tokens()
        url, status = host.clone_url(WIDGETS, token=token), 401
    else:
        url, status = host.clone_url(WIDGETS, token="ghs_" + "x" * 36), 401

    cloned = _git("clone", "--quiet", url, str(tmp_path / "work"))

    assert cloned.returncode != 0
    assert not (tmp_path / "work").exists()
    # git first asks without credentials and only sends them after a 401 challenge.
    assert {r.status for r in host.requests if r.authorization is None} <= {401}
    assert {r.status for r in host.requests if r.authorization is not None} <= {status}
    assert host.requests[-1].status == status
    assert {r.repo for r in host.requests} == {repo}
    if status == 401:
        assert "Authentication failed" in cloned.stderr or "could not read" in cloned.stderr
    else:
        assert "not found" in cloned.stderr


def test_http_answers(host: FakeGitHost, fake_github: FakeGitHub, app_jwt: str) -> None:
    auth = {"Authorization": _basic(_read_token(fake_github, app_jwt))}
    no_contents = _mint(fake_github, app_jwt, permissions={"metadata": "read"})
    base = host.clone_url(WIDGETS)
    upload_refs = f"{base}/info/refs?service={UPLOAD_PACK}"
    with httpx.Client(trust_env=False) as client:
        assert client.get(f"{base}/HEAD", headers=auth).status_code == 404
        assert client.get(f"{base}/info/refs", headers=auth).status_code == 404  # dumb protocol
        assert client.post(f"{base}/info/refs", headers=auth).status_code == 404
        advertised = client.get(upload_refs, headers=auth)
        assert advertised.status_code == 200
        assert advertised.headers["content-type"] == f"application/x-{UPLOAD_PACK}-advertisement"
        # GitHub also answers without the .git suffix.
        no_suffix = f"{host.url}/{WIDGETS}/info/refs?service={UPLOAD_PACK}"
        assert client.get(no_suffix, headers=auth).status_code == 200
        receive_refs = f"{base}/info/refs?service={RECEIVE_PACK}"
        assert client.get(receive_refs, headers=auth).status_code == 403
        assert (
            client.get(upload_refs, headers={"Authorization": _basic(no_contents)}).status_code
            == 403
        )
        unauthenticated = client.get(upload_refs)
        assert unauthenticated.status_code == 401
        assert unauthenticated.headers["www-authenticate"] == 'Basic realm="GitHub"'
        bearer = client.get(upload_refs, headers={"Authorization": f"Bearer {no_contents}"})
        assert bearer.status_code == 401


def test_helpers_are_deterministic(fake_github: FakeGitHub, tmp_path: Path) -> None:
    first = FakeGitHost(fake_github, tmp_path / "one")
    second = FakeGitHost(fake_github, tmp_path / "two")
    sha = first.create_repo(WIDGETS, FILES)
    assert second.create_repo(WIDGETS, FILES) == sha
    assert first.bare_path(WIDGETS) == tmp_path / "one" / "acme" / "widgets.git"

    changed = first.commit(WIDGETS, {"README.md": None, "new.txt": "new\n"}, message="Swap")
    assert first.rev_parse(WIDGETS, "HEAD") == changed
    assert first.rev_parse(WIDGETS, "main~1") == sha
    assert first.read_file(WIDGETS, "main", "README.md") is None
    assert first.read_file(WIDGETS, "main", "new.txt") == b"new\n"
    assert first.read_file(WIDGETS, sha, "README.md") == b"# Widgets\n"
    assert first.read_file(WIDGETS, "main", "src/widgets/__init__.py") == b"VERSION = '1.0'\n"
    first.create_ref(WIDGETS, "refs/pull/7/head", sha)
    assert first.refs(WIDGETS, "refs/pull/") == {"refs/pull/7/head": sha}
    with pytest.raises(KeyError):
        first.rev_parse(WIDGETS, "nope")
    with pytest.raises(FileExistsError):
        first.create_repo(WIDGETS, {})
