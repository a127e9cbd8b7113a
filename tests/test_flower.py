"""`bqx flower`: real Flower on the test Redis, behind basic auth, sees the workers and every
process_pair task of a chord through its REST API."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bqx_queue.celery.embedded_redis import free_port
from bqx_queue.runner.processes import stop_process

BQX = str(Path(sys.executable).with_name("bqx"))
ENQUEUE = str(Path(sys.executable).with_name("bqx-enqueue"))
PAIRS = ["eurusd", "gbpusd"]
AUTH = ("watcher", "s3cret-for-tests")
NO_FLOWER_ENV = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}


def _until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout_s} s; last: {last!r}")


@pytest.fixture()
def flower(queue_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """Start `bqx flower` on a free port with credentials; yield its base URL."""
    port = free_port()
    log = tmp_path / "flower.log"
    env = NO_FLOWER_ENV | queue_env | {"FLOWER_USER": AUTH[0], "FLOWER_PASSWORD": AUTH[1]}
    process = subprocess.Popen(
        [BQX, "flower", "--port", str(port)],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: process.poll() is None and requests.get(f"{url}/healthcheck", timeout=2).ok, 60,
               f"Flower answers /healthcheck (log: {log})")  # fmt: skip
        yield url
    finally:
        stop_process(process, 15)


@pytest.mark.integration
def test_bqx_flower_refuses_to_start_without_credentials(queue_env: dict[str, str]) -> None:
    port = free_port()
    done = subprocess.run([BQX, "flower", "--port", str(port)], env=NO_FLOWER_ENV | queue_env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert "FLOWER_USER and FLOWER_PASSWORD" in done.stderr
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthcheck", timeout=2)

    malformed = subprocess.run(
        [BQX, "flower", "--port", str(port)],
        env=NO_FLOWER_ENV | queue_env | {"FLOWER_BASIC_AUTH": "nopassword"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert malformed.returncode == 2 and "user:password" in malformed.stderr


@pytest.mark.e2e
def test_flower_api_shows_workers_and_every_pair_task(small_warehouse, queue_env, start_worker, flower: str) -> None:
    worker = start_worker("w1", concurrency=2)

    # Without credentials, or with wrong ones, the API refuses.
    assert requests.get(f"{flower}/api/workers", timeout=10).status_code == 401
    assert requests.get(f"{flower}/api/tasks", auth=(AUTH[0], "wrong"), timeout=10).status_code == 401
    assert requests.get(f"{flower}/", timeout=10).status_code == 401

    workers = _until(
        lambda: (r := requests.get(f"{flower}/api/workers", params={"refresh": 1}, auth=AUTH, timeout=20)).ok
        and worker.name in r.json() and r.json(),
        60, "Flower lists the worker",
    )  # fmt: skip
    assert workers[worker.name]["stats"]["pool"]["max-concurrency"] == 2
    assert "bqx.process_pair" in workers[worker.name]["registered"]

    done = subprocess.run(
        [ENQUEUE, "--pairs", ",".join(PAIRS), "--wait", "--warehouse", str(small_warehouse), "--horizons", "15,30"],
        capture_output=True, text=True, timeout=600, env=os.environ | queue_env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = done.stdout.splitlines()[0].removeprefix("run ").strip()

    def pair_tasks() -> dict[str, Any] | None:
        tasks = requests.get(
            f"{flower}/api/tasks", params={"taskname": "bqx.process_pair"}, auth=AUTH, timeout=10
        ).json()
        mine = {t["uuid"]: t for t in tasks.values() if run_id in (t.get("args") or "")}
        return mine if len(mine) == len(PAIRS) and all(t["state"] == "SUCCESS" for t in mine.values()) else None

    tasks = _until(pair_tasks, 60, "Flower shows every pair task as SUCCESS")
    assert sorted(next(p for p in PAIRS if p in t["args"]) for t in tasks.values()) == sorted(PAIRS)
    assert {t["worker"] for t in tasks.values()} == {worker.name}
    assert all(t["runtime"] > 0 and t["started"] and t["succeeded"] for t in tasks.values())

    report = requests.get(f"{flower}/api/tasks", params={"taskname": "bqx.build_report"}, auth=AUTH, timeout=10).json()
    assert any(run_id in (t.get("args") or "") and t["state"] == "SUCCESS" for t in report.values())
