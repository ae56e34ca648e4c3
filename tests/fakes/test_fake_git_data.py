"""FakeGitHub's Git Data, contents, branch and PR endpoints on FakeGitHost's real bare repos.

Every answer is parsed through githubkit's models (`.parsed_data`), so a wrong shape fails here;
every change made through the API is then read back with real git.
"""

from __future__ import annotations

import base64
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from githubkit import AppAuthStrategy, GitHub, TokenAuthStrategy
from githubkit.cache import MemCacheStrategy
from githubkit.exception import RequestFailed

from tests.conftest import APP_ID
from tests.fakes.git_host import FakeGitHost
from tests.fakes.github import FakeGitHub

INSTALLATION_ID = 77
WIDGETS = "acme/widgets"
OWNER, NAME = WIDGETS.split("/")
BINARY = bytes(range(256)) * 3
FILES: dict[str, bytes | str] = {
    "README.md": "# Widgets\n",
    "src/app.py": "print('hello')\n",
    "docs/old.md": "obsolete\n",
    "docs/keep.md": "keep\n",
    "data/blob.bin": BINARY,
}
PERSON = {"name": "OpenHands", "email": "openhands@example.com", "date": "2026-01-02T03:04:05Z"}


@pytest.fixture
def host(fake_github: FakeGitHub, tmp_path: Path) -> Iterator[FakeGitHost]:
    git_host = FakeGitHost(fake_github, tmp_path / "git")
    with git_host.serving():
        git_host.create_repo(WIDGETS, FILES)
        fake_github.add_installation(INSTALLATION_ID, OWNER, [WIDGETS])
        yield git_host
    git_host.assert_no_errors()


async def _mint(github: FakeGitHub, private_pem: str, **narrowing: Any) -> str:
    app = GitHub(AppAuthStrategy(APP_ID, private_pem), base_url=github.url, trust_env=False)
    response = await app.rest.apps.async_create_installation_access_token(
        INSTALLATION_ID, **narrowing
    )
    return response.parsed_data.token


def _client(github: FakeGitHub, token: str) -> GitHub[Any]:
    return GitHub(
        TokenAuthStrategy(token),
        base_url=github.url,
        cache_strategy=MemCacheStrategy(),
        trust_env=False,
    )


@pytest.fixture
async def gh(host: FakeGitHost, fake_github: FakeGitHub, rsa_keys: tuple[str, str]) -> GitHub[Any]:
    """A client with the bot's publishing token: contents and pull requests, written."""
    token = await _mint(
        fake_github,
        rsa_keys[0],
        repositories=[NAME],
        permissions={"contents": "write", "pull_requests": "write", "metadata": "read"},
    )
    return _client(fake_github, token)


def _git(*args: str, cwd: Path | None = None) -> str:
    """The real git CLI, ignoring any system or user configuration; fails loudly."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": tempfile.gettempdir(),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "LC_ALL": "C",
    }
    result = subprocess.run(
        ["git", "-c", "credential.helper=", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout.decode(errors="replace")


def _work_tree_files(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(root).parts
    }


def _status(excinfo: pytest.ExceptionInfo[RequestFailed]) -> tuple[int, str]:
    response = excinfo.value.response
    return response.status_code, response.json()["message"]


async def _commit(
    gh: GitHub[Any], parent: str, tree: list[dict[str, Any]], message: str = "Change"
) -> str:
    """A commit of `tree` entries on `parent`'s tree."""
    base = (await gh.rest.git.async_get_commit(OWNER, NAME, parent)).parsed_data
    made = await gh.rest.git.async_create_tree(
        OWNER, NAME, base_tree=base.tree.sha, tree=cast(Any, tree)
    )
    commit = await gh.rest.git.async_create_commit(
        OWNER, NAME, message=message, tree=made.parsed_data.sha, parents=[parent]
    )
    return commit.parsed_data.sha


