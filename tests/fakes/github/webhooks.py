"""Seeding the fake from a webhook payload: its repo, issue or PR, and comment, with their ids."""

from __future__ import annotations

from typing import Any

from tests.fakes.github.reviews import ReviewsMixin


class WebhookSeedingMixin(ReviewsMixin):
    """`add_from_webhook`: what a delivery talks about exists on the fake, as it does on GitHub."""

    def add_from_webhook(self, payload: dict[str, Any]) -> None:
        """Seed the repo, issue or PR, and comment a webhook payload talks about, with its ids.

        Handles `issue_comment`, `issues`, `pull_request`, `pull_request_review_comment` payloads.
        Installations are not touched: call `add_installation` yourself.
        """
        with self._lock:
            repository = payload["repository"]
            full_name = repository["full_name"]
            if full_name.lower() not in self._repos:
                self.add_repo(
                    full_name,
                    default_branch=repository.get("default_branch", "main"),
                    private=bool(repository.get("private", False)),
                )
            if pull := payload.get("pull_request"):
                head_repo = (pull["head"].get("repo") or {}).get("full_name") or full_name
                self.add_pull(
                    full_name,
                    pull["number"],
                    pull["head"]["ref"],
                    pull["head"]["sha"],
                    pull["base"]["ref"],
                    pull["user"]["login"],
                    draft=bool(pull.get("draft", False)),
                    fork_full_name=head_repo if head_repo.lower() != full_name.lower() else None,
                    title=pull.get("title", ""),
                    body=pull.get("body"),
                    base_sha=pull["base"].get("sha"),
                )
            if issue := payload.get("issue"):
                key = (full_name.lower(), issue["number"])
                if key not in self._issues:
                    self.add_issue(
                        full_name,
                        issue["number"],
                        issue.get("title", ""),
                        issue.get("body"),
                        issue["user"]["login"],
                        is_pr="pull_request" in issue,
                        issue_id=issue.get("id"),
                    )
            comment = payload.get("comment")
            if comment and pull and "diff_hunk" in comment:
                self.add_review_comment(
                    full_name,
                    pull["number"],
                    comment["body"],
                    comment["user"]["login"],
                    comment_id=comment["id"],
                    path=comment.get("path", "README.md"),
                    line=comment.get("line"),
                    diff_hunk=comment.get("diff_hunk", ""),
                    commit_id=comment.get("commit_id"),
                    in_reply_to_id=comment.get("in_reply_to_id"),
                )
            elif comment and issue:
                self.add_comment(
                    full_name,
                    issue["number"],
                    comment["body"],
                    comment["user"]["login"],
                    comment_id=comment["id"],
                )
