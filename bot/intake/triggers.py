"""Pure routing: a verified delivery in, a task or a deliberate reason to ignore it out. No I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from bot.intake import events
from bot.intake.mentions import find_mention
from bot.queue.tasks import (
    CancelTask,
    ConfigTask,
    InstallationTask,
    MentionTask,
    RepoRef,
    ReviewTask,
    Task,
    review_check_number,
)
from bot.repo_config.schema import CONFIG_PATH


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """The settings routing depends on, copied once so routing stays pure and fast."""

    handle: str
    trigger_label: str
    app_slug: str | None
    allowed_bots: frozenset[str]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One verified webhook delivery."""

    event: str
    delivery_id: str
    payload: dict[str, Any] | events.Lenient  # the JSON, or its event model parsed already

    @property
    def action(self) -> str | None:
        if isinstance(self.payload, dict):
            action = self.payload.get("action")
        else:
            action = getattr(self.payload, "action", None)
        return action if isinstance(action, str) else None


@dataclass(frozen=True, slots=True)
class Ignored:
    """A delivery we deliberately do nothing with, and why."""

    reason: str


Route = Task | Ignored
Handler = Callable[[Delivery, RouteConfig], Route]

STOP_WORDS = frozenset({"stop", "cancel"})


def _repo(repo: events.Repository) -> RepoRef:
    owner = repo.owner.login
    name = repo.name
    if repo.full_name and "/" in repo.full_name:
        owner, name = repo.full_name.split("/", 1)
    return RepoRef(
        owner=owner,
        name=name,
        id=repo.id,
        clone_url=repo.clone_url,
        default_branch=repo.default_branch,
        private=repo.private,
    )


def _common(delivery: Delivery, event: events._Event) -> dict[str, Any]:
    return {
        "run_id": delivery.delivery_id,
        "delivery_id": delivery.delivery_id,
        "event": delivery.event,
        "installation_id": event.installation.id if event.installation else None,
        "repo": _repo(event.repository),
        "sender": event.sender.login,
    }


def _robot_reason(account: events.Account, config: RouteConfig) -> str | None:
    """Why an author may not trigger the bot, or None when they may."""
    login = account.login.lower()
    if config.app_slug and login == f"{config.app_slug.lower()}[bot]":
        return "comment by this app itself"
    if account.type == "Bot" and login not in config.allowed_bots:
        return f"author {account.login} is a bot that is not allow-listed"
    return None


def _comment_route(
    delivery: Delivery,
    config: RouteConfig,
    event: events._Event,
    comment: events.Comment,
    *,
    number: int,
    is_pr: bool,
    trigger: str,
) -> Route:
    if (reason := _robot_reason(comment.user, config)) is not None:
        return Ignored(reason)
    mention = find_mention(comment.body, config.handle)
    if mention is None:
        return Ignored(f"no @{config.handle} mention")
    common = _common(delivery, event)
    if mention.is_bare_command and mention.command in STOP_WORDS:
        return CancelTask(
            **common,
            number=number,
            is_pull_request=is_pr,
            comment_id=comment.id,
            trigger="review_comment" if trigger == "review_comment" else "issue_comment",
        )
    if is_pr and mention.is_bare_command and mention.command == "review":
        return ReviewTask(
            **common,
            number=number,
            action="requested",
            comment_id=comment.id,
            rereview=True,
            trigger="review_comment" if trigger == "review_comment" else "issue_comment",
        )
    return MentionTask(
        **common,
        trigger=trigger,
        number=number,
        is_pull_request=is_pr,
        instruction=mention.instruction,
        comment_id=comment.id,
        comment_created_at=comment.created_at,
        path=comment.path,
        line=comment.line if comment.line is not None else comment.original_line,
        diff_hunk=comment.diff_hunk,
        in_reply_to=comment.in_reply_to_id,
    )


def issue_comment_created(delivery: Delivery, config: RouteConfig) -> Route:
    event = events.view(events.IssueCommentEvent, delivery.payload)
    return _comment_route(
        delivery,
        config,
        event,
        event.comment,
        number=event.issue.number,
        is_pr=event.issue.pull_request is not None,
        trigger="issue_comment",
    )


