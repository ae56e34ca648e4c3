"""Write settings into `.env` without losing the lines around them, and secrets to 0600 files."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
_PLAIN = re.compile(r"^[A-Za-z0-9_./:@+,-]*$")


def quote(value: str) -> str:
    """`value` as python-dotenv (and so pydantic-settings) reads it back unchanged."""
    if "${" in value:  # dotenv expands ${NAME} even inside quotes, with no way to escape it
        raise ValueError("a value containing '${' cannot be written to .env")
    if _PLAIN.match(value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _opens_multiline(value: str) -> str | None:
    """The quote character when `value` starts a quoted value that ends on a later line."""
    if not value or value[0] not in "'\"":
        return None
    mark = value[0]
    rest = re.sub(r"\\.", "", value[1:])
    return None if mark in rest else mark


def write_secret_file(path: Path, text: str) -> None:
    """Replace `path` atomically with a file only its owner can read (created 0600, never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def update_env_file(path: Path, values: Mapping[str, str], *, remove: Iterable[str] = ()) -> None:
    """Set `values` in the env file, drop the `remove` keys, keep every other line as it was.

    The file is rewritten atomically and ends up 0600: it holds secrets."""
    drop = {key.upper() for key in (*values, *remove)}
    kept: list[str] = []
    closing: str | None = None  # inside a dropped multi-line value, until this quote
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    for line in lines:
        if closing is not None:
            if closing in re.sub(r"\\.", "", line):
                closing = None
            continue
        match = _ASSIGNMENT.match(line)
        if match and match.group(1).upper() in drop:
            closing = _opens_multiline(match.group(2))
            continue
        kept.append(line)
    kept.extend(f"{key}={quote(value)}" for key, value in values.items())
    write_secret_file(path, "\n".join(kept) + "\n")
