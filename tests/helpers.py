"""Small helpers several tests (and the benchmarks) share: a throwaway RSA key pair, a free port."""

from __future__ import annotations

import socket

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def rsa_key_pair() -> tuple[str, str]:
    """(private PEM in PKCS#8, public PEM) of a fresh 2048-bit RSA key, as GitHub Apps use."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


def free_port(host: str = "127.0.0.1") -> int:
    """A port on `host` that was free a moment ago (the kernel's pick; nothing listens on it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port
