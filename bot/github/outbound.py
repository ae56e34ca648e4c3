"""What the agent wrote is cleaned before the bot posts it: the agent is untrusted (prompt
injection), and GitHub would otherwise render its links, ping its mentions, close its issues and
hide its HTML.

Every change is safe wherever GitHub's parser draws the line between code and text: breaks are a
zero-width joiner (invisible; it only stops a construct from forming) and removals. Outside
top-level fenced code blocks:

- links and images leave the repository's own GitHub host only as text: `](` becomes `]⁠(` and
  the URL's `://` is broken, so nothing renders or autolinks (`www.` too); reference definitions
  the same; relative links stay;
- `@user` and `@org/team` get a joiner after the `@`, so nobody is notified;
- HTML comments are stripped (they hide text); other raw HTML tags, angle autolinks and character
  references (`&#64;`, which GitHub would decode) are broken, apart from a few harmless tags.

Everywhere, code included: closing keywords (`fixes #3`, `Closes owner/repo#3`, a full issue URL)
lose the keyword, and the bot's own hidden markers (`<!-- openhands-…`) are broken, since the bot
finds its comments by them. A fence left open is closed, so it cannot swallow the bot's own text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

ZWJ = "\u200d"  # zero-width joiner: invisible, but no Markdown construct forms across it

_KEYWORD = re.compile(
    r"(?<![A-Za-z0-9_])(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)(?![A-Za-z0-9_])"
    r"(?=[\s:*_~]*(?:#\d|[\w.-]+/[\w.-]+#\d|gh-\d|https?://\S+/(?:issues|pull)/\d))",
    re.IGNORECASE,
)
_MARKER = re.compile(r"<!--(?=\s*openhands)", re.IGNORECASE)
_FENCE_OPEN = re.compile(r"(`{3,}|~{3,})(.*)")  # at column 0 only: never inside a list or quote
_FENCE_CLOSE = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*\n?")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")
_ENTITY = re.compile(r"&(?=#[0-9]+;?|#[xX][0-9A-Fa-f]+;?|([A-Za-z][A-Za-z0-9]*);)")
_KEPT_ENTITIES = {"lt", "gt", "amp", "quot", "apos", "nbsp"}
_LINK_DEST = re.compile(r"\]([(:])(\s*<?)([^\s)>]*)")
_BARE_URL = re.compile(r"(https?|ftp)(://)[^\s<>]*|(www)(\.)", re.IGNORECASE)
_MENTION = re.compile(r"(?<![A-Za-z0-9_])@(?=[A-Za-z0-9])")
_RELATIVE = re.compile(r"(?![/\\]{2})[A-Za-z0-9_.~/?#-][^\s\\&:]*")


def github_host(api_url: str) -> str:
    """The web host of the GitHub the bot talks to: github.com for api.github.com, else (GitHub
    Enterprise Server, or a test's fake) the API's own host."""
    host = (urlsplit(api_url).hostname or "").lower()
    return "github.com" if host == "api.github.com" else host


@dataclass(frozen=True, slots=True)
class Cleaner:
    """The cleaner for one GitHub host: links and images may point there, nowhere else."""

    host: str

    def clean(self, text: str, *, mid_line: bool = False) -> str:
        """Agent-written Markdown, safe to post (see the module's docstring). `mid_line`: the
        text goes after the bot's own text on a line, where its first line cannot open a fence.

        Repeated until nothing changes: a removal (a comment, a keyword) may join what was
        apart, e.g. a new fence line, which the next round sees."""
        text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
        while True:
            cleaned = self._once(text, mid_line)
            if cleaned == text:
                return cleaned
            text = cleaned

    def _once(self, text: str, mid_line: bool) -> str:
        text = remove_keywords(text)
        out: list[str] = []
        prose: list[str] = []
        fence: str | None = None
        for index, line in enumerate(re.split(r"(?<=\n)", text)):
            if fence is None:
                opened = _FENCE_OPEN.fullmatch(line.rstrip("\n"))
                if (
                    opened
                    and not (opened[1][0] == "`" and "`" in opened[2])
                    and not (mid_line and index == 0)
                ):
                    out.append(self._prose("".join(prose)))
                    prose = []
                    fence = opened[1]
                    out.append(break_markers(line))
                else:
                    prose.append(line)
            else:
                out.append(break_markers(line))
                closing = _FENCE_CLOSE.fullmatch(line)
                if closing and closing[1][0] == fence[0] and len(closing[1]) >= len(fence):
                    fence = None
        out.append(self._prose("".join(prose)))
        result = "".join(out)
        if fence is not None:  # closed here, or GitHub runs it over the bot's own text
            result += ("" if result.endswith("\n") else "\n") + fence
        return result

    def _prose(self, text: str) -> str:
        text = _COMMENT.sub("", text)
        text = _TAG_START.sub(lambda m: m[0] + ZWJ, text)
        text = _ENTITY.sub(_entity, text)
        text = _LINK_DEST.sub(self._link, text)
        text = _BARE_URL.sub(self._bare_url, text)
        return _MENTION.sub("@" + ZWJ, text)

    def allowed(self, url: str) -> bool:
        """Whether a link may point at `url`: the host itself, or a plain relative link."""
        if not url:
            return True
        host = re.escape(self.host)
        on_host = rf"https?://{host}(?::\d+)?(?:[/?#][^\s\\]*|[)\].,;:!?*_~'\"]*)"
        if re.fullmatch(on_host, url, re.IGNORECASE):
            rest = url.lower().split("//", 1)[1]  # another URL inside may autolink on its own
            return "://" not in rest and "www." not in rest
        return _RELATIVE.fullmatch(url) is not None

    def _link(self, match: re.Match[str]) -> str:
        if self.allowed(match[3]):
            return match[0]
        return f"]{ZWJ}{match[1]}{match[2]}{match[3]}"

    def _bare_url(self, match: re.Match[str]) -> str:
        if match[1] is not None and self.allowed(match[0]):
            return match[0]
        if match[1] is not None:
            return f"{match[1]}{ZWJ}{match[2]}{match[0][len(match[1]) + 3 :]}"
        return f"{match[3]}{ZWJ}{match[4]}"

    def inline_code(self, text: str) -> str:
        """`text` on one line as a code span no backtick in it can end early."""
        flat = " ".join(break_markers(remove_keywords(text)).split())
        fence = "`" * (_longest_run(flat, "`") + 1)
        return f"{fence} {flat} {fence}" if flat else ""


def for_api(api_url: str) -> Cleaner:
    """The cleaner for the GitHub at `api_url` (`GITHUB_API_URL`)."""
    return Cleaner(github_host(api_url))


def _entity(match: re.Match[str]) -> str:
    name = match[1]
    return "&" if name is not None and name.lower() in _KEPT_ENTITIES else "&" + ZWJ


def remove_keywords(text: str) -> str:
    """`fixes #3` and its kind without the keyword: only the bot closes issues."""
    while True:
        cleaned = _KEYWORD.sub("", text)
        if cleaned == text:
            return text
        text = cleaned


def break_markers(text: str) -> str:
    """The bot's hidden markers (`<!-- openhands-…`) made unrecognisable, even in code."""
    return _MARKER.sub("<!-" + ZWJ + "-", text)


def clean_code(text: str) -> str:
    """Text the bot puts inside a fence of its own sizing (a patch, a suggestion): kept as it
    is, but for the bot's markers."""
    return break_markers(text)


def fence_for(text: str) -> str:
    """A backtick fence longer than any run of backticks in `text`."""
    return "`" * max(3, _longest_run(text, "`") + 1)


def _longest_run(text: str, char: str) -> int:
    return max((len(run) for run in re.findall(f"{re.escape(char)}+", text)), default=0)