def review_comment_created(delivery: Delivery, config: RouteConfig) -> Route:
    event = events.view(events.ReviewCommentEvent, delivery.payload)
    return _comment_route(
        delivery,
        config,
        event,
        event.comment,
        number=event.pull_request.number,
        is_pr=True,
        trigger="review_comment",
    )


def issues_labeled(delivery: Delivery, config: RouteConfig) -> Route:
    event = events.view(events.IssuesEvent, delivery.payload)
    if event.label is None or event.label.name.lower() != config.trigger_label.lower():
        return Ignored(f"label is not {config.trigger_label!r}")
    if (reason := _robot_reason(event.sender, config)) is not None:
        return Ignored(reason)
    return MentionTask(
        **_common(delivery, event),
        trigger="label",
        number=event.issue.number,
        is_pull_request=event.issue.pull_request is not None,
        instruction="",
    )


def pull_request_changed(delivery: Delivery, config: RouteConfig) -> Route:
    event = events.view(events.PullRequestEvent, delivery.payload)
    pr = event.pull_request
    # Whether this repository wants the review is the worker's call: its config may override
    # REVIEW_ON_OPEN / REVIEW_ON_PUSH, and routing reads nothing but the delivery.
    if pr.draft:
        return Ignored("draft pull request")
    if pr.state is not None and pr.state != "open":
        return Ignored(f"pull request is {pr.state}")
    if (reason := _robot_reason(pr.user, config)) is not None:
        return Ignored(reason)
    return ReviewTask(
        **_common(delivery, event),
        number=pr.number,
        action=event.action or "opened",
        head_sha=pr.head.sha,
    )


def check_run_rerequested(delivery: Delivery, config: RouteConfig) -> Route:
    """ "Re-run" on the review's check in GitHub's UI: review that pull request again. Only a
    check run of ours names its pull request in `external_id`; GitHub sends this event only to
    the App that made the run."""
    event = events.view(events.CheckRunEvent, delivery.payload)
    number = review_check_number(event.check_run.external_id)
    if number is None:
        return Ignored("not a review check run of this app")
    if (reason := _robot_reason(event.sender, config)) is not None:
        return Ignored(reason)
    return ReviewTask(
        **_common(delivery, event),
        number=number,
        action="rerequested",
        head_sha=event.check_run.head_sha,
        rereview=True,
        trigger="check_run",
    )


def installation_changed(delivery: Delivery, config: RouteConfig) -> Route:
    event = events.view(events.InstallationEvent, delivery.payload)
    added = [r.full_name for r in (event.repositories_added or event.repositories)]
    if event.action == "deleted":
        added = []
    removed = [r.full_name for r in event.repositories_removed]
    account = event.installation.account.login if event.installation.account else None
    return InstallationTask(
        run_id=delivery.delivery_id,
        delivery_id=delivery.delivery_id,
        event=delivery.event,
        installation_id=event.installation.id,
        repo=RepoRef(owner=account or "", name=""),
        sender=event.sender.login,
        action=event.action,
        account=account,
        repos_added=added,
        repos_removed=removed,
    )


# A push that lists this many commits may have left some out: read the config to be sure.
PUSH_COMMITS_SHOWN = 20


def push(delivery: Delivery, config: RouteConfig) -> Route:
    """A push to the default branch that touches the repo config: read it again."""
    event = events.view(events.PushEvent, delivery.payload)
    branch = event.repository.default_branch
    if not branch or event.ref != f"refs/heads/{branch}":
        return Ignored("push outside the default branch")
    if event.deleted:
        return Ignored("branch deleted")
    commits = list(event.commits) or ([event.head_commit] if event.head_commit else [])
    touched = (
        any(CONFIG_PATH in (*c.added, *c.modified, *c.removed) for c in commits)
        or len(commits) >= PUSH_COMMITS_SHOWN
    )
    if not touched:
        return Ignored(f"push does not touch {CONFIG_PATH}")
    return ConfigTask(**_common(delivery, event), commit=event.after)


