"""Comparing two commits (`GET /repos/{o}/{r}/compare/{base}...{head}`), answered by real git.

Docs: https://docs.github.com/rest/commits/commits#compare-two-commits
"""

from __future__ import annotations

from typing import Any

from tests.fakes.git_data import BareRepo, GitFailed
from tests.fakes.github.calls import _R, ApiError, Handler, _Call, _not_found, _Reply
from tests.fakes.github.git import GitMixin
from tests.fakes.github.shapes import HTML_BASE, _node_id

_STATUS = {"A": "added", "D": "removed", "M": "modified", "R": "renamed", "C": "copied"}


class CompareMixin(GitMixin):
    """The files and commits between two commits of a repo with a bare repository."""

    def _compare_routes(self) -> list[tuple[str, str, Handler]]:
        return [("GET", rf"{_R}/compare/(?P<basehead>[^/]+)", self._compare)]

    def _compare(self, call: _Call) -> _Reply:
        repo, _ = self._token_for_repo(call, read=("contents",))
        bare = self._git_repos.get(repo.full_name.lower())
        if bare is None:
            self._unexpected.append(f"compare on {repo.full_name}, which has no bare repository")
            raise ApiError(409, "Git Repository is empty.")
        base_name, dots, head_name = call.params["basehead"].partition("...")
        if not dots:
            raise _not_found()
        base, head = bare.commit_sha(base_name), bare.commit_sha(head_name)
        if base is None or head is None:
            raise _not_found()
        merge_base = bare.output("merge-base", base, head).decode().strip()
        ahead = _count(bare, f"{merge_base}..{head}")
        behind = _count(bare, f"{merge_base}..{base}")
        status = (
            "identical"
            if base == head
            else "ahead"
            if not behind
            else "behind"
            if not ahead
            else "diverged"
        )
        commits = bare.output("rev-list", "--reverse", f"{merge_base}..{head}").decode().split()
        api = f"{call.api_base}/repos/{repo.full_name}"
        html = f"{HTML_BASE}/{repo.full_name}"
        data = {
            "url": f"{api}/compare/{base_name}...{head_name}",
            "html_url": f"{html}/compare/{base_name}...{head_name}",
            "permalink_url": f"{html}/compare/{repo.owner}:{base}...{repo.owner}:{head}",
            "diff_url": f"{html}/compare/{base_name}...{head_name}.diff",
            "patch_url": f"{html}/compare/{base_name}...{head_name}.patch",
            "base_commit": self._compare_commit(bare, base, api, html),
            "merge_base_commit": self._compare_commit(bare, merge_base, api, html),
            "status": status,
            "ahead_by": ahead,
            "behind_by": behind,
            "total_commits": len(commits),
            "commits": [self._compare_commit(bare, sha, api, html) for sha in commits],
            "files": _files(bare, merge_base, head, api, html),
        }
        return _Reply(200, data)

    def _compare_commit(self, bare: BareRepo, sha: str, api: str, html: str) -> dict[str, Any]:
        info = bare.read_commit(sha)
        return {
            "url": f"{api}/commits/{sha}",
            "sha": sha,
            "node_id": _node_id("06:Commit", int(sha[:8], 16)),
            "html_url": f"{html}/commit/{sha}",
            "comments_url": f"{api}/commits/{sha}/comments",
            "commit": {
                "url": f"{api}/git/commits/{sha}",
                "author": info.author.json(),
                "committer": info.committer.json(),
                "message": info.message.rstrip("\n"),
                "comment_count": 0,
                "tree": {"sha": info.tree, "url": f"{api}/git/trees/{info.tree}"},
            },
            "author": None,
            "committer": None,
            "parents": [
                {
                    "sha": parent,
                    "url": f"{api}/commits/{parent}",
                    "html_url": f"{html}/commit/{parent}",
                }
                for parent in info.parents
            ],
        }


def _count(bare: BareRepo, revisions: str) -> int:
    return int(bare.output("rev-list", "--count", revisions).decode().strip())


def _files(bare: BareRepo, base: str, head: str, api: str, html: str) -> list[dict[str, Any]]:
    """What `GET /pulls/{n}/files` would list between the two commits, with their patches."""
    files: list[dict[str, Any]] = []
    listing = bare.output("diff", "--name-status", "--no-renames", base, head).decode()
    for line in listing.splitlines():
        letter, _, path = line.partition("\t")
        try:
            diff = bare.output("diff", "--no-renames", base, head, "--", path).decode()
        except GitFailed:
            diff = ""
        patch = diff[diff.index("@@") :] if "@@" in diff else None
        lines = patch.splitlines() if patch else []
        additions = sum(1 for x in lines if x.startswith("+"))
        deletions = sum(1 for x in lines if x.startswith("-"))
        blob = bare.entry_at(head, path)
        item: dict[str, Any] = {
            "sha": blob.sha if blob else "0" * 40,
            "filename": path,
            "status": _STATUS.get(letter[:1], "modified"),
            "additions": additions,
            "deletions": deletions,
            "changes": additions + deletions,
            "blob_url": f"{html}/blob/{head}/{path}",
            "raw_url": f"{html}/raw/{head}/{path}",
            "contents_url": f"{api}/contents/{path}?ref={head}",
        }
        if patch is not None:
            item["patch"] = patch
        files.append(item)
    return files