async def test_publish_a_change_and_clone_it(
    gh: GitHub[Any],
    host: FakeGitHost,
    fake_github: FakeGitHub,
    rsa_keys: tuple[str, str],
    tmp_path: Path,
) -> None:
    main = (await gh.rest.git.async_get_ref(OWNER, NAME, "heads/main")).parsed_data
    assert (main.ref, main.object_.type) == ("refs/heads/main", "commit")
    assert main.object_.sha == host.rev_parse(WIDGETS, "main")
    base = (await gh.rest.git.async_get_commit(OWNER, NAME, main.object_.sha)).parsed_data
    assert base.sha == main.object_.sha
    assert base.parents == []
    assert base.message == "Initial commit\n"

    text = await gh.rest.git.async_create_blob(OWNER, NAME, content="new text\n", encoding="utf-8")
    assert text.status_code == 201
    new_binary = bytes(reversed(BINARY))
    binary = await gh.rest.git.async_create_blob(
        OWNER, NAME, content=base64.b64encode(new_binary).decode(), encoding="base64"
    )
    assert binary.parsed_data.url.endswith(f"/git/blobs/{binary.parsed_data.sha}")
    fetched = (await gh.rest.git.async_get_blob(OWNER, NAME, binary.parsed_data.sha)).parsed_data
    assert (base64.b64decode(fetched.content), fetched.size) == (new_binary, len(new_binary))

    entries: list[dict[str, Any]] = [
        {"path": "new.txt", "mode": "100644", "type": "blob", "sha": text.parsed_data.sha},
        {"path": "a/b/c.txt", "mode": "100755", "type": "blob", "content": "nested\n"},
        {"path": "README.md", "mode": "100644", "type": "blob", "content": "# Better\n"},
        {"path": "data/blob.bin", "mode": "100644", "type": "blob", "sha": binary.parsed_data.sha},
        {"path": "docs/old.md", "mode": "100644", "type": "blob", "sha": None},
    ]
    tree = await gh.rest.git.async_create_tree(
        OWNER, NAME, base_tree=base.tree.sha, tree=cast(Any, entries)
    )
    assert tree.status_code == 201
    assert tree.parsed_data.truncated is False
    top = {item.path: (item.type, item.mode) for item in tree.parsed_data.tree}
    assert top == {
        "README.md": ("blob", "100644"),
        "a": ("tree", "040000"),
        "data": ("tree", "040000"),
        "docs": ("tree", "040000"),
        "new.txt": ("blob", "100644"),
        "src": ("tree", "040000"),
    }

    commit = await gh.rest.git.async_create_commit(
        OWNER,
        NAME,
        message="Improve widgets\n\nBody.",
        tree=tree.parsed_data.sha,
        parents=[base.sha],
        author=cast(Any, PERSON),
        committer=cast(Any, PERSON),
    )
    assert commit.status_code == 201
    made = commit.parsed_data
    assert (made.tree.sha, [p.sha for p in made.parents]) == (tree.parsed_data.sha, [base.sha])
    assert (made.author.name, made.author.email) == (PERSON["name"], PERSON["email"])
    assert made.committer.date.isoformat() == "2026-01-02T03:04:05+00:00"
    assert made.message == "Improve widgets\n\nBody."
    assert made.verification.verified is False
    again = await gh.rest.git.async_get_commit(OWNER, NAME, made.sha)
    assert again.parsed_data.model_dump() == made.model_dump()
    # The same inputs make the same commit (the bot relies on it to re-run idempotently).
    twin = await gh.rest.git.async_create_commit(
        OWNER,
        NAME,
        message="Improve widgets\n\nBody.",
        tree=tree.parsed_data.sha,
        parents=[base.sha],
        author=cast(Any, PERSON),
        committer=cast(Any, PERSON),
    )
    assert twin.parsed_data.sha == made.sha

    ref = await gh.rest.git.async_create_ref(
        OWNER, NAME, ref="refs/heads/openhands/fix", sha=made.sha
    )
    assert ref.status_code == 201
    assert (ref.parsed_data.ref, ref.parsed_data.object_.sha) == (
        "refs/heads/openhands/fix",
        made.sha,
    )
    assert host.branches(WIDGETS)["openhands/fix"] == made.sha
    assert host.rev_parse(WIDGETS, "main") == base.sha

    # A real clone over smart HTTP, with a read-only token, sees exactly the change.
    reader = await _mint(fake_github, rsa_keys[0], permissions={"contents": "read"})
    work = tmp_path / "work"
    _git(
        "clone",
        "--quiet",
        "--branch",
        "openhands/fix",
        host.clone_url(WIDGETS, token=reader),
        str(work),
    )
    assert _work_tree_files(work) == {
        "README.md": b"# Better\n",
        "a/b/c.txt": b"nested\n",
        "data/blob.bin": new_binary,
        "docs/keep.md": b"keep\n",
        "new.txt": b"new text\n",
        "src/app.py": b"print('hello')\n",
    }
    assert os.access(work / "a/b/c.txt", os.X_OK)
    assert _git("log", "--format=%an <%ae> %aI|%s", cwd=work).splitlines() == [
        "OpenHands <openhands@example.com> 2026-01-02T03:04:05+00:00|Improve widgets",
        "Fake Git Host <git-host@example.com> 2023-11-14T22:13:20+00:00|Initial commit",
    ]
    bare = str(host.bare_path(WIDGETS))
    changed = _git(f"--git-dir={bare}", "diff", "--name-status", "main", "openhands/fix")
    assert changed.splitlines() == [
        "M\tREADME.md",
        "A\ta/b/c.txt",
        "M\tdata/blob.bin",
        "D\tdocs/old.md",
        "A\tnew.txt",
    ]
    _git(f"--git-dir={bare}", "fsck", "--strict", "--no-dangling")