def _ignore(reason: str) -> Handler:
    return lambda _delivery, _config: Ignored(reason)


# (event, action) → handler; action None matches any action of that event.
ROUTES: dict[tuple[str, str | None], Handler] = {
    ("issue_comment", "created"): issue_comment_created,
    ("issue_comment", "edited"): _ignore("edited comments do not trigger runs"),
    ("issue_comment", "deleted"): _ignore("deleted comments do not trigger runs"),
    ("pull_request_review_comment", "created"): review_comment_created,
    ("pull_request_review_comment", "edited"): _ignore("edited comments do not trigger runs"),
    ("pull_request_review_comment", "deleted"): _ignore("deleted comments do not trigger runs"),
    ("issues", "labeled"): issues_labeled,
    ("pull_request", "opened"): pull_request_changed,
    ("pull_request", "reopened"): pull_request_changed,
    ("pull_request", "ready_for_review"): pull_request_changed,
    ("pull_request", "synchronize"): pull_request_changed,
    ("check_run", "rerequested"): check_run_rerequested,
    ("installation", None): installation_changed,
    ("installation_repositories", None): installation_changed,
    ("push", None): push,
    ("ping", None): _ignore("ping"),
}


# The model every handler of an event reads, so the raw body can be validated into it directly.
EVENT_MODELS: dict[str, type[events.Lenient]] = {
    "issue_comment": events.IssueCommentEvent,
    "pull_request_review_comment": events.ReviewCommentEvent,
    "issues": events.IssuesEvent,
    "pull_request": events.PullRequestEvent,
    "installation": events.InstallationEvent,
    "installation_repositories": events.InstallationEvent,
    "push": events.PushEvent,
    "check_run": events.CheckRunEvent,
}


_DECODERS = {event: events.decoder(model) for event, model in EVENT_MODELS.items()}


class NotAnObject(ValueError):
    """The body is JSON, but not an object."""


def route_body(event: str, delivery_id: str, body: bytes, config: RouteConfig) -> Route:
    """`route` from the raw body. The event's model is validated straight from the JSON, which
    never builds Python objects for the many fields we do not read; a body that does not fit it
    takes the general path, so the outcome is the same either way. Raises orjson's
    JSONDecodeError or NotAnObject for a body that is not a JSON object."""
    decode = _DECODERS.get(event)
    if decode is not None:
        try:
            parsed = decode.decode(body)
        except events.Malformed:
            pass
        else:
            return route(Delivery(event, delivery_id, parsed), config)
    payload = orjson.loads(body)
    if not isinstance(payload, dict):
        raise NotAnObject("body is not a JSON object")
    return route(Delivery(event, delivery_id, payload), config)


def route(delivery: Delivery, config: RouteConfig) -> Route:
    """Decide what a delivery asks for. Never raises on payload content."""
    handler = ROUTES.get((delivery.event, delivery.action)) or ROUTES.get((delivery.event, None))
    if handler is None:
        action = f".{delivery.action}" if delivery.action else ""
        return Ignored(f"{delivery.event}{action} is not handled")
    try:
        return handler(delivery, config)
    except (ValidationError, events.Invalid) as exc:
        return Ignored(_unusable(exc))


def _unusable(exc: ValidationError | events.Invalid) -> str:
    """Why a payload cannot be used: the fields it lacks, or those whose values we refuse."""
    missing: set[str] = set()
    invalid: set[str] = set()
    if isinstance(exc, events.Invalid):  # the event's view: one problem, the first found
        lacks, path = events.problem(exc)
        (missing if lacks else invalid).add(path or "the event")
    else:  # a task built from it
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            (missing if err["type"] == "missing" else invalid).add(loc)
    reasons = []
    if missing:
        reasons.append("payload lacks fields we need: " + ", ".join(sorted(missing)[:5]))
    if invalid:
        reasons.append("payload has values we refuse: " + ", ".join(sorted(invalid)[:5]))
    return "; ".join(reasons)
