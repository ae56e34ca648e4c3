"""HMACs only the bot can make: Redis is reachable by more than the bot (in `local` mode, by the
agent), so a queued job or a cached permission without a valid one is refused, never trusted.

The keys are derived from the App's private key (with a fixed label per use), which both
processes hold and the agent never sees: its server gets a scrubbed environment, and it cannot
read the bot's `.env` or key file. Rotating the private key makes jobs still queued under the old
one be refused (re-deliver them) and empties the permission cache. A job's MAC covers its bytes,
not its id: a job copied under a new id is caught by its MAC, which the worker remembers as used
for as long as a job can live (`jobs.context`), and one older than that is refused outright.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from bot.config import Settings

_QUEUE_LABEL = b"openhands-bot/v1/queued-job"
_PERMISSION_LABEL = b"openhands-bot/v1/permission-cache"
# A signed value: MAGIC, the HMAC-SHA256 as 64 hex digits, then the signed bytes themselves.
MAGIC = b"ohsig1:"
_MAC_HEX = 64
_HEAD = len(MAGIC) + _MAC_HEX


class Unsigned(ValueError):
    """The value carries no HMAC of this bot, or a wrong one. The message never holds the key."""


@dataclass(frozen=True, slots=True, repr=False)
class Keys:
    """The bot's derived keys, one per use, so a MAC made for one can never pass for another."""

    queue: bytes
    permissions: bytes


def derive(secret: bytes, label: bytes) -> bytes:
    """A key for one use: HMAC-SHA256 of a fixed label under the secret (HKDF's extract step)."""
    return hmac.new(secret, label, hashlib.sha256).digest()


def keys_for(settings: Settings) -> Keys:
    """The keys this bot signs with; raises MissingSetting without the App's private key."""
    secret = settings.private_key_pem().strip().encode()
    return Keys(queue=derive(secret, _QUEUE_LABEL), permissions=derive(secret, _PERMISSION_LABEL))


def mac(key: bytes, data: bytes) -> str:
    """The HMAC-SHA256 of `data` under `key`, as hex."""
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def sign(key: bytes, payload: bytes) -> bytes:
    """`payload` with its HMAC in front (the envelope `verified` and `strip` undo)."""
    return MAGIC + mac(key, payload).encode() + payload


def verified(key: bytes, raw: bytes) -> bytes:
    """The signed payload, once its HMAC is this bot's; raises Unsigned otherwise."""
    if not raw.startswith(MAGIC) or len(raw) < _HEAD:
        raise Unsigned("not signed by this bot")
    payload = raw[_HEAD:]
    if not hmac.compare_digest(raw[len(MAGIC) : _HEAD], mac(key, payload).encode()):
        raise Unsigned("signed, but not by this bot")
    return payload


def strip_mac(raw: bytes) -> str:
    """The HMAC of a signed value, as hex (its identity: copies of one value share it)."""
    return raw[len(MAGIC) : _HEAD].decode()


def strip(raw: bytes) -> bytes:
    """The payload without its envelope, unverified: for reading and showing, never for acting."""
    return raw[_HEAD:] if raw.startswith(MAGIC) else raw


def matches(key: bytes, data: bytes, claimed: str) -> bool:
    """Whether `claimed` is the HMAC of `data` under `key` (compared in constant time)."""
    return hmac.compare_digest(claimed.encode(), mac(key, data).encode())