async def test_commit_defaults_to_the_app_and_trees_without_a_base(
    gh: GitHub[Any], fake_github: FakeGitHub
) -> None:
    tree = await gh.rest.git.async_create_tree(
        OWNER,
        NAME,
        tree=[{"path": "only/file.txt", "mode": "100644", "type": "blob", "content": "solo\n"}],
    )
    assert [(i.path, i.type) for i in tree.parsed_data.tree] == [("only", "tree")]
    recursive = await gh.rest.git.async_get_tree(OWNER, NAME, tree.parsed_data.sha, recursive="1")
    assert [(i.path, i.type) for i in recursive.parsed_data.tree] == [
        ("only", "tree"),
        ("only/file.txt", "blob"),
    ]
    assert recursive.parsed_data.tree[1].size == 5
    commit = await gh.rest.git.async_create_commit(
        OWNER, NAME, message="Orphan", tree=tree.parsed_data.sha, parents=[]
    )
    author = commit.parsed_data.author
    assert author.name == fake_github.bot_login
    assert author.email.endswith(f"+{fake_github.bot_login}@users.noreply.github.com")
    assert commit.parsed_data.committer.model_dump() == author.model_dump()


async def test_tree_and_commit_validation(gh: GitHub[Any], host: FakeGitHost) -> None:
    head = host.rev_parse(WIDGETS, "main")
    blob = "f" * 40
    bad_entries: list[dict[str, Any]] = [
        {"path": "x", "mode": "100644", "type": "blob"},
        {"path": "x", "mode": "100644", "type": "blob", "sha": blob, "content": "x"},
        {"path": "x", "mode": "100644", "type": "blob", "sha": blob},
        {"path": "/x", "mode": "100644", "type": "blob", "content": "x"},
        {"path": "a/../x", "mode": "100644", "type": "blob", "content": "x"},
        {"path": "x", "mode": "100644", "type": "tree", "content": "x"},
    ]
    for entry in bad_entries:
        with pytest.raises(RequestFailed) as excinfo:
            await gh.rest.git.async_create_tree(OWNER, NAME, tree=cast(Any, [entry]))
        assert excinfo.value.response.status_code == 422, entry
    with pytest.raises(RequestFailed) as excinfo:
        await gh.rest.git.async_create_tree(OWNER, NAME, base_tree=head, tree=[])
    assert _status(excinfo)[0] == 422  # a commit is not a tree
    with pytest.raises(RequestFailed) as excinfo:
        await gh.rest.git.async_create_commit(OWNER, NAME, message="m", tree=head, parents=[])
    assert _status(excinfo) == (422, "Tree SHA does not exist")
    tree = (await gh.rest.git.async_get_commit(OWNER, NAME, head)).parsed_data.tree.sha
    with pytest.raises(RequestFailed) as excinfo:
        await gh.rest.git.async_create_commit(OWNER, NAME, message="m", tree=tree, parents=[tree])
    assert _status(excinfo) == (422, "Parent SHA does not exist or is not a commit object")
    with pytest.raises(RequestFailed) as excinfo:
        await gh.rest.git.async_get_commit(OWNER, NAME, tree)
    assert excinfo.value.response.status_code == 404


