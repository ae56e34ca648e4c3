"""Whose review thread is it, and did a human dismiss it: read from GraphQL's shapes."""

from __future__ import annotations

from typing import Any

import pytest

from bot.github.threads import BotIdentity, _thread
from bot.jobs.review_chat import verdicts
from bot.jobs.review_push import added_lines
from bot.runs.findings import marker

BOT = BotIdentity("openhands")
FINDING = f"Finding\n\n{marker('0123456789abcdef')}"


def node(*comments: tuple[str, str], resolved_by: str | None = None, down: int = 0) -> Any:
    return _thread(
        {
            "id": "PRRT_1",
            "isResolved": resolved_by is not None,
            "resolvedBy": {"login": resolved_by} if resolved_by else None,
            "path": "app.py",
            "line": 3,
            "comments": {
                "nodes": [
                    {
                        "databaseId": i,
                        "body": body,
                        "author": {
                            "__typename": "Bot" if login == "openhands" else "User",
                            "login": login,
                        },
                        "reactionGroups": [
                            {
                                "content": "THUMBS_DOWN",
                                "reactors": {"totalCount": down if i == 0 else 0},
                            }
                        ],
                    }
                    for i, (login, body) in enumerate(comments)
                ]
            },
        }
    )


def test_only_the_bots_own_first_comment_makes_a_finding() -> None:
    assert BOT.finding_of(node(("openhands", FINDING))) == "0123456789abcdef"
    assert BOT.finding_of(node(("mallory", FINDING))) is None  # a copied marker is not ours
    assert BOT.finding_of(node(("openhands", "no marker"))) is None
    assert BOT.finding_of(_thread({"comments": {"nodes": [{"author": None}]}})) is None


@pytest.mark.parametrize(
    ("thread", "dismissed"),
    [
        pytest.param(node(("openhands", FINDING)), False, id="untouched"),
        pytest.param(node(("openhands", FINDING), ("al", "Good catch, thanks")), False, id="reply"),
        pytest.param(
            node(("openhands", FINDING), ("al", "Won't fix: by design")), True, id="wontfix"
        ),
        pytest.param(node(("openhands", FINDING), ("al", "false positive")), True, id="false-pos"),
        pytest.param(node(("openhands", FINDING), resolved_by="al"), True, id="human-resolved"),
        pytest.param(
            node(("openhands", FINDING), resolved_by="openhands"), False, id="bot-resolved"
        ),
        pytest.param(node(("openhands", FINDING), down=1), True, id="thumbs-down"),
        pytest.param(
            node(("openhands", FINDING), ("openhands", "won't fix")), False, id="bot-says"
        ),
    ],
)
def test_what_counts_as_a_human_dismissing_a_finding(thread: Any, dismissed: bool) -> None:
    assert BOT.dismissed(thread) is dismissed


def test_added_lines_are_the_new_files_added_lines() -> None:
    patch = (
        "@@ -1,3 +1,4 @@\n one\n-two\n+TWO\n+extra\n three\n"
        "@@ -10 +11,2 @@\n ten\n+eleven\n\\ No newline at end of file"
    )
    assert added_lines(patch) == {2, 3, 12}
    assert added_lines(None) == frozenset()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            'Done.\n```findings\n{"fixed": ["F1"], "declined": {"F2": "no"}}\n```',
            (["F1"], {"F2": "no"}),
            id="both",
        ),
        pytest.param(
            '```findings\n{"fixed": ["F1"], "declined": {"F1": "twice", "F3": 7}}\n```',
            (["F1"], {}),
            id="fixed-wins-and-bad-reason",
        ),
        pytest.param("```findings\n[1, 2]\n```", ([], {}), id="not-an-object"),
        pytest.param("```findings\n{oops\n```", ([], {}), id="not-json"),
        pytest.param("I fixed everything.", ([], {}), id="no-block"),
    ],
)
def test_the_agents_verdicts_on_the_findings(text: str, expected: Any) -> None:
    assert verdicts(text) == expected
