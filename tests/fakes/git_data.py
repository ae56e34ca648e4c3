"""GitHub's Git Data, contents and branch endpoints, answered from a real bare repository.

`BareRepo` is git plumbing on one bare repository (objects, trees built in a temporary index,
commits, refs with old-value checks). `GitDataApi` answers one request against one repository in
the shapes githubkit's models parse, raising `GitDataError` for GitHub's 404/409/422 answers.
FakeGitHub does the routing, authentication and recording; this module knows nothing of tokens.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

HTML_BASE = "https://github.com"
ZERO_SHA = "0" * 40
# Git Data API tree modes and the object type each one holds.
MODE_TYPES = {
    "100644": "blob",
    "100755": "blob",
    "120000": "blob",
    "040000": "tree",
    "160000": "commit",
}
# GitHub answers a file's content inline only up to 1 MB; bigger files get encoding "none".
MAX_INLINE_CONTENT = 1024 * 1024
# Hermetic git: no system or user configuration leaks into the repositories.
GIT_ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "LC_ALL": "C",
}
_SHA = re.compile(r"[0-9a-f]{40}")
_IDENT = re.compile(r"(?P<name>.*) <(?P<email>[^>]*)> (?P<seconds>-?\d+) (?P<offset>[+-]\d{4})")


class GitDataError(Exception):
    """An error answer: `status`, GitHub's `message` and extra body fields (e.g. `errors`)."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.extra = extra


def _not_found(message: str = "Not Found") -> GitDataError:
    return GitDataError(404, message)


def _unprocessable(message: str) -> GitDataError:
    return GitDataError(422, message)


class GitFailed(RuntimeError):
    """A git command that should not have failed did."""


@dataclass(frozen=True)
class TreeEntry:
    mode: str  # six digits, as the API writes them (040000 for trees)
    type: str  # blob, tree or commit
    sha: str
    path: str
    size: int | None = None


@dataclass(frozen=True)
class Signature:
    name: str
    email: str
    date: datetime

    def git(self) -> str:
        """The `GIT_*_DATE` form: seconds since the epoch and the UTC offset."""
        offset = self.date.utcoffset() or timedelta(0)
        minutes = int(offset.total_seconds()) // 60
        sign = "-" if minutes < 0 else "+"
        hours, rest = divmod(abs(minutes), 60)
        return f"{int(self.date.timestamp())} {sign}{hours:02d}{rest:02d}"

    def json(self) -> dict[str, str]:
        return {"name": self.name, "email": self.email, "date": _iso(self.date)}


@dataclass
class CommitInfo:
    sha: str
    tree: str
    parents: list[str]
    author: Signature
    committer: Signature
    message: str
    signed: bool = False


