"""Check GitHub's `X-Hub-Signature-256` on the raw body before anything else touches it."""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "sha256="


def sign(secret: bytes, body: bytes) -> str:
    """The header value GitHub would send for this body."""
    return PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str | None) -> bool:
    """True only for a well-formed header whose HMAC-SHA256 matches, compared in constant time."""
    if not header or not header.startswith(PREFIX):
        return False
    given = header[len(PREFIX) :].strip().lower()
    if not given.isascii():  # compare_digest refuses non-ASCII text: it is simply wrong
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)
