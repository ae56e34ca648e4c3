"""The work a delivery asks for: small typed task models that travel through the queue as JSON."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from bot import keys

# GitHub's numbers and ids are positive and far below 2^63; a larger one cannot even be written
# as the job's JSON (orjson stops at 64 bits), so a task refuses it instead of crashing the queue.
MAX_ID = 2**63 - 1
Id = Annotated[int, Field(ge=0, le=MAX_ID)]


class RepoRef(BaseModel):
    """The repository a task is about, as the delivery described it."""

    model_config = ConfigDict(frozen=True)

    owner: str
    name: str
    id: Id | None = None
    clone_url: str | None = None
    default_branch: str | None = None
    private: bool = False

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


class _TaskBase(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_id: str
    delivery_id: str
    event: str
    installation_id: Id | None = None
    repo: RepoRef
    sender: str


class MentionTask(_TaskBase):
    """Someone asked the agent to work: a comment or review-comment mention, or the label."""

    kind: Literal["mention"] = "mention"
    trigger: Literal["issue_comment", "review_comment", "label"]
    number: Id
    is_pull_request: bool
    instruction: str
    comment_id: Id | None = None
    comment_created_at: str | None = None
    # Inline review comments carry the code they point at.
    path: str | None = None
    line: Id | None = None
    diff_hunk: str | None = None
    in_reply_to: Id | None = None  # a reply in a review thread: the thread's first comment


class ReviewTask(_TaskBase):
    """A pull request to review: opened, reopened, ready, pushed to, or `@handle review`."""

    kind: Literal["review"] = "review"
    number: Id
    action: str
    head_sha: str | None = None  # None for a comment-requested review: the worker looks it up
    comment_id: Id | None = None
    rereview: bool = False
    trigger: Literal["issue_comment", "review_comment", "check_run"] = "issue_comment"


# The review's check run names its pull request (a fork's check run lists none), so that
# "Re-run" on GitHub can ask for the review again.
REVIEW_CHECK_PREFIX = "openhands-review:pr-"


def review_check_external_id(number: int) -> str:
    return f"{REVIEW_CHECK_PREFIX}{number}"


def review_check_number(external_id: str | None) -> int | None:
    """The pull request number a review check run was made for, or None if it is not ours."""
    digits = (external_id or "").removeprefix(REVIEW_CHECK_PREFIX)
    if digits == (external_id or "") or not (digits.isascii() and digits.isdigit()):
        return None
    number = int(digits) if len(digits) <= 19 else 0
    return number if 0 < number <= MAX_ID else None


class CancelTask(_TaskBase):
    """`@handle stop`: interrupt the run on this issue or pull request."""

    kind: Literal["cancel"] = "cancel"
    number: Id
    is_pull_request: bool
    comment_id: Id | None = None
    trigger: Literal["issue_comment", "review_comment"] = "issue_comment"


class InstallationTask(_TaskBase):
    """An installation changed: remember which repositories it covers."""

    kind: Literal["installation"] = "installation"
    action: str
    account: str | None = None
    repos_added: list[str] = Field(default_factory=list)
    repos_removed: list[str] = Field(default_factory=list)


class AutomationTask(_TaskBase):
    """A prompt to run on a repository: a scheduled automation, or a run asked for over the API."""

    kind: Literal["automation"] = "automation"
    trigger: Literal["schedule", "api"]
    automation: str | None = None  # the config's automation name; None for an ad-hoc prompt
    prompt: str
    output: Literal["pr", "issue", "comment", "none"] = "none"
    issue: Id | None = None  # where a `comment` output goes
    branch: str | None = None
    max_iterations: Id | None = None
    slot: str | None = None  # the schedule slot this run is for (UTC, minute precision)


class ConfigTask(_TaskBase):
    """The repository's `.openhands/config.yml` may have changed: read it again."""

    kind: Literal["config"] = "config"
    commit: str | None = None


Task = Annotated[
    MentionTask | ReviewTask | CancelTask | InstallationTask | AutomationTask | ConfigTask,
    Field(discriminator="kind"),
]
TASK_ADAPTER: TypeAdapter[Task] = TypeAdapter(Task)

# One arq job function per task kind.
JOB_FUNCTIONS: dict[str, str] = {
    "mention": "run_mention",
    "review": "run_review",
    "cancel": "run_cancel",
    "installation": "sync_installation",
    "automation": "run_automation",
    "config": "refresh_config",
}


def job_function(task: Task) -> str:
    """The arq function that runs this task."""
    return JOB_FUNCTIONS[task.kind]


def lines(task: _TaskBase) -> tuple[str, ...]:
    """The turnstiles a task's run waits at before it starts, in the order it takes them: it
    joins their lines when it is queued, so runs start in the order they were asked for."""
    found: list[str] = []
    if isinstance(task, MentionTask):
        found.append(keys.thread_line(keys.thread(task.repo.full_name, task.number)))
    if isinstance(task, MentionTask | ReviewTask | AutomationTask) and task.installation_id:
        found.append(keys.installation_line(task.installation_id))
    return tuple(found)
