"""The sandbox's parts that need no sandbox: the network policy it loads, and the store that keeps
a thread's checkout between runs (and throws it away if it changed meanwhile)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.agent.workspace.kept import KeptStore, fingerprint
from bot.agent.workspace.netns import Allowed, NetworkPolicy


@pytest.mark.parametrize(
    ("entry", "network", "port"),
    [
        ("10.1.0.0/16", "10.1.0.0/16", None),
        ("192.168.1.5", "192.168.1.5/32", None),
        ("10.0.2.2:8080", "10.0.2.2/32", 8080),
        ("[fd00::1]:80", "fd00::1/128", 80),
        ("fd00::/8", "fd00::/8", None),
    ],
)
def test_allow_list_entries_parse(entry: str, network: str, port: int | None) -> None:
    allowed = Allowed.parse(entry)
    assert str(allowed.network) == network
    assert allowed.port == port


@pytest.mark.parametrize("entry", ["10.0.2.2:0", "10.0.2.2:70000", "not-an-address", "10.0.0.0/33"])
def test_bad_allow_list_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  (ipaddress's and ours)
        Allowed.parse(entry)


def test_the_host_loopback_is_offered_only_when_allow_listed() -> None:
    assert not NetworkPolicy().host_loopback
    assert not NetworkPolicy.from_settings(["192.168.0.0/16"]).host_loopback
    assert NetworkPolicy.from_settings(["10.0.2.2:3128"]).host_loopback


def test_allowed_destinations_come_before_the_blocked_ranges() -> None:
    rules = NetworkPolicy.from_settings(["10.0.2.2:3128"]).ruleset().splitlines()
    allow = rules.index("  ip daddr 10.0.2.2/32 tcp dport 3128 accept")
    assert allow < rules.index("  ip daddr 10.0.0.0/8 reject")
    assert rules.index("  ip daddr 127.0.0.0/8 reject") > allow
    assert "  ip daddr 169.254.0.0/16 reject" in rules
    assert "  ip6 daddr fc00::/7 reject" in rules


def _checkout(root: Path) -> Path:
    work = root / "work"
    (work / "repo" / "src").mkdir(parents=True)
    (work / "repo" / "src" / "main.py").write_text("print('hi')\n")
    (work / "repo" / "link").symlink_to("/etc/passwd")
    os.mkfifo(work / "repo" / "fifo")  # hostile: opening it would block a naive reader
    (work / ".agent-server" / "workspace" / "conversations" / "abc").mkdir(parents=True)
    return work


def test_a_kept_checkout_moves_into_the_next_run(tmp_path: Path) -> None:
    store = KeptStore(tmp_path / "kept")
    store.put("thread-1", _checkout(tmp_path / "first"))
    second = tmp_path / "second" / "work"
    (second / ".agent-server").mkdir(parents=True)

    assert store.take("thread-1", second, os.getuid())

    assert (second / "repo" / "src" / "main.py").read_text() == "print('hi')\n"
    assert os.readlink(second / "repo" / "link") == "/etc/passwd"
    assert (second / ".agent-server" / "workspace" / "conversations" / "abc").is_dir()
    assert not (tmp_path / "kept" / "thread-1").exists()  # one next run only
    assert not store.take("thread-1", second, os.getuid())


def test_a_kept_checkout_changed_meanwhile_is_thrown_away(tmp_path: Path) -> None:
    store = KeptStore(tmp_path / "kept")
    store.put("thread-1", _checkout(tmp_path / "first"))
    planted = tmp_path / "kept" / "thread-1" / "content" / "repo" / "src" / "main.py"
    planted.write_text("print('planted')\n")
    second = tmp_path / "second" / "work"
    second.mkdir(parents=True)

    assert not store.take("thread-1", second, os.getuid())

    assert not (second / "repo").exists()
    assert not (tmp_path / "kept" / "thread-1").exists()


def test_the_fingerprint_sees_content_modes_and_links(tmp_path: Path) -> None:
    work = _checkout(tmp_path)
    before = fingerprint(work)
    (work / "repo" / "src" / "main.py").chmod(0o755)
    assert fingerprint(work) != before
    (work / "repo" / "src" / "main.py").chmod(0o644)
    (work / "repo" / "link").unlink()
    (work / "repo" / "link").symlink_to("/etc/shadow")
    assert fingerprint(work) != before


@pytest.mark.parametrize("name", ["", "../escape", ".hidden", "a/b"])
def test_workspace_ids_cannot_leave_the_store(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="bad workspace id"):
        KeptStore(tmp_path).take(name, tmp_path, os.getuid())
