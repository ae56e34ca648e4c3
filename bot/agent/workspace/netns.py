"""A sandbox's network: user-mode networking (slirp4netns) into its own namespace, firewall rules
inside it (no loopback, link-local or private address unless allow-listed), and the one port
forward from the host's loopback to its agent-server."""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import select
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bot.errors import WorkspaceError

GUEST_ADDRESS = "10.0.2.100"  # slirp4netns --configure gives the sandbox this address
HOST_LOOPBACK = "10.0.2.2"  # slirp's alias for the host's loopback (when not disabled)
DNS_ADDRESS = "10.0.2.3"  # slirp's DNS forwarder

# Never reachable from a sandbox unless allow-listed: the host's loopback services, the cloud's
# metadata service, the operator's private networks.
BLOCKED = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::1/128",
    "::/128",
    "::ffff:0:0/96",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
)


@dataclass(frozen=True, slots=True)
class Allowed:
    """One allow-listed destination: a network, and optionally one TCP port on it."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> Allowed:
        """`10.1.0.0/16`, `192.168.1.5`, or with a port `10.0.2.2:8080` / `[fd00::1]:80`."""
        text = text.strip()
        port: int | None = None
        if text.startswith("["):
            address, _, rest = text[1:].partition("]")
            port = int(rest.removeprefix(":")) if rest else None
        elif text.count(":") == 1:
            address, _, raw = text.partition(":")
            port = int(raw)
        else:
            address = text
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"bad port in {text!r}")
        return cls(ipaddress.ip_network(address, strict=False), port)

    def rule(self) -> str:
        family = "ip" if self.network.version == 4 else "ip6"
        port = f" tcp dport {self.port}" if self.port is not None else ""
        return f"{family} daddr {self.network}{port} accept"


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    allowed: tuple[Allowed, ...] = field(default=())

    @classmethod
    def from_settings(cls, entries: list[str]) -> NetworkPolicy:
        return cls(tuple(Allowed.parse(entry) for entry in entries))

    @property
    def host_loopback(self) -> bool:
        """Whether some allow-listed destination is on the host's loopback (through slirp's
        10.0.2.2); otherwise slirp4netns does not even offer the path."""
        host = ipaddress.ip_address(HOST_LOOPBACK)
        return any(host in entry.network for entry in self.allowed)

    def ruleset(self) -> str:
        """nftables rules for the sandbox's namespace: its own loopback (the agent-server, the
        gateway relay) and slirp's DNS, the allow-list, then no special-purpose address."""
        lines = [
            "flush ruleset",  # loaded again when a run takes the sandbox: the policy then
            "table inet sandbox {",
            " chain out {",
            "  type filter hook output priority 0; policy accept;",
            '  oif "lo" accept',
            f"  ip daddr {DNS_ADDRESS} udp dport 53 accept",
            f"  ip daddr {DNS_ADDRESS} tcp dport 53 accept",
            "  ct state established,related accept",
        ]
        lines += [f"  {entry.rule()}" for entry in self.allowed]
        for network in (*BLOCKED, *host_addresses()):
            family = "ip" if ipaddress.ip_network(network).version == 4 else "ip6"
            lines.append(f"  {family} daddr {network} reject")
        lines += [" }", "}", ""]
        return "\n".join(lines)


def host_addresses() -> list[str]:
    """This host's own addresses (whatever their range: slirp would connect to them)."""
    found: set[str] = set()
    with contextlib.suppress(OSError):
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
        for previous, line in itertools.pairwise(lines):
            if "/32 host LOCAL" in line:
                found.add(previous.split()[-1] + "/32")
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            raw = line.split()[0]
            found.add(str(ipaddress.IPv6Address(int(raw, 16))) + "/128")
    return sorted(found)


@dataclass(slots=True)
class Slirp:
    """The slirp4netns process serving one sandbox's namespace; it exits when `exit_fd` closes."""

    process: subprocess.Popen[bytes]
    api_socket: Path
    exit_fd: int

    def stop(self) -> None:
        """Idempotent: the fd is closed once (a second close would hit another's reused fd)."""
        fd, self.exit_fd = self.exit_fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def start_slirp(
    pid: int, api_socket: Path, policy: NetworkPolicy, log_path: Path, timeout: float = 60
) -> Slirp:
    """Give the namespace of `pid` a tap device routed through slirp4netns."""
    ready_read, ready_write = os.pipe()
    exit_read, exit_write = os.pipe()
    # Its own user namespace (root's): by default slirp4netns joins the target's, which bwrap
    # nests below the one owning the network namespace once set up, and setns then fails.
    args = ["slirp4netns", "--configure", "--mtu=65520", "--enable-ipv6"]
    args.append("--userns-path=/proc/self/ns/user")
    if not policy.host_loopback:
        args.append("--disable-host-loopback")
    args += [
        "--ready-fd",
        str(ready_write),
        "--exit-fd",
        str(exit_read),
        "--api-socket",
        str(api_socket),
        str(pid),
        "tap0",
    ]
    try:
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                args,
                pass_fds=(ready_write, exit_read),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    except OSError as exc:
        os.close(exit_write)
        raise WorkspaceError(f"cannot start slirp4netns: {exc}") from exc
    finally:
        os.close(ready_write)
        os.close(exit_read)
    slirp = Slirp(process, api_socket, exit_write)
    try:
        os.set_blocking(ready_read, True)
        ready = _read_with_timeout(ready_read, timeout)
    finally:
        os.close(ready_read)
    if ready != b"1":
        slirp.stop()
        raise WorkspaceError(f"slirp4netns did not configure the sandbox's network: see {log_path}")
    return slirp


def _read_with_timeout(fd: int, timeout: float) -> bytes:
    readable, _, _ = select.select([fd], [], [], timeout)
    return os.read(fd, 1) if readable else b""


def apply_rules(pid: int, policy: NetworkPolicy) -> None:
    """Load the firewall into the namespace of `pid` (from the host: the sandbox holds no
    capability to change it)."""
    done = subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", "nft", "-f", "-"],
        input=policy.ruleset().encode(),
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise WorkspaceError(f"cannot load the sandbox's firewall: {done.stderr.decode()[:500]}")


def forward_port(api_socket: Path, host_port: int, guest_port: int) -> None:
    """Host 127.0.0.1:`host_port` → the sandbox's `guest_port`: how the bot reaches its server."""
    request = {
        "execute": "add_hostfwd",
        "arguments": {
            "proto": "tcp",
            "host_addr": "127.0.0.1",
            "host_port": host_port,
            "guest_addr": GUEST_ADDRESS,
            "guest_port": guest_port,
        },
    }
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(api_socket))
        sock.sendall(json.dumps(request).encode())
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    reply = json.loads(answer or b"{}")
    if "error" in reply or "return" not in reply:
        raise WorkspaceError(f"slirp4netns refused the port forward: {answer.decode()[:300]}")
