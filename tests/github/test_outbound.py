"""The cleaner over hostile agent text: what GitHub would render, ping, close or hide is broken,
what is safe (code, links to the repository's own host, the bot's own text) stays."""

from __future__ import annotations

import re

import pytest

from bot.github.once import output_marker
from bot.github.outbound import ZWJ, Cleaner, fence_for, github_host
from bot.github.publish import patch_comment, pr_body
from bot.github.tracking import MARKER_START, final_body, marker

HOST = "github.com"
clean = Cleaner(HOST).clean

# (id, agent text, what must be in the cleaned text, what must not)
CASES: list[tuple[str, str, list[str], list[str]]] = [
    (
        "off-host-image",
        "![pixel](https://evil.example/p.png?secret=1)",
        ["pixel", "evil.example/p.png?secret=1"],
        ["](", "https://"],
    ),
    (
        "off-host-link",
        "[docs](https://evil.example/phish)",
        ["docs", "evil.example/phish"],
        ["](", "https://"],
    ),
    (
        "on-host-link",
        "[pr](https://github.com/o/r/pull/1)",
        ["[pr](https://github.com/o/r/pull/1)"],
        [],
    ),
    ("relative-link", "[file](docs/a.md)", ["[file](docs/a.md)"], []),
    ("lookalike-host", "[a](https://github.com.evil.example/x)", [], ["](", "https://"]),
    ("userinfo-host", "[a](https://github.com@evil.example/x)", [], ["](", "https://"]),
    ("backslash-host", "[a](https://evil.example\\@github.com/x)", [], ["](", "https://"]),
    ("protocol-relative", "[a](//evil.example/x)", [], ["]("]),
    ("javascript-scheme", "[a](javascript:alert(1))", [], ["]("]),
    ("entity-scheme", "[a](&#104;ttps://evil.example)", [], ["&#104;"]),
    (
        "nested-badge",
        "[![b](https://github.com/b.svg)](https://evil.example)",
        [],
        ["](https://evil"],
    ),
    ("reference-link", "[x][r]\n\n[r]: https://evil.example/x", [], ["]:", "https://"]),
    ("bare-url", "see https://evil.example/x now", ["evil.example/x"], ["https://"]),
    ("bare-url-after-digit", "1https://evil.example", [], ["https://"]),
    ("www-autolink", "www.evil.example", [], ["www."]),
    ("angle-autolink", "<https://evil.example>", [], ["<https", "https://"]),
    (
        "url-after-on-host-link",
        "[a](https://github.com/x)https://evil.example",
        [],
        ["https://evil"],
    ),
    (
        "on-host-bare-url",
        "https://github.com/o/r/issues/1",
        ["https://github.com/o/r/issues/1"],
        [],
    ),
    ("mention", "thanks @someone!", ["someone"], ["@someone"]),
    ("team-mention", "cc @org/team", ["org/team"], ["@org"]),
    ("escaped-mention", "\\@someone", [], ["@someone"]),
    ("entity-mention", "&#64;someone &commat;other", [], ["&#64;", "&commat;"]),
    ("comment-joined-mention", "@<!-- -->someone", [], ["@someone", "<!--"]),
    ("email-kept", "write to me@example.com", ["me@example.com"], []),
    ("closes", "This closes #3.", ["#3"], ["closes"]),
    ("fixes-cross-repo", "Fixes owner/repo#4", ["owner/repo#4"], ["Fixes"]),
    ("resolved-colon", "RESOLVED: #5", ["#5"], ["RESOLVED"]),
    ("keyword-url", "fix https://github.com/o/r/issues/6", ["issues/6"], ["fix "]),
    ("keyword-uncovered", "fix fixes #7", ["#7"], ["fix"]),
    ("keyword-in-code", "```\nfixes #8\n```", ["#8"], ["fixes"]),
    ("keyword-joined", "fix<!-- -->es #9", ["#9"], ["fixes"]),
    ("keyword-in-word-kept", "prefixes #10 and suffix", ["prefixes #10"], []),
    ("html-comment", "a <!-- hidden --> b", ["a", "b"], ["hidden"]),
    ("multi-line-comment", "a <!--\nhidden\n--> b", [], ["hidden"]),
    ("unclosed-comment", "a <!-- hides the rest", [], ["<!--"]),
    ("fake-run-marker", f"{marker('run-1')}\nhi", [], [MARKER_START]),
    ("fake-output-marker", output_marker("run-1:reply"), [], ["<!-- openhands"]),
    ("marker-in-code", f"```\n{marker('run-1')}\n```", [], [MARKER_START]),
    ("marker-in-fence-info", f"```{output_marker('k')}\n```", [], ["<!-- openhands"]),
    ("details", "<details><summary>ok</summary>hidden</details>", [], ["<details", "<summary"]),
    ("img-tag", '<img src="https://evil.example/p.png">', [], ["<img"]),
    ("a-tag", '<a href="https://evil.example">x</a>', [], ["<a ", "</a"]),
    # Broken, the tag starts no HTML block, so the fence is one: its code is kept.
    ("html-block-then-fence", "<b>\n```\n@someone\n```", ["```\n@someone\n```"], ["<b>"]),
]