async def test_refs_fast_forward_force_and_conflicts(gh: GitHub[Any], host: FakeGitHost) -> None:
    base = host.rev_parse(WIDGETS, "main")
    first = await _commit(
        gh, base, [{"path": "one", "mode": "100644", "type": "blob", "content": "1"}]
    )
    second = await _commit(
        gh, first, [{"path": "two", "mode": "100644", "type": "blob", "content": "2"}]
    )
    sideways = await _commit(
        gh, base, [{"path": "other", "mode": "100644", "type": "blob", "content": "x"}]
    )

    await gh.rest.git.async_create_ref(OWNER, NAME, ref="refs/heads/work", sha=first)
    with pytest.raises(RequestFailed) as excinfo:
        await gh.rest.git.async_create_ref(OWNER, NAME, ref="refs/heads/work", sha=second)
    assert _status(excinfo) == (422, "Reference already exists")
    with pytest.raises(RequestFailed) as excinfo:
        await gh.rest.git.async_create_ref(OWNER, NAME, ref="refs/heads/bad..name", sha=first)
    assert excinfo.value.response.status_code == 422
    with pytest.raises(RequestFailed) as excinfo:
        await gh.rest.git.async_create_ref(OWNER, NAME, ref="refs/heads/ghost", sha="e" * 40)
    assert _status(excinfo) == (422, "Object does not exist")

    moved = await gh.rest.git.async_update_ref(OWNER, NAME, "heads/work", sha=second, force=False)
    assert moved.parsed_data.object_.sha == second
    assert host.branches(WIDGETS)["work"] == second
    with pytest.raises(RequestFailed) as excinfo:
        await gh.rest.git.async_update_ref(OWNER, NAME, "heads/work", sha=sideways, force=False)
    assert _status(excinfo) == (422, "Update is not a fast forward")
    assert host.branches(WIDGETS)["work"] == second
    forced = await gh.rest.git.async_update_ref(OWNER, NAME, "heads/work", sha=sideways, force=True)
    assert forced.parsed_data.object_.sha == sideways
    assert host.branches(WIDGETS)["work"] == sideways
    with pytest.raises(RequestFailed) as excinfo:
        await gh.rest.git.async_update_ref(OWNER, NAME, "heads/nothing", sha=first, force=True)
    assert _status(excinfo) == (422, "Reference does not exist")

    with pytest.raises(RequestFailed) as excinfo:
        await gh.rest.git.async_get_ref(OWNER, NAME, "heads/nothing")
    assert excinfo.value.response.status_code == 404
    with pytest.raises(RequestFailed) as excinfo:
        await gh.rest.git.async_get_ref(OWNER, NAME, "heads/wor")  # no prefix matching here
    assert excinfo.value.response.status_code == 404
    matching = await gh.rest.git.async_list_matching_refs(OWNER, NAME, "heads/")
    assert [ref.ref for ref in cast(list[Any], matching.parsed_data)] == [
        "refs/heads/main",
        "refs/heads/work",
    ]
    assert (
        cast(
            list[Any],
            (await gh.rest.git.async_list_matching_refs(OWNER, NAME, "heads/x")).parsed_data,
        )
        == []
    )

    deleted = await gh.rest.git.async_delete_ref(OWNER, NAME, "heads/work")
    assert deleted.status_code == 204
    assert "work" not in host.branches(WIDGETS)


