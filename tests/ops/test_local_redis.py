"""The private redis-server of the embedded default, with the real redis-server binary."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from arq.connections import RedisSettings
from redis import Redis

from bot.config import Settings
from bot.ops.local_redis import HOW_TO_GET, PrivateRedis, RedisUnavailable, answers, redis_for
from tests.helpers import free_port

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="needs the redis-server binary")


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: 'no Redis at the default address'."""
    return free_port()


@pytest.fixture
def unset_redis_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """Settings as on a fresh machine: REDIS_URL in neither the environment nor a .env."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    settings = Settings(_env_file=None, state_dir=tmp_path / "state")  # type: ignore[call-arg]
    assert "redis_url" not in settings.model_fields_set
    return settings


def _config(client: Redis, name: str) -> str:
    value = client.config_get(name)[name]
    return value.decode() if isinstance(value, bytes) else str(value)


def test_a_private_server_keeps_its_data_in_the_state_dir_and_stops(tmp_path: Path) -> None:
    assert REDIS_SERVER is not None
    data_dir = tmp_path / "state" / "redis"
    server = PrivateRedis(data_dir, REDIS_SERVER)
    url = server.start()
    try:
        assert url == f"unix://{data_dir / 'redis.sock'}?db=0"
        with Redis.from_url(url) as client:
            client.set("kept", "across restarts")
            assert _config(client, "appendonly") == "yes"
            assert Path(_config(client, "dir")) == data_dir
            assert _config(client, "port") == "0"  # no TCP listener: the socket only
    finally:
        server.stop()
    assert not answers(str(data_dir / "redis.sock"))
    assert (data_dir / "appendonlydir").is_dir()
    assert oct(data_dir.stat().st_mode & 0o777) == "0o700"

    again = PrivateRedis(data_dir, REDIS_SERVER)
    with Redis.from_url(again.start()) as client:
        assert client.get("kept") == b"across restarts"
    again.stop()


def test_serve_gets_a_private_server_when_redis_url_is_unset_and_nothing_answers(
    unset_redis_url: Settings, closed_port: int
) -> None:
    with redis_for(unset_redis_url, default_address=("127.0.0.1", closed_port)) as settings:
        url = settings.redis_url
        assert url.startswith("unix://")
        socket_path = RedisSettings.from_dsn(url).unix_socket_path  # as the worker reads it
        assert socket_path == str((unset_redis_url.state_dir / "redis" / "redis.sock").resolve())
        with Redis.from_url(url) as client:
            assert client.ping()
    assert not answers(socket_path)


def test_a_set_redis_url_or_a_redis_on_the_default_port_is_used_as_is(
    tmp_path: Path, unset_redis_url: Settings, redis_url: str
) -> None:
    explicit = Settings(  # type: ignore[call-arg]
        _env_file=None, redis_url="redis://127.0.0.1:1/0", state_dir=tmp_path / "state"
    )
    with redis_for(explicit) as settings:
        assert settings.redis_url == "redis://127.0.0.1:1/0"
    test_redis = urlsplit(redis_url)
    assert test_redis.port is not None
    default = (str(test_redis.hostname), test_redis.port)
    with redis_for(unset_redis_url, default_address=default) as settings:
        assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert not (tmp_path / "state" / "redis").exists()


def test_without_redis_server_it_says_how_to_get_one(
    unset_redis_url: Settings, closed_port: int
) -> None:
    with (
        pytest.raises(RedisUnavailable) as raised,
        redis_for(
            unset_redis_url,
            default_address=("127.0.0.1", closed_port),
            which=lambda name: None,
        ),
    ):
        pass
    assert str(raised.value) == HOW_TO_GET
    assert "apt-get install redis-server" in HOW_TO_GET
    assert "brew install redis" in HOW_TO_GET
    assert "REDIS_URL" in HOW_TO_GET


def test_a_second_process_shares_the_server_and_only_the_owner_stops_it(tmp_path: Path) -> None:
    assert REDIS_SERVER is not None
    owner = PrivateRedis(tmp_path / "redis", REDIS_SERVER)
    guest = PrivateRedis(tmp_path / "redis", REDIS_SERVER)
    url = owner.start()
    try:
        assert guest.start() == url
        assert (owner.owner, guest.owner) == (True, False)
        guest.stop()
        assert answers(owner.address)
    finally:
        owner.stop()
    assert not answers(owner.address)


def test_a_server_left_by_a_killed_bot_is_adopted_and_stopped(tmp_path: Path) -> None:
    assert REDIS_SERVER is not None
    data_dir = tmp_path / "redis"
    starter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from bot.ops.local_redis import PrivateRedis\n"
            f"PrivateRedis(Path({str(data_dir)!r}), {REDIS_SERVER!r}).start()\n"
            "print('up', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
    )
    assert starter.stdout is not None
    assert starter.stdout.readline() == b"up\n"
    os.kill(starter.pid, signal.SIGKILL)  # no clean-up: its redis-server lives on
    starter.wait()
    starter.stdout.close()
    socket_path = str(data_dir / "redis.sock")
    assert answers(socket_path)

    heir = PrivateRedis(data_dir, REDIS_SERVER)
    assert heir.start() == f"unix://{socket_path}?db=0"
    assert heir.owner
    heir.stop()
    deadline = time.monotonic() + 5
    while answers(socket_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not answers(socket_path)


def test_a_state_dir_too_deep_for_a_socket_still_gets_no_tcp_port(tmp_path: Path) -> None:
    # A TCP port on loopback would let any process on the host (the agent's included) reach
    # the queue; a short private directory holds the socket instead.
    assert REDIS_SERVER is not None
    data_dir = tmp_path / ("deep-" * 25) / "redis"
    server = PrivateRedis(data_dir, REDIS_SERVER)
    url = server.start()
    try:
        assert url.startswith("unix://")
        socket_path = Path(url.removeprefix("unix://").split("?", 1)[0])
        assert not socket_path.is_relative_to(data_dir)
        assert oct(socket_path.parent.stat().st_mode & 0o777) == "0o700"
        with Redis.from_url(url) as client:
            assert client.ping()
            assert _config(client, "port") == "0"
            assert Path(_config(client, "dir")) == data_dir
    finally:
        server.stop()
    assert not answers(str(socket_path))
    assert not socket_path.parent.exists()  # the private directory goes with the server
