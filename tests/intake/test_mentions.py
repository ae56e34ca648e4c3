"""Mentions count only in the author's own words: not in quotes, code spans or code blocks."""

from __future__ import annotations

import pytest

from bot.intake.mentions import find_mention


@pytest.mark.parametrize(
    ("body", "instruction"),
    [
        ("@openhands fix this", "fix this"),
        ("Hey @OpenHands, please add tests", ", please add tests"),
        ("(@openhands) look", ") look"),
        ("line one\n@openhands do it\nand more", "do it\nand more"),
        ("@openhands", ""),
        ("> quoted @openhands\n@openhands real one", "real one"),
        ("`@openhands` in code but @openhands outside", "outside"),
    ],
)
def test_live_mentions(body: str, instruction: str) -> None:
    mention = find_mention(body, "openhands")
    assert mention is not None
    assert mention.instruction == instruction


@pytest.mark.parametrize(
    "body",
    [
        "",
        "no mention here",
        "email me at someone@openhands.dev",  # preceded by a word character
        "@openhands-bot is another account",  # followed by a hyphen
        "@openhandsx is another account",
        "@@openhands is not a mention",
        "> @openhands fix this\n\nI agree",  # a quote-reply of an earlier mention
        "  > @openhands nested quote",
        "use `@openhands fix` to trigger",
        "use ``code with ` and @openhands`` here",
        "```\n@openhands in a fence\n```",
        "~~~python\n@openhands in a tilde fence\n~~~",
        "````\n```\n@openhands inside a longer fence\n```\n````",
        "text\n\n    @openhands in an indented block",
    ],
)
def test_not_mentions(body: str) -> None:
    assert find_mention(body, "openhands") is None


def test_unclosed_fence_hides_the_rest() -> None:
    assert find_mention("```\n@openhands never closed", "openhands") is None


def test_text_after_a_closed_fence_counts() -> None:
    mention = find_mention("```\ncode\n```\n@openhands after", "openhands")
    assert mention is not None
    assert mention.instruction == "after"


def test_handle_comes_from_settings() -> None:
    assert find_mention("@openhands fix", "mybot") is None
    mention = find_mention("@MyBot fix", "mybot")
    assert mention is not None
    assert mention.instruction == "fix"


@pytest.mark.parametrize(
    ("body", "command", "bare"),
    [
        ("@openhands stop", "stop", True),
        ("@openhands STOP!", "stop", True),
        ("@openhands stop doing X and do Y", "stop", False),
        ("@openhands review", "review", True),
    ],
)
def test_commands(body: str, command: str, bare: bool) -> None:
    mention = find_mention(body, "openhands")
    assert mention is not None
    assert mention.command == command
    assert mention.is_bare_command is bare


@pytest.mark.parametrize(
    "body",
    [
        "<!-- @openhands fix -->",
        "Thanks!\n<!--\n@openhands fix this\n-->",
        "text <!-- @openhands fix",  # unclosed: hides the rest
        "a <!-- one --> b <!-- @openhands two -->",
        "<!-- start\n\n```\n@openhands in a fence inside the comment\n```\n-->",
    ],
)
def test_mentions_inside_html_comments_do_not_count(body: str) -> None:
    assert find_mention(body, "openhands") is None


@pytest.mark.parametrize(
    ("body", "instruction"),
    [
        ("<!-- template note -->\n@openhands fix this", "fix this"),
        ("<!--\nmulti\nline\n-->\n@openhands go", "go"),
        ("@openhands fix <!-- not this --> that", "fix   that"),
        ("<!---->@openhands now", "now"),
        (
            "`<!--` @openhands in code span does not open a comment",
            "in code span does not open a comment",
        ),
        ("```\n<!--\n```\n@openhands after a fence", "after a fence"),
    ],
)
def test_mentions_around_html_comments_still_count(body: str, instruction: str) -> None:
    mention = find_mention(body, "openhands")
    assert mention is not None
    assert mention.instruction == instruction