async def test_contents_and_branches(gh: GitHub[Any], host: FakeGitHost) -> None:
    readme = (await gh.rest.repos.async_get_content(OWNER, NAME, "README.md")).parsed_data
    assert not isinstance(readme, list)
    assert readme.type == "file"
    assert (readme.encoding, readme.size, readme.name) == ("base64", 10, "README.md")
    assert base64.b64decode(readme.content) == b"# Widgets\n"
    assert readme.sha == host.rev_parse(WIDGETS, "main:README.md")
    binary = (await gh.rest.repos.async_get_content(OWNER, NAME, "data/blob.bin")).parsed_data
    assert base64.b64decode(getattr(binary, "content", "")) == BINARY

    listing = (await gh.rest.repos.async_get_content(OWNER, NAME, "docs")).parsed_data
    assert isinstance(listing, list)
    assert [(item.type, item.path) for item in listing] == [
        ("file", "docs/keep.md"),
        ("file", "docs/old.md"),
    ]
    root = cast(list[Any], (await gh.rest.repos.async_get_content(OWNER, NAME, "")).parsed_data)
    assert [(item.type, item.name) for item in root] == [
        ("file", "README.md"),
        ("dir", "data"),
        ("dir", "docs"),
        ("dir", "src"),
    ]

    feature = host.commit(WIDGETS, {"README.md": "# Feature\n"}, branch="feature")
    on_branch = await gh.rest.repos.async_get_content(OWNER, NAME, "README.md", ref="feature")
    assert base64.b64decode(getattr(on_branch.parsed_data, "content", "")) == b"# Feature\n"
    by_sha = await gh.rest.repos.async_get_content(OWNER, NAME, "README.md", ref=feature)
    assert base64.b64decode(getattr(by_sha.parsed_data, "content", "")) == b"# Feature\n"
    with pytest.raises(RequestFailed) as excinfo:
        await gh.rest.repos.async_get_content(OWNER, NAME, ".github/pull_request_template.md")
    assert excinfo.value.response.status_code == 404
    with pytest.raises(RequestFailed) as excinfo:
        await gh.rest.repos.async_get_content(OWNER, NAME, "README.md", ref="nope")
    assert _status(excinfo) == (404, "No commit found for the ref nope")

    branch = (await gh.rest.repos.async_get_branch(OWNER, NAME, "feature")).parsed_data
    assert (branch.name, branch.commit.sha, branch.protected) == ("feature", feature, False)
    assert branch.commit.parents[0].sha == host.rev_parse(WIDGETS, "main")
    with pytest.raises(RequestFailed) as excinfo:
        await gh.rest.repos.async_get_branch(OWNER, NAME, "nope")
    assert excinfo.value.response.status_code == 404


