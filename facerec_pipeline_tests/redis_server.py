"""A real, throwaway Redis server (Debian's `redis-server`) on a free port of 127.0.0.1 that keeps
nothing on disk: the Celery broker of the distributed tests and of `make bench-distributed`."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

INSTALL_HINT = (
    "redis-server not found: install Debian's `redis-server` package "
    "(scripts/install-system-packages.sh does it) to run the distributed tests"
)


class RedisUnavailable(RuntimeError):
    pass


def redis_binary() -> str:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        raise RedisUnavailable(INSTALL_HINT)
    return binary


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A Redis server whose log is in `folder`; yields its URL."""
    binary = redis_binary()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(
        [binary, *args, "--dir", str(folder)],
        stdout=(folder / "redis.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(30)