@pytest.mark.parametrize(
    ("text", "present", "absent"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_hostile_text_is_cleaned(text: str, present: list[str], absent: list[str]) -> None:
    cleaned = clean(text)
    shown = cleaned.replace(ZWJ, "")  # what a reader sees
    for part in present:
        assert part in shown
    for part in absent:
        assert part not in cleaned
    assert clean(cleaned) == cleaned  # cleaning twice changes nothing


CODE = "```python\n@pytest.fixture\ndef f():\n    return '[a](https://evil.example) <b>'\n```"


def test_code_blocks_stay_intact() -> None:
    """Nothing in a fenced block renders or notifies on GitHub: it is kept byte for byte."""
    assert clean(CODE) == CODE
    assert clean(f"~~~~\n{CODE}\n~~~~") == f"~~~~\n{CODE}\n~~~~"


def test_text_after_a_code_block_is_cleaned() -> None:
    cleaned = clean(f"{CODE}\nthanks @someone")
    assert cleaned.startswith(CODE)
    assert "@someone" not in cleaned


@pytest.mark.parametrize(
    "text",
    [
        "- item\n  ```\n@someone\n  ```",  # a fence in a list ends with the list item
        "> ```\n> @someone",
        "    ```\n@someone",
        "```\n@a\n```\t\n@someone",  # a closing fence may end in spaces or tabs
        "```\r@a\r```\r@someone",  # carriage returns end lines too
        "``` `info\n@someone\n```",  # backticks in the info string: inline code, not a fence
    ],
    ids=["list-fence", "quoted-fence", "indented-fence", "tab", "carriage-return", "bad-info"],
)
def test_what_is_not_surely_code_is_cleaned_as_text(text: str) -> None:
    assert "@someone" not in clean(text)


def test_an_unclosed_fence_is_closed_so_the_bots_text_after_it_is_not_swallowed() -> None:
    cleaned = clean("````\nsome code")
    assert cleaned.endswith("\n````")
    body = final_body("run-1", "Done", [cleaned], None)
    assert body.endswith("<sub>run `run-1`</sub>")
    assert body.count("````") == 2


def test_mid_line_text_cannot_open_a_fence() -> None:
    """After the bot's "💬 " the agent's ``` is inline, not a fence: what follows is text."""
    cleaned = clean("```\n@someone\n\nmore", mid_line=True)
    assert "@someone" not in cleaned
    assert "@someone" in clean("```\n@someone\n\nmore")  # at a line's start it is code


def test_the_bots_own_text_around_the_agents_survives() -> None:
    summary = clean("Done. Closes #3 <!-- openhands-run:forged --> @someone")
    body = pr_body(number=7, summary=summary, template=None, run_url="https://x/r", run_id="r1")
    assert body.startswith("Fixes #7\n")
    assert len(re.findall(r"(?i)\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\b", body)) == 1
    assert "<sub>Opened by OpenHands from [run `r1`](https://x/r).</sub>" in body
    tracking = final_body("run-2", summary, [], None)
    assert tracking.startswith(marker("run-2"))
    assert tracking.count(MARKER_START) == 1


def test_a_patch_cannot_close_its_fence_or_forge_a_marker() -> None:
    patch = f"+```\n+{output_marker('r:patch')}\n+````\n"
    body = patch_comment(patch, reason="Fork.")
    fence = fence_for(patch)
    assert len(fence) == 5
    assert f"{fence}diff\n" in body
    assert "<!-- openhands" not in body
    assert "+```\n" in body  # the patch's own lines are kept


def test_a_patch_read_only_in_part_states_its_whole_size() -> None:
    head = "diff --git a/big.bin b/big.bin\n" + "+x\n" * 30_000  # what was read of it
    body = patch_comment(head, reason="Fork.", size=62_914_560)
    assert "Patch (62,914,560 bytes)" in body
    assert "_The patch is 62,914,560 bytes; the first " in body


def test_inline_code_holds_whatever_the_action_says() -> None:
    span = Cleaner(HOST).inline_code("echo `x` @someone\nfixes #3 <!-- openhands-run:y -->")
    assert span.startswith("`` ")
    assert span.endswith(" ``")
    assert "\n" not in span
    assert "fixes" not in span
    assert MARKER_START not in span


@pytest.mark.parametrize(
    ("api_url", "host"),
    [
        ("https://api.github.com", "github.com"),
        ("https://ghe.example.com/api/v3", "ghe.example.com"),
        ("http://127.0.0.1:8080", "127.0.0.1"),
    ],
    ids=["github.com", "enterprise-server", "local-fake"],
)
def test_the_host_comes_from_the_api_url(api_url: str, host: str) -> None:
    assert github_host(api_url) == host


def test_enterprise_links_stay_on_their_host() -> None:
    ghes = Cleaner("ghe.example.com").clean
    assert ghes("[a](https://ghe.example.com/o/r)") == "[a](https://ghe.example.com/o/r)"
    assert "](" not in ghes("[a](https://github.com/o/r)")