async def test_pull_requests_follow_the_real_branches(
    gh: GitHub[Any], host: FakeGitHost, fake_github: FakeGitHub
) -> None:
    main = host.rev_parse(WIDGETS, "main")
    tip = host.commit(WIDGETS, {"fix.txt": "fix\n"}, branch="fix")
    host.create_ref(WIDGETS, "refs/heads/same", main)

    created = await gh.rest.pulls.async_create(
        OWNER, NAME, title="Fix", head="fix", base="main", body="Fixes #1", draft=True
    )
    assert created.status_code == 201
    pull = created.parsed_data
    assert (pull.head.ref, pull.head.sha, pull.base.sha, pull.draft) == ("fix", tip, main, True)
    assert host.refs(WIDGETS, "refs/pull/") == {f"refs/pull/{pull.number}/head": tip}

    listed = await gh.rest.pulls.async_list(OWNER, NAME, head=f"{OWNER}:fix", state="open")
    assert [p.number for p in cast(list[Any], listed.parsed_data)] == [pull.number]
    nothing = await gh.rest.pulls.async_list(OWNER, NAME, head=f"{OWNER}:other", state="open")
    assert cast(list[Any], nothing.parsed_data) == []
    closed = await gh.rest.pulls.async_list(OWNER, NAME, head=f"{OWNER}:fix", state="closed")
    assert cast(list[Any], closed.parsed_data) == []

    # The head moves with its branch, by push or through the API, and so does refs/pull/N/head.
    newer = host.commit(WIDGETS, {"fix.txt": "better fix\n"}, branch="fix")
    assert (await gh.rest.pulls.async_get(OWNER, NAME, pull.number)).parsed_data.head.sha == newer
    assert host.rev_parse(WIDGETS, f"refs/pull/{pull.number}/head") == newer
    newest = await _commit(
        gh, newer, [{"path": "fix.txt", "mode": "100644", "type": "blob", "content": "best\n"}]
    )
    await gh.rest.git.async_update_ref(OWNER, NAME, "heads/fix", sha=newest, force=False)
    assert (await gh.rest.pulls.async_get(OWNER, NAME, pull.number)).parsed_data.head.sha == newest
    assert host.rev_parse(WIDGETS, f"refs/pull/{pull.number}/head") == newest

    refusals = [
        ("fix", f"A pull request already exists for {OWNER}:fix."),
        (f"{OWNER}:fix", f"A pull request already exists for {OWNER}:fix."),
        ("same", "No commits between main and same"),
        ("main", "No commits between main and main"),
    ]
    for head, message in refusals:
        with pytest.raises(RequestFailed) as excinfo:
            await gh.rest.pulls.async_create(OWNER, NAME, title="Again", head=head, base="main")
        assert excinfo.value.response.status_code == 422
        assert excinfo.value.response.json()["errors"][0]["message"] == message
    for head, base, field in [("missing", "main", "head"), ("fix", "missing", "base")]:
        with pytest.raises(RequestFailed) as excinfo:
            await gh.rest.pulls.async_create(OWNER, NAME, title="Nope", head=head, base=base)
        assert excinfo.value.response.json()["errors"] == [
            {"resource": "PullRequest", "field": field, "code": "invalid"}
        ]

    # Injected failures work on these routes too.
    fake_github.fail_next(
        "POST", rf"^/repos/{WIDGETS}/pulls$", 422, body={"message": "Validation Failed"}
    )
    host.commit(WIDGETS, {"x.txt": "x\n"}, branch="other")
    with pytest.raises(RequestFailed) as excinfo:
        await gh.rest.pulls.async_create(OWNER, NAME, title="X", head="other", base="main")
    assert excinfo.value.response.status_code == 422
    second = await gh.rest.pulls.async_create(OWNER, NAME, title="X", head="other", base="main")
    assert second.parsed_data.number == pull.number + 1
    # A head without its "owner:" part is ignored by GitHub's list filter: every PR comes back.
    everything = await gh.rest.pulls.async_list(OWNER, NAME, head="fix", state="open")
    assert [p.number for p in cast(list[Any], everything.parsed_data)] == [
        second.parsed_data.number,
        pull.number,
    ]
    assert [p["head"] for p in fake_github.created_pulls] == ["fix", "other"]
    assert [r.status for r in fake_github.requests_to("POST", r"/pulls$")][-2:] == [422, 201]