@dataclass
class BareRepo:
    """Git plumbing on one bare repository."""

    path: Path
    env: Mapping[str, str] = field(default_factory=lambda: dict(GIT_ENV))

    def run(
        self,
        *args: str,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["git", f"--git-dir={self.path}", *args],
            input=input,
            capture_output=True,
            env={**self.env, **(env or {})},
            check=False,
            timeout=60,
        )

    def output(
        self, *args: str, input: bytes | None = None, env: Mapping[str, str] | None = None
    ) -> bytes:
        result = self.run(*args, input=input, env=env)
        if result.returncode != 0:
            raise GitFailed(
                f"git {' '.join(args)} failed ({result.returncode}) in {self.path}: "
                + result.stderr.decode(errors="replace")
            )
        return result.stdout

    # ------------------------------------------------------------------ objects

    def object_type(self, sha: str) -> str | None:
        """blob, tree, commit or tag, None if `sha` is not a full sha of an object here."""
        if not _SHA.fullmatch(sha):
            return None
        result = self.run("cat-file", "-t", sha)
        return result.stdout.decode().strip() if result.returncode == 0 else None

    def write_blob(self, data: bytes) -> str:
        return self.output("hash-object", "-w", "--stdin", input=data).decode().strip()

    def read_blob(self, sha: str) -> bytes:
        return self.output("cat-file", "blob", sha)

    def ls_tree(self, treeish: str, *, recursive: bool = False) -> list[TreeEntry]:
        """Entries of a tree (with `recursive`, every blob and gitlink, and every subtree)."""
        args = ["ls-tree", "-z", "--long", "--full-tree"]
        if recursive:
            args += ["-r", "-t"]
        entries = []
        for line in self.output(*args, treeish).split(b"\0"):
            if not line:
                continue
            meta, _, path = line.decode(errors="surrogateescape").partition("\t")
            mode, kind, sha, size = meta.split(maxsplit=3)
            entries.append(
                TreeEntry(mode, kind, sha, path, int(size) if size.strip() != "-" else None)
            )
        return entries

    def entry_at(self, treeish: str, path: str) -> TreeEntry | None:
        """The entry at `path` in a tree-ish, None if absent."""
        result = self.run("ls-tree", "-z", "--long", "--full-tree", treeish, "--", path)
        if result.returncode != 0:
            return None
        for line in result.stdout.split(b"\0"):
            meta, _, found = line.decode(errors="surrogateescape").partition("\t")
            if found == path:
                mode, kind, sha, size = meta.split(maxsplit=3)
                return TreeEntry(mode, kind, sha, path, None if size.strip() == "-" else int(size))
        return None

    def build_tree(self, base_tree: str | None, changes: list[tuple[str, TreeEntry | None]]) -> str:
        """Write the tree of `base_tree` (or nothing) with `changes` applied, in order.

        A change is (path, entry) to put `entry` at `path` (a tree entry puts its whole subtree
        there), or (path, None) to delete whatever is at `path`, file or directory. The tree is
        written through a temporary index (`GIT_INDEX_FILE`) with `update-index --index-info`.
        """
        files: dict[str, tuple[str, str]] = {}  # path → (mode, sha) of every blob and gitlink
        if base_tree is not None:
            for item in self.ls_tree(base_tree, recursive=True):
                if item.type != "tree":
                    files[item.path] = (item.mode, item.sha)
        for path, entry in changes:
            _remove(files, path)
            if entry is None:
                continue
            # A file where a directory of the new path was: it gives way, as on GitHub.
            parts = path.split("/")
            for depth in range(1, len(parts)):
                files.pop("/".join(parts[:depth]), None)
            if entry.type == "tree":
                for item in self.ls_tree(entry.sha, recursive=True):
                    if item.type != "tree":
                        files[f"{path}/{item.path}"] = (item.mode, item.sha)
            else:
                files[path] = (entry.mode, entry.sha)
        lines = "".join(f"{mode} {sha}\t{path}\0" for path, (mode, sha) in sorted(files.items()))
        with tempfile.TemporaryDirectory(prefix="fake-git-index-") as scratch:
            env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
            self.output(
                "update-index",
                "-z",
                "--index-info",
                input=lines.encode(errors="surrogateescape"),
                env=env,
            )
            return self.output("write-tree", env=env).decode().strip()

    def commit_tree(
        self,
        tree: str,
        parents: list[str],
        message: str,
        author: Signature,
        committer: Signature,
    ) -> str:
        args = ["commit-tree", tree]
        for parent in parents:
            args += ["-p", parent]
        env = {
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_AUTHOR_DATE": author.git(),
            "GIT_COMMITTER_NAME": committer.name,
            "GIT_COMMITTER_EMAIL": committer.email,
            "GIT_COMMITTER_DATE": committer.git(),
        }
        return self.output(*args, input=message.encode(), env=env).decode().strip()

    def read_commit(self, sha: str) -> CommitInfo:
        raw = self.output("cat-file", "commit", sha).decode(errors="replace")
        head, _, message = raw.partition("\n\n")
        headers: list[tuple[str, str]] = []
        for line in head.split("\n"):
            if line.startswith(" ") and headers:  # a continuation (gpgsig, mergetag)
                key, value = headers[-1]
                headers[-1] = (key, value + "\n" + line[1:])
            else:
                key, _, value = line.partition(" ")
                headers.append((key, value))
        values: dict[str, list[str]] = {}
        for key, value in headers:
            values.setdefault(key, []).append(value)
        return CommitInfo(
            sha=sha,
            tree=values["tree"][0],
            parents=values.get("parent", []),
            author=_signature(values["author"][0]),
            committer=_signature(values["committer"][0]),
            message=message,
            signed="gpgsig" in values,
        )

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        return self.run("merge-base", "--is-ancestor", ancestor, descendant).returncode == 0

    # ------------------------------------------------------------------ refs

    def commit_sha(self, revision: str) -> str | None:
        """The commit a branch, tag, ref or sha names, None if none."""
        result = self.run(
            "rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}"
        )
        return result.stdout.decode().strip() if result.returncode == 0 else None

    def tree_sha(self, revision: str) -> str | None:
        """The tree a tree, commit, branch or tag names, None if none."""
        result = self.run(
            "rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{tree}}"
        )
        return result.stdout.decode().strip() if result.returncode == 0 else None

    def refs(self, prefix: str = "refs/") -> dict[str, str]:
        """Every ref whose name starts with `prefix` (a plain string prefix) → its sha."""
        output = self.output("for-each-ref", "--format=%(objectname) %(refname)")
        found: dict[str, str] = {}
        for line in output.decode().splitlines():
            sha, _, name = line.partition(" ")
            if name.startswith(prefix):
                found[name] = sha
        return found

    def set_ref(self, name: str, new: str, old: str | None) -> bool:
        """Point `name` at `new` if it now points at `old` (None: if it does not exist)."""
        return self.run("update-ref", name, new, old or ZERO_SHA).returncode == 0

    def delete_ref(self, name: str, old: str) -> bool:
        return self.run("update-ref", "-d", name, old).returncode == 0

    def valid_ref_name(self, name: str) -> bool:
        return self.run("check-ref-format", name).returncode == 0


