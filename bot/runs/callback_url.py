"""Which callback URLs the bot will POST to: http(s) with a public host, so a run's requester
cannot aim the bot at its own network (loopback, private, link-local) unless the operator allows
that host (CALLBACK_ALLOWED_HOSTS)."""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

# Anything a URL must never carry: CR/LF (header injection), other controls, whitespace.
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
MAX_URL_CHARS = 2048


def _literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names literally, in any form the resolver accepts (`127.1`,
    `0x7f.0.0.1` and `2130706433` are all loopback to inet_aton), or None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if re.fullmatch(r"[0-9a-fA-FxX.]+", host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _internal(host: str) -> str | None:
    """Why `host` is inside the bot's own network, or None when it is public as written.

    Names are not resolved: a public name pointing at a private address (or one re-pointed after
    this check, DNS rebinding) is not caught here; the network the bot runs in must still keep it
    from internal services."""
    if host == "localhost" or host.endswith(".localhost"):
        return "localhost"
    ip = _literal_ip(host)
    if ip is None:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if not ip.is_global:
        return "a private or reserved address"
    return None


def problem(url: str, allowed_hosts: list[str]) -> str | None:
    """What is wrong with `url` as a callback URL, or None when the bot may POST to it."""
    if len(url) > MAX_URL_CHARS:
        return f"must be at most {MAX_URL_CHARS} characters"
    if _UNSAFE.search(url):
        return "must not contain spaces or control characters (CR, LF, ...)"
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https") or not host:
        return "must be an http(s) URL with a host"
    if "%" in host:
        return "must not name an IPv6 zone"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials (use callback_api_key)"
    if host in {h.lower().strip("[]") for h in allowed_hosts}:
        return None
    if (why := _internal(host.strip("[]"))) is not None:
        return f"names {why} ({host}); allow it with CALLBACK_ALLOWED_HOSTS"
    return None
