"""Find a live `@handle` mention in Markdown, ignoring quotes, code and HTML comments (text no
one sees rendered), and read its instruction."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_QUOTE = re.compile(r"^ {0,3}>")
_INDENTED = re.compile(r"^(?: {4}|\t)")
_BACKTICKS = re.compile(r"`+")


@dataclass(frozen=True, slots=True)
class Mention:
    """A mention of the bot and the words that follow it."""

    instruction: str

    @property
    def command(self) -> str:
        """The first word, lower-cased, without punctuation ("stop", "review", ...)."""
        words = self.instruction.split()
        return words[0].strip(".,:;!?").lower() if words else ""

    @property
    def is_bare_command(self) -> bool:
        """True when the instruction is a single word, like `@openhands stop`."""
        return len(self.instruction.split()) == 1


@lru_cache(maxsize=16)
def _pattern(handle: str) -> re.Pattern[str]:
    return re.compile(rf"(?:^|[^\w@])@{re.escape(handle)}(?![\w-])", re.IGNORECASE)


def _strip_code_spans(line: str) -> str:
    """Blank out inline code spans: a run of N backticks up to the next run of exactly N."""
    out: list[str] = []
    pos = 0
    while True:
        opening = _BACKTICKS.search(line, pos)
        if opening is None:
            out.append(line[pos:])
            return "".join(out)
        width = len(opening.group())
        closing = next(
            (m for m in _BACKTICKS.finditer(line, opening.end()) if len(m.group()) == width), None
        )
        if closing is None:  # an unmatched run is literal text
            out.append(line[pos : opening.end()])
            pos = opening.end()
            continue
        out.append(line[pos : opening.start()])
        out.append(" ")
        pos = closing.end()


def _strip_comments(line: str) -> tuple[str, bool]:
    """The line without its HTML comments, and whether one is still open at its end (an
    unclosed `<!--` hides the rest, as the renderer's HTML block does)."""
    while (start := line.find("<!--")) >= 0:
        end = line.find("-->", start + 2)  # `<!-->` and `<!--->` are whole (empty) comments
        if end < 0:
            return line[:start], True
        line = line[:start] + " " + line[end + 3 :]
    return line, False


def live_text(body: str) -> str:
    """The parts of a Markdown body that are the author's own words: no quotes, no code, no
    HTML comments."""
    kept: list[str] = []
    fence: str | None = None
    previous_blank = True
    in_indented = False
    in_comment = False
    for raw in body.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if in_comment:
            end = raw.find("-->")
            if end < 0:
                kept.append("")
                continue
            raw, in_comment = raw[end + 3 :], False
        if fence is not None:
            match = _FENCE.match(raw)
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                if not raw.strip().lstrip(fence[0]):
                    fence = None
            kept.append("")
            continue
        match = _FENCE.match(raw)
        if match:
            fence = match.group(1)
            kept.append("")
            previous_blank = False
            continue
        blank = not raw.strip()
        if _INDENTED.match(raw) and not blank and (previous_blank or in_indented):
            in_indented = True
            kept.append("")
            continue
        in_indented = in_indented and blank
        previous_blank = blank
        if _QUOTE.match(raw):
            kept.append("")
            continue
        line, in_comment = _strip_comments(_strip_code_spans(raw))
        kept.append(line)
    return "\n".join(kept)


def find_mention(body: str | None, handle: str) -> Mention | None:
    """The first live mention of `@handle` in `body` and the instruction after it, or None."""
    if not body or "@" not in body:  # most comments: no need to read their Markdown
        return None
    text = live_text(body)
    match = _pattern(handle).search(text)
    if match is None:
        return None
    return Mention(instruction=text[match.end() :].strip())