def _remove(files: dict[str, tuple[str, str]], path: str) -> None:
    """Drop `path` and everything under it."""
    files.pop(path, None)
    prefix = path + "/"
    for name in [name for name in files if name.startswith(prefix)]:
        del files[name]


def _signature(value: str) -> Signature:
    match = _IDENT.fullmatch(value)
    if match is None:
        raise GitFailed(f"unparsable identity {value!r}")
    offset = match["offset"]
    minutes = int(offset[1:3]) * 60 + int(offset[3:5])
    zone = timezone(timedelta(minutes=-minutes if offset[0] == "-" else minutes))
    return Signature(
        match["name"], match["email"], datetime.fromtimestamp(int(match["seconds"]), zone)
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _node_id(kind: str, key: str) -> str:
    return base64.b64encode(f"{kind}{key}".encode()).decode()


def _wrapped_base64(data: bytes) -> str:
    """Base64 in 60-character lines, each ending in a newline, as GitHub sends content."""
    encoded = base64.b64encode(data).decode()
    return "".join(encoded[i : i + 60] + "\n" for i in range(0, len(encoded), 60))


@dataclass
class GitRequest:
    """What a `GitDataApi` operation gets: URL params, query and JSON body."""

    params: Mapping[str, str]
    query: Mapping[str, str]
    body: dict[str, Any]


@dataclass
class GitDataApi:
    """The Git Data, contents and branch endpoints of one repository, backed by `repo`.

    `actor` is (name, email) of the authenticated identity: the author and committer of a commit
    created without them. `on_ref_change` is called after any ref moves through this API.
    """

    repo: BareRepo
    full_name: str
    default_branch: str
    api_base: str
    actor: tuple[str, str]
    on_ref_change: Callable[[], None] = lambda: None

    @property
    def api(self) -> str:
        return f"{self.api_base}/repos/{self.full_name}"

    @property
    def html(self) -> str:
        return f"{HTML_BASE}/{self.full_name}"

    # ------------------------------------------------------------------ blobs

    def create_blob(self, request: GitRequest) -> tuple[int, Any]:
        content = request.body.get("content")
        encoding = request.body.get("encoding", "utf-8")
        if not isinstance(content, str):
            raise _unprocessable('Invalid request.\n\n"content" wasn\'t supplied.')
        if encoding in ("utf-8", "utf8"):
            data = content.encode()
        elif encoding == "base64":
            try:
                data = base64.b64decode(content)
            except binascii.Error:
                raise _unprocessable("Invalid Base64 content") from None
        else:
            raise _unprocessable(f"Invalid encoding: {encoding}")
        sha = self.repo.write_blob(data)
        return 201, {"sha": sha, "url": f"{self.api}/git/blobs/{sha}"}

    def get_blob(self, request: GitRequest) -> tuple[int, Any]:
        sha = request.params["sha"]
        if self.repo.object_type(sha) != "blob":
            raise _not_found()
        data = self.repo.read_blob(sha)
        return 200, {
            "sha": sha,
            "node_id": _node_id("04:Blob", sha),
            "size": len(data),
            "url": f"{self.api}/git/blobs/{sha}",
            "content": _wrapped_base64(data),
            "encoding": "base64",
        }

    # ------------------------------------------------------------------ trees

    def create_tree(self, request: GitRequest) -> tuple[int, Any]:
        body = request.body
        base_tree = body.get("base_tree")
        if base_tree is not None and (
            not isinstance(base_tree, str) or self.repo.object_type(base_tree) != "tree"
        ):
            raise _unprocessable("Invalid tree info: base_tree is not a tree sha")
        items = body.get("tree")
        if not isinstance(items, list):
            raise _unprocessable('Invalid request.\n\n"tree" wasn\'t supplied.')
        changes = [self._tree_change(item) for item in items]
        sha = self.repo.build_tree(base_tree, changes)
        return 201, self._tree_json(sha, recursive=False)

    def _tree_change(self, item: Any) -> tuple[str, TreeEntry | None]:
        if not isinstance(item, dict):
            raise _unprocessable("Invalid tree info")
        path, mode, kind = item.get("path"), item.get("mode"), item.get("type")
        if not isinstance(path, str) or not _valid_path(path):
            raise _unprocessable(f"tree.path {path!r} is invalid")
        if mode not in MODE_TYPES:
            raise _unprocessable(f"tree.mode {mode!r} is invalid for {path}")
        if kind != MODE_TYPES[mode]:
            raise _unprocessable(f"tree.type {kind!r} does not match mode {mode} for {path}")
        has_sha, has_content = "sha" in item, "content" in item
        if has_sha == has_content:
            raise _unprocessable(
                "Must supply either tree.sha or tree.content. "
                "Request will be rejected if both are present."
            )
        if has_sha and item["sha"] is None:
            return path, None
        if has_content:
            content = item["content"]
            if kind != "blob" or not isinstance(content, str):
                raise _unprocessable(f"tree.content is only for blobs ({path})")
            return path, TreeEntry(mode, kind, self.repo.write_blob(content.encode()), path)
        sha = item["sha"]
        if not isinstance(sha, str) or (kind != "commit" and self.repo.object_type(sha) != kind):
            raise _unprocessable(f"tree.sha {sha} is not a valid {kind}")
        return path, TreeEntry(mode, kind, sha, path)

    def get_tree(self, request: GitRequest) -> tuple[int, Any]:
        sha = self.repo.tree_sha(request.params["sha"])  # GitHub takes a branch name too
        if sha is None:
            raise _not_found()
        recursive = request.query.get("recursive") not in (None, "", "0", "false")
        return 200, self._tree_json(sha, recursive=recursive)

    def _tree_json(self, sha: str, *, recursive: bool) -> dict[str, Any]:
        entries = []
        for entry in self.repo.ls_tree(sha, recursive=recursive):
            item: dict[str, Any] = {
                "path": entry.path,
                "mode": entry.mode,
                "type": entry.type,
                "sha": entry.sha,
            }
            if entry.type == "blob":
                item.update(size=entry.size, url=f"{self.api}/git/blobs/{entry.sha}")
            elif entry.type == "tree":
                item["url"] = f"{self.api}/git/trees/{entry.sha}"
            entries.append(item)
        return {
            "sha": sha,
            "url": f"{self.api}/git/trees/{sha}",
            "tree": entries,
            "truncated": False,
        }

    # ------------------------------------------------------------------ commits

    def create_commit(self, request: GitRequest) -> tuple[int, Any]:
        body = request.body
        message, tree = body.get("message"), body.get("tree")
        if not isinstance(message, str):
            raise _unprocessable('Invalid request.\n\n"message" wasn\'t supplied.')
        if not isinstance(tree, str) or self.repo.object_type(tree) != "tree":
            raise _unprocessable("Tree SHA does not exist")
        parents = body.get("parents", [])
        if not isinstance(parents, list):
            raise _unprocessable('Invalid request.\n\n"parents" is not an array.')
        for parent in parents:
            if not isinstance(parent, str) or self.repo.object_type(parent) != "commit":
                raise _unprocessable("Parent SHA does not exist or is not a commit object")
        if body.get("signature"):
            raise _unprocessable("FakeGitHub does not verify commit signatures")
        now = datetime.now(UTC).replace(microsecond=0)
        author = _person(body.get("author"), "author", now) or Signature(*self.actor, now)
        committer = _person(body.get("committer"), "committer", now) or author
        sha = self.repo.commit_tree(tree, parents, message, author, committer)
        return 201, self._commit_json(self.repo.read_commit(sha))

    def get_commit(self, request: GitRequest) -> tuple[int, Any]:
        sha = request.params["sha"]
        if self.repo.object_type(sha) != "commit":
            raise _not_found()
        return 200, self._commit_json(self.repo.read_commit(sha))

    def _commit_json(self, commit: CommitInfo) -> dict[str, Any]:
        return {
            "sha": commit.sha,
            "node_id": _node_id("06:Commit", commit.sha),
            "url": f"{self.api}/git/commits/{commit.sha}",
            "html_url": f"{self.html}/commit/{commit.sha}",
            "author": commit.author.json(),
            "committer": commit.committer.json(),
            "message": commit.message,
            "tree": {"sha": commit.tree, "url": f"{self.api}/git/trees/{commit.tree}"},
            "parents": [
                {
                    "sha": parent,
                    "url": f"{self.api}/git/commits/{parent}",
                    "html_url": f"{self.html}/commit/{parent}",
                }
                for parent in commit.parents
            ],
            "verification": {
                "verified": False,
                "reason": "unverified" if commit.signed else "unsigned",
                "signature": None,
                "payload": None,
                "verified_at": None,
            },
        }

    # ------------------------------------------------------------------ refs

    def get_ref(self, request: GitRequest) -> tuple[int, Any]:
        name = _full_ref(request.params["ref"])
        sha = self.repo.refs(name).get(name)
        if sha is None:
            raise _not_found()
        return 200, self._ref_json(name, sha)

    def list_matching_refs(self, request: GitRequest) -> tuple[int, Any]:
        prefix = _full_ref(request.params["ref"]) if request.params["ref"] else "refs/"
        return 200, [self._ref_json(name, sha) for name, sha in self.repo.refs(prefix).items()]

    def create_ref(self, request: GitRequest) -> tuple[int, Any]:
        name, sha = request.body.get("ref"), request.body.get("sha")
        if not isinstance(name, str) or not isinstance(sha, str):
            raise _unprocessable('Invalid request.\n\n"ref", "sha" weren\'t supplied.')
        if not name.startswith("refs/") or name.count("/") < 2:
            raise _unprocessable(f"{name} is not a valid ref name.")
        if not self.repo.valid_ref_name(name):
            raise _unprocessable("Reference name is invalid")
        if self.repo.object_type(sha) is None:
            raise _unprocessable("Object does not exist")
        if not self.repo.set_ref(name, sha, None):
            raise _unprocessable("Reference already exists")
        self.on_ref_change()
        return 201, self._ref_json(name, sha)

    def update_ref(self, request: GitRequest) -> tuple[int, Any]:
        name = _full_ref(request.params["ref"])
        sha, force = request.body.get("sha"), request.body.get("force", False)
        if not isinstance(sha, str):
            raise _unprocessable('Invalid request.\n\n"sha" wasn\'t supplied.')
        old = self.repo.refs(name).get(name)
        if old is None:
            raise _unprocessable("Reference does not exist")
        if self.repo.object_type(sha) is None:
            raise _unprocessable("Object does not exist")
        if not force and not self.repo.is_ancestor(old, sha):
            raise _unprocessable("Update is not a fast forward")
        if not self.repo.set_ref(name, sha, old):  # it moved since we looked
            raise _unprocessable("Update is not a fast forward")
        self.on_ref_change()
        return 200, self._ref_json(name, sha)

    def delete_ref(self, request: GitRequest) -> tuple[int, Any]:
        name = _full_ref(request.params["ref"])
        old = self.repo.refs(name).get(name)
        if old is None or not self.repo.delete_ref(name, old):
            raise _unprocessable("Reference does not exist")
        self.on_ref_change()
        return 204, None

    def _ref_json(self, name: str, sha: str) -> dict[str, Any]:
        kind = self.repo.object_type(sha) or "commit"
        return {
            "ref": name,
            "node_id": _node_id("03:Ref", f"{self.full_name}:{name}"),
            "url": f"{self.api}/git/{name}",
            "object": {"sha": sha, "type": kind, "url": f"{self.api}/git/{kind}s/{sha}"},
        }

    # ------------------------------------------------------------------ contents and branches

    def get_content(self, request: GitRequest) -> tuple[int, Any]:
        path = request.params.get("path", "").strip("/")
        ref = request.query.get("ref") or self.default_branch
        commit = self.repo.commit_sha(ref)
        if commit is None:
            raise _not_found(f"No commit found for the ref {ref}")
        if not path:
            return 200, self._directory_json(commit, ref, "")
        entry = self.repo.entry_at(commit, path)
        if entry is None:
            raise _not_found()
        if entry.type == "tree":
            return 200, self._directory_json(commit, ref, path)
        data = self._content_item(entry, ref)
        if data["type"] == "file":
            blob = self.repo.read_blob(entry.sha)
            inline = len(blob) <= MAX_INLINE_CONTENT
            data.update(
                content=_wrapped_base64(blob) if inline else "",
                encoding="base64" if inline else "none",
            )
        elif data["type"] == "symlink":
            data["target"] = self.repo.read_blob(entry.sha).decode(errors="replace")
        return 200, data

    def _directory_json(self, commit: str, ref: str, path: str) -> list[dict[str, Any]]:
        tree = f"{commit}:{path}" if path else f"{commit}^{{tree}}"
        entries = self.repo.ls_tree(tree)
        return [
            self._content_item(
                TreeEntry(e.mode, e.type, e.sha, f"{path}/{e.path}" if path else e.path, e.size),
                ref,
            )
            for e in entries
        ]

    def _content_item(self, entry: TreeEntry, ref: str) -> dict[str, Any]:
        kind = {"tree": "dir", "commit": "submodule"}.get(entry.type, "file")
        if entry.mode == "120000":
            kind = "symlink"
        url = f"{self.api}/contents/{entry.path}?ref={ref}"
        git_url = (
            None
            if kind == "submodule"
            else f"{self.api}/git/{'trees' if kind == 'dir' else 'blobs'}/{entry.sha}"
        )
        html_url = f"{self.html}/{'tree' if kind == 'dir' else 'blob'}/{ref}/{entry.path}"
        download = (
            f"https://raw.githubusercontent.com/{self.full_name}/{ref}/{entry.path}"
            if kind in {"file", "symlink"}
            else None
        )
        return {
            "type": kind,
            "size": entry.size or 0,
            "name": entry.path.rsplit("/", 1)[-1],
            "path": entry.path,
            "sha": entry.sha,
            "url": url,
            "git_url": git_url,
            "html_url": html_url,
            "download_url": download,
            "_links": {"self": url, "git": git_url, "html": html_url},
        }

    def get_branch(self, request: GitRequest) -> tuple[int, Any]:
        name = request.params["branch"]
        sha = self.repo.refs(f"refs/heads/{name}").get(f"refs/heads/{name}")
        if sha is None:
            raise _not_found("Branch not found")
        commit = self.repo.read_commit(sha)
        git_commit = self._commit_json(commit)
        protection_url = f"{self.api}/branches/{name}/protection"
        return 200, {
            "name": name,
            "commit": {
                "sha": sha,
                "node_id": git_commit["node_id"],
                "url": f"{self.api}/commits/{sha}",
                "html_url": git_commit["html_url"],
                "comments_url": f"{self.api}/commits/{sha}/comments",
                "commit": {
                    "url": git_commit["url"],
                    "author": git_commit["author"],
                    "committer": git_commit["committer"],
                    "message": commit.message,
                    "comment_count": 0,
                    "tree": git_commit["tree"],
                    "verification": git_commit["verification"],
                },
                "author": None,
                "committer": None,
                "parents": git_commit["parents"],
            },
            "_links": {"self": f"{self.api}/branches/{name}", "html": f"{self.html}/tree/{name}"},
            "protected": False,
            "protection": {
                "enabled": False,
                "required_status_checks": {
                    "enforcement_level": "off",
                    "contexts": [],
                    "checks": [],
                },
            },
            "protection_url": protection_url,
        }


def _full_ref(ref: str) -> str:
    """``heads/main`` (or ``refs/heads/main``) → ``refs/heads/main``."""
    return ref if ref.startswith("refs/") else f"refs/{ref}"


def _valid_path(path: str) -> bool:
    parts = path.split("/")
    return (
        bool(path)
        and all(part not in {"", ".", "..", ".git"} for part in parts)
        and ("\0" not in path)
    )


def _person(value: Any, role: str, now: datetime) -> Signature | None:
    """The author or committer a new commit's body gives, None if it gives none."""
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(value.get(key), str) and value[key] for key in ("name", "email")
    ):
        raise _unprocessable(f"Invalid request.\n\n{role} needs a name and an email.")
    date = now
    if value.get("date") is not None:
        try:
            date = datetime.fromisoformat(str(value["date"]).replace("Z", "+00:00"))
        except ValueError:
            raise _unprocessable(f"Invalid request.\n\n{role}.date is not a timestamp.") from None
        if date.tzinfo is None:
            date = date.replace(tzinfo=UTC)
    return Signature(value["name"], value["email"], date)
