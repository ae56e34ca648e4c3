"""A fake of GitHub's git smart-HTTP side: real `git http-backend` behind FakeGitHub's tokens."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import re
import subprocess
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.git_data import GIT_ENV
from tests.fakes.github import FakeGitHub
from tests.servers import FakeServer

UPLOAD_PACK = "git-upload-pack"
RECEIVE_PACK = "git-receive-pack"
# What each service needs of the token's `contents` permission.
NEEDED_LEVEL = {UPLOAD_PACK: 1, RECEIVE_PACK: 2}
LEVELS = {"read": 1, "write": 2, "admin": 3}
# A fixed identity and date, so the same files always give the same commit sha.
IDENTITY = "Fake Git Host <git-host@example.com> 1700000000 +0000"
CGI_TIMEOUT = 60.0
_PATH = re.compile(
    r"/(?P<owner>[^/]+)/(?P<repo>[^/]+?)(?:\.git)?"
    r"/(?P<rest>info/refs|git-upload-pack|git-receive-pack)"
)
# Hermetic git: no system or user configuration leaks into the served repositories.
_GIT_ENV = GIT_ENV
_REPO_CONFIG = {
    "uploadpack.allowReachableSHA1InWant": "true",  # GitHub lets you fetch a reachable sha
    "uploadpack.allowFilter": "true",  # and supports partial clones
    "http.receivepack": "true",
}


@dataclass
class GitRequest:
    """One request the git host received: who asked for what, with which token, and the answer.

    `repo` is the requested "owner/name"; `token`, `installation_id`, `repositories` (the
    token's narrowing, None if not narrowed) and `permissions` describe the credential when it
    was a token FakeGitHub minted.
    """

    method: str
    path: str
    service: str | None
    repo: str | None
    authorization: str | None
    username: str | None
    token: str | None
    installation_id: int | None = None
    repositories: list[str] | None = None
    permissions: dict[str, str] | None = None
    content_encoding: str | None = None
    status: int = 0


class _Refusal(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.response = Response(
            message + "\n", status_code=status, headers=dict(headers or {}), media_type="text/plain"
        )


class FakeGitHost(FakeServer):
    """Serves bare repos under `root/<owner>/<repo>.git` over smart HTTP, the way github.com does.

    Every request needs HTTP Basic auth whose password is a live installation token minted by
    `github` (any username, e.g. ``x-access-token``), else 401 with a Basic challenge. A token
    whose installation, or narrowed repository list, lacks the repo gets 404. Fetching needs
    `contents: read`, pushing `contents: write`, else 403. Only the smart protocol is served.
    """

    def __init__(self, github: FakeGitHub, root: Path) -> None:
        self.github = github
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._requests: list[GitRequest] = []
        self._errors: list[str] = []
        self._created: dict[str, str] = {}  # lower-cased full name → as created (on disk)
        self._backend = Path(self._git_output(None, "--exec-path").decode().strip())
        self.app = Starlette(
            routes=[
                Route(
                    "/{path:path}",
                    self._handle,
                    methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                )
            ]
        )

    # ------------------------------------------------------------------ serving

    # FakeServer gives `serving()` and `url` (e.g. http://127.0.0.1:54321).

    def _asgi_app(self) -> Starlette:
        return self.app

    def _serving_started(self) -> None:
        """Repos made before serving get their clone_url now."""
        for full_name in list(self._created.values()):
            self._register_clone_url(full_name)

    def clone_url(
        self, full_name: str, *, token: str | None = None, username: str = "x-access-token"
    ) -> str:
        """``{url}/owner/repo.git``; with `token`, credentials embedded as git accepts them."""
        if token is None:
            return f"{self.url}/{full_name}.git"
        userinfo = f"{quote(username, safe='')}:{quote(token, safe='')}@"
        return f"{self.url.replace('://', '://' + userinfo, 1)}/{full_name}.git"

    # ------------------------------------------------------------------ repositories

    def bare_path(self, full_name: str) -> Path:
        owner, _, name = full_name.partition("/")
        if not owner or not name or "/" in name or name in {".", ".."} or owner in {".", ".."}:
            raise ValueError(f"not an owner/name: {full_name!r}")
        return self.root / owner / f"{name}.git"

    def create_repo(
        self, full_name: str, files: Mapping[str, bytes | str], *, branch: str = "main"
    ) -> str:
        """Make the bare repo with one commit of `files` on `branch` (its HEAD); returns the sha.

        Attaches it to FakeGitHub (`attach_git`, which registers the repo with `branch` as its
        default branch if unknown), so the Git Data, contents, branch and PR endpoints work on
        it, and, when serving, sets its clone_url to `clone_url(full_name)`.
        """
        bare = self.bare_path(full_name)
        if bare.exists():
            raise FileExistsError(f"{bare} already exists")
        bare.parent.mkdir(parents=True, exist_ok=True)
        self._git_output(None, "init", "--quiet", "--bare", f"--initial-branch={branch}", str(bare))
        for key, value in _REPO_CONFIG.items():
            self._git_output(bare, "config", key, value)
        sha = self._fast_import(bare, branch, None, dict(files), "Initial commit")
        self.github.attach_git(full_name, bare, default_branch=branch)
        with self._lock:
            self._created[full_name.lower()] = full_name
        if self._server is not None:
            self._register_clone_url(full_name)
        return sha

    def commit(
        self,
        full_name: str,
        files: Mapping[str, bytes | str | None],
        *,
        branch: str = "main",
        message: str = "Update files",
    ) -> str:
        """Commit `files` on `branch` (None deletes a path); returns the new sha.

        A branch that does not exist yet starts from HEAD (the default branch).
        """
        bare = self.bare_path(full_name)
        try:
            parent = self.rev_parse(full_name, f"refs/heads/{branch}")
        except KeyError:
            parent = self.rev_parse(full_name, "HEAD")
        sha = self._fast_import(bare, branch, parent, dict(files), message)
        self.github.sync_pull_refs(full_name)
        return sha

    def create_ref(self, full_name: str, ref: str, sha: str) -> None:
        """Point `ref` (e.g. ``refs/pull/7/head``) at `sha`, creating or moving it."""
        if not ref.startswith("refs/"):
            raise ValueError(f"give a full ref name, not {ref!r}")
        self._git_output(self.bare_path(full_name), "update-ref", ref, sha)
        if ref.startswith("refs/heads/"):
            self.github.sync_pull_refs(full_name)

    def rev_parse(self, full_name: str, ref: str) -> str:
        """The commit sha `ref` names; KeyError if it names none."""
        result = self._git(self.bare_path(full_name), "rev-parse", "--verify", "--quiet", ref)
        if result.returncode != 0:
            raise KeyError(f"{full_name} has no {ref!r}")
        return result.stdout.decode().strip()

    def read_file(self, full_name: str, ref: str, path: str) -> bytes | None:
        """The file's bytes at `ref`, None if absent there (KeyError if `ref` is unknown)."""
        sha = self.rev_parse(full_name, ref)
        result = self._git(self.bare_path(full_name), "cat-file", "blob", f"{sha}:{path}")
        return result.stdout if result.returncode == 0 else None

    def branches(self, full_name: str) -> dict[str, str]:
        """Branch name → commit sha."""
        return self.refs(full_name, "refs/heads/", strip=True)

    def refs(self, full_name: str, prefix: str = "refs/", *, strip: bool = False) -> dict[str, str]:
        """Every ref under `prefix` → its sha (with `strip`, names without the prefix)."""
        output = self._git_output(
            self.bare_path(full_name),
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            prefix,
        )
        refs: dict[str, str] = {}
        for line in output.decode().splitlines():
            sha, _, name = line.partition(" ")
            refs[name.removeprefix(prefix) if strip else name] = sha
        return refs

    # ------------------------------------------------------------------ inspection

    @property
    def requests(self) -> list[GitRequest]:
        with self._lock:
            return copy.deepcopy(self._requests)

    @property
    def authorizations(self) -> list[str]:
        """Every Authorization header value received, in order (requests without one skipped)."""
        return [r.authorization for r in self.requests if r.authorization is not None]

    @property
    def errors(self) -> list[str]:
        """git http-backend failures (exit status and stderr); should stay empty."""
        with self._lock:
            return list(self._errors)

    def assert_no_errors(self) -> None:
        errors = self.errors
        if errors:
            raise AssertionError("FakeGitHost's git http-backend failed:\n" + "\n".join(errors))

    # ------------------------------------------------------------------ HTTP

    async def _handle(self, request: Request) -> Response:
        header = request.headers.get("authorization")
        username, token = _basic_credentials(header)
        match = _PATH.fullmatch(request.url.path)
        service = None
        if match:
            service = match["rest"] if match["rest"] != "info/refs" else None
            service = service or request.query_params.get("service")
        record = GitRequest(
            method=request.method,
            path=request.url.path,
            service=service,
            repo=f"{match['owner']}/{match['repo']}" if match else None,
            authorization=header,
            username=username,
            token=token,
            content_encoding=request.headers.get("content-encoding"),
        )
        with self._lock:
            self._requests.append(record)
        try:
            full_name = self._authorize(record, match, request.method)
            response = await self._run_backend(request, full_name, record, username or "")
        except _Refusal as refusal:
            response = refusal.response
        except Exception:
            self._error(record, traceback.format_exc())
            response = Response("FakeGitHost crashed\n", status_code=500)
        with self._lock:
            record.status = response.status_code
        return response

    def _authorize(self, record: GitRequest, match: re.Match[str] | None, method: str) -> str:
        """The repo's full name as on disk, if the request's token may do what it asks."""
        scope = self.github.token_scope(record.token) if record.token else None
        if scope is None or scope.expired:
            raise _Refusal(
                401,
                "Invalid username or token. Password authentication is not supported.",
                {"WWW-Authenticate": 'Basic realm="GitHub"'},
            )
        with self._lock:
            record.installation_id = scope.installation_id
            record.repositories = copy.copy(scope.repositories)
            record.permissions = dict(scope.permissions)
        expected_method = "GET" if match and match["rest"] == "info/refs" else "POST"
        if match is None or record.service not in NEEDED_LEVEL or method != expected_method:
            raise _Refusal(404, "Not Found")  # GitHub does not serve the dumb protocol
        full_name = next(
            (
                name
                for name in scope.installation_repos
                if record.repo and name.lower() == record.repo.lower()
            ),
            None,
        )
        if full_name is None or (
            scope.repositories is not None and full_name not in scope.repositories
        ):
            raise _Refusal(404, "Repository not found.")
        with self._lock:
            on_disk = self._created.get(full_name.lower())
        if on_disk is None:
            raise _Refusal(404, "Repository not found.")
        level = LEVELS.get(scope.permissions.get("contents", ""), 0)
        if level < NEEDED_LEVEL[str(record.service)]:
            raise _Refusal(403, f"Permission to {full_name}.git denied to {record.username}.")
        return on_disk

    async def _run_backend(
        self, request: Request, full_name: str, record: GitRequest, username: str
    ) -> Response:
        owner, _, name = full_name.partition("/")
        rest = "info/refs" if request.method == "GET" else str(record.service)
        env = {
            **_GIT_ENV,
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{owner}/{name}.git/{rest}",
            "REQUEST_METHOD": request.method,
            "QUERY_STRING": request.url.query,
            "CONTENT_TYPE": request.headers.get("content-type", ""),
            "REMOTE_USER": username or "x-access-token",
            "REMOTE_ADDR": request.client.host if request.client else "127.0.0.1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        optional = {
            "CONTENT_LENGTH": "content-length",
            "GIT_PROTOCOL": "git-protocol",
            "HTTP_CONTENT_ENCODING": "content-encoding",
        }
        for variable, header in optional.items():
            if header in request.headers:
                env[variable] = request.headers[header]
        process = await asyncio.create_subprocess_exec(
            str(self._backend / "git-http-backend"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        stdin, out, err = process.stdin, process.stdout, process.stderr
        if stdin is None or out is None or err is None:
            raise RuntimeError("subprocess pipes missing")
        try:
            async with asyncio.timeout(CGI_TIMEOUT):
                _, stdout, stderr = await asyncio.gather(
                    _feed(request, stdin), out.read(), err.read()
                )
                returncode = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        if returncode != 0:
            self._error(record, f"exit {returncode}: {stderr.decode(errors='replace')}")
        response = self._cgi_response(record, stdout)
        if (
            record.service == RECEIVE_PACK
            and request.method == "POST"
            and response.status_code == 200
        ):
            self.github.sync_pull_refs(full_name)  # a push may have moved a PR's head branch
        return response

    def _cgi_response(self, record: GitRequest, output: bytes) -> Response:
        head, separator, body = output.partition(b"\r\n\r\n")
        if not separator:
            head, separator, body = output.partition(b"\n\n")
        if not separator:
            self._error(record, f"no CGI header block in {output[:200]!r}")
            return Response("git http-backend failed\n", status_code=500)
        status = 200
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() == "status":
                status = int(value.split()[0])
            elif key.strip().lower() not in {"content-length", "transfer-encoding"}:
                headers[key.strip()] = value.strip()
        if status >= 500:
            self._error(record, f"status {status}: {body[:500]!r}")
        return Response(body, status_code=status, headers=headers)

    def _error(self, record: GitRequest, message: str) -> None:
        with self._lock:
            self._errors.append(f"{record.method} {record.path}: {message}")

    # ------------------------------------------------------------------ git plumbing

    def _register_clone_url(self, full_name: str) -> None:
        self.github.set_clone_url(full_name, self.clone_url(full_name))

    def _fast_import(
        self,
        bare: Path,
        branch: str,
        parent: str | None,
        files: dict[str, bytes | str | None],
        message: str,
    ) -> str:
        text = message if message.endswith("\n") else message + "\n"
        stream = bytearray()
        stream += f"commit refs/heads/{branch}\n".encode()
        stream += f"author {IDENTITY}\ncommitter {IDENTITY}\n".encode()
        stream += _data(text.encode())
        if parent is not None:
            stream += f"from {parent}\n".encode()
        for path, content in sorted(files.items()):
            if content is None:
                stream += b"D " + _quote_path(path) + b"\n"
            else:
                stream += b"M 100644 inline " + _quote_path(path) + b"\n"
                stream += _data(content.encode() if isinstance(content, str) else content)
        stream += b"done\n"
        self._git_output(bare, "fast-import", "--quiet", "--done", input=bytes(stream))
        return self._git_output(bare, "rev-parse", f"refs/heads/{branch}").decode().strip()

    @staticmethod
    def _git(
        bare: Path | None, *args: str, input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        prefix = ["git", f"--git-dir={bare}"] if bare is not None else ["git"]
        return subprocess.run(
            [*prefix, *args],
            input=input,
            capture_output=True,
            env=_GIT_ENV,
            check=False,
            timeout=60,
        )

    def _git_output(self, bare: Path | None, *args: str, input: bytes | None = None) -> bytes:
        result = self._git(bare, *args, input=input)
        if result.returncode != 0:
            raise RuntimeError(
                f"git {' '.join(args)} failed ({result.returncode}): "
                + result.stderr.decode(errors="replace")
            )
        return result.stdout


async def _feed(request: Request, stdin: asyncio.StreamWriter) -> None:
    """Stream the request body into the CGI's stdin, then close it."""
    try:
        async for chunk in request.stream():
            if chunk:
                stdin.write(chunk)
                await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the backend stopped reading; its answer says why
    finally:
        stdin.close()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await stdin.wait_closed()


def _basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    """(username, password) of a Basic Authorization header, (None, None) if it is not one."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    username, separator, password = decoded.partition(":")
    if not separator:
        return username, None
    return username, password or None


def _data(payload: bytes) -> bytes:
    return f"data {len(payload)}\n".encode() + payload + b"\n"


def _quote_path(path: str) -> bytes:
    """A path as fast-import reads it (C-style quoted)."""
    if not path or path.startswith("/") or "\0" in path:
        raise ValueError(f"bad path {path!r}")
    escaped = path.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'.encode()