async def test_reply_in_a_review_thread(
    gh: GitHub[Any], fake_github: FakeGitHub, host: FakeGitHost
) -> None:
    tip = host.commit(WIDGETS, {"fix.txt": "fix\n"}, branch="fix")
    fake_github.add_pull(WIDGETS, 5, "fix", "0" * 40, user="alice")
    root = fake_github.add_review_comment(
        WIDGETS, 5, "@openhands-test rename this", "alice", path="fix.txt", line=1
    )

    reply = await gh.rest.pulls.async_create_reply_for_review_comment(
        OWNER, NAME, 5, root, body="Renamed."
    )
    assert reply.status_code == 201
    made = reply.parsed_data
    assert (made.in_reply_to_id, made.body, made.path, made.commit_id) == (
        root,
        "Renamed.",
        "fix.txt",
        tip,
    )
    assert made.user is not None
    assert made.user.login == fake_github.bot_login
    nested = await gh.rest.pulls.async_create_reply_for_review_comment(
        OWNER, NAME, 5, made.id, body="And again."
    )
    assert nested.parsed_data.in_reply_to_id == root  # replies join the thread's first comment
    assert [c["body"] for c in fake_github.review_comments.values()] == [
        "@openhands-test rename this",
        "Renamed.",
        "And again.",
    ]
    fake_github.add_pull(WIDGETS, 6, "fix", tip, user="alice")
    with pytest.raises(RequestFailed) as excinfo:
        await gh.rest.pulls.async_create_reply_for_review_comment(
            OWNER, NAME, 6, root, body="Wrong PR"
        )
    assert excinfo.value.response.status_code == 404


async def test_permissions(
    host: FakeGitHost, fake_github: FakeGitHub, rsa_keys: tuple[str, str]
) -> None:
    reader = _client(
        fake_github, await _mint(fake_github, rsa_keys[0], permissions={"contents": "read"})
    )
    assert (await reader.rest.git.async_get_ref(OWNER, NAME, "heads/main")).status_code == 200
    with pytest.raises(RequestFailed) as excinfo:
        await reader.rest.git.async_create_blob(OWNER, NAME, content="x", encoding="utf-8")
    assert _status(excinfo) == (403, "Resource not accessible by integration")
    with pytest.raises(RequestFailed) as excinfo:
        await reader.rest.pulls.async_create(OWNER, NAME, title="t", head="main", base="main")
    assert excinfo.value.response.status_code == 403

    issues_only = _client(
        fake_github, await _mint(fake_github, rsa_keys[0], permissions={"issues": "write"})
    )
    with pytest.raises(RequestFailed) as excinfo:
        await issues_only.rest.repos.async_get_content(OWNER, NAME, "README.md")
    assert excinfo.value.response.status_code == 403

    async with httpx.AsyncClient(trust_env=False) as client:
        anonymous = await client.get(f"{fake_github.url}/repos/{WIDGETS}/git/ref/heads/main")
    assert anonymous.status_code == 401
    assert fake_github.requests_to("GET", r"/git/ref/heads/main$")[-1].status == 401


async def test_a_repo_without_a_bare_repository_fails_loudly(rsa_keys: tuple[str, str]) -> None:
    github = FakeGitHub(APP_ID, rsa_keys[1])
    github.add_installation(INSTALLATION_ID, OWNER, [WIDGETS])
    with github.serving():
        gh = _client(github, await _mint(github, rsa_keys[0]))
        with pytest.raises(RequestFailed) as excinfo:
            await gh.rest.git.async_get_ref(OWNER, NAME, "heads/main")
        assert _status(excinfo) == (409, "Git Repository is empty.")
        # PRs on repos without one keep working on made-up shas.
        created = await gh.rest.pulls.async_create(OWNER, NAME, title="t", head="x", base="main")
        assert created.status_code == 201
    assert len(github.unexpected) == 1
    assert "has no bare repository" in github.unexpected[0]
