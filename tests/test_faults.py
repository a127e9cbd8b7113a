"""The seven faults of a run, each against a real Redis and real prefork workers.

Workers that get faults run the test app tests/support/fault_worker.py: bqx's app, plus the
BQX_FAULT_* variables (sleep, self-SIGKILL, a hang that ignores the soft time limit). The
producer is the real `bqx-enqueue` in a subprocess. Runs are tiny (a few pairs, one horizon, few fits), so each
test takes seconds of analysis and the rest is the fault itself.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis
from conftest import FAULT_APP, run_worker_with_app

from bqx_queue.celery.embedded_redis import EmbeddedRedis, free_port

BIN = Path(sys.executable).parent
# Few fits and rounds: the analysis of a pair takes about a second.
FAST = {
    "BQX_SELECTION_PAIRS": "4",
    "BQX_LGBM_ROUNDS": "10",
    "BQX_CV_FOLDS": "1",
    "BQX_SHAP_ROWS": "200",
}


def enqueue(env: dict[str, str], *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real `bqx-enqueue` with the test's environment; returns the finished process."""
    return subprocess.run(
        [str(BIN / "bqx-enqueue"), *args],
        env=os.environ | FAST | env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def start_run(
    env: dict[str, str],
    warehouse: Path,
    pairs: str,
    run_id: str,
    horizons: str = "15",
    max_rows: int = 3000,
) -> subprocess.Popen[str]:
    """Start `bqx-enqueue --wait` in the background (the test does something to the run)."""
    return subprocess.Popen(
        [
            str(BIN / "bqx-enqueue"),
            "--pairs",
            pairs,
            "--horizons",
            horizons,
            "--warehouse",
            str(warehouse),
            "--max-rows",
            str(max_rows),
            "--run-id",
            run_id,
            "--wait",
        ],
        env=os.environ | FAST | env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def run_dir(env: dict[str, str], run_id: str) -> Path:
    return Path(env["BQX_RUNS_DIR"]) / run_id


def report(env: dict[str, str], run_id: str) -> dict[str, Any]:
    return json.loads((run_dir(env, run_id) / "report.json").read_text())


def assert_each_pair_once(env: dict[str, str], run_id: str, pairs: list[str]) -> dict[str, Any]:
    """The report and the ledger hold every pair of the run exactly once; returns the report."""
    data = report(env, run_id)
    assert [p["pair"] for p in data["pairs"]] == pairs
    assert data["totals"]["queries"] == sum(p["queries"] for p in data["pairs"])
    ledger = pd.read_parquet(run_dir(env, run_id) / "ledger.parquet")
    ok = [p["pair"] for p in data["pairs"] if p["status"] == "ok"]
    assert sorted(ledger["pair"].unique()) == sorted(ok)
    assert not ledger.duplicated(["pair", "feature", "horizon"]).any()
    return data


def deliveries(env: dict[str, str], run_id: str, pair: str) -> int:
    value = redis.Redis.from_url(env["BQX_BROKER_URL"]).get(f"bqx:deliveries:{run_id}:{pair}")
    return int(value or 0)


def active_child(app_env: dict[str, str], pair: str, timeout_s: float = 30) -> int:
    """Return the pid of the worker child running `pair` (asks the workers, as Flower would)."""
    from celery import Celery

    app = Celery(broker=app_env["BQX_BROKER_URL"])
    app.conf.update(accept_content=["json"], task_serializer="json", result_serializer="json")

    def find() -> int | None:
        for tasks in (app.control.inspect(timeout=1.0).active() or {}).values():
            for task in tasks:
                if task["name"] == "bqx.process_pair" and task["args"][1] == pair:
                    return int(task["worker_pid"])
        return None

    try:
        return int(wait_for(find, timeout_s, f"a child running {pair}"))
    finally:
        app.close()


# 1 ----------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_sigkilled_child_is_redelivered_and_each_pair_is_reported_once(queue_env, small_warehouse, start_worker):
    worker = start_worker("kill1", app=FAULT_APP, concurrency=2, BQX_FAULT_SLEEP="gbpusd:6")
    pairs = ["eurusd", "gbpusd", "usdjpy"]
    producer = start_run(queue_env, small_warehouse, ",".join(pairs), "killed-child")
    child = active_child(queue_env, "gbpusd")
    os.kill(child, signal.SIGKILL)
    out, err = producer.communicate(timeout=90)
    assert producer.returncode == 0, err
    data = assert_each_pair_once(queue_env, "killed-child", pairs)
    assert all(p["status"] == "ok" for p in data["pairs"])
    gbpusd = next(p for p in data["pairs"] if p["pair"] == "gbpusd")
    assert gbpusd["pid"] != child  # finished by another child than the one killed
    assert deliveries(queue_env, "killed-child", "gbpusd") == 2
    assert "WorkerLostError" in worker.log.read_text() or "exited prematurely" in worker.log.read_text()


# 2 ----------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_pair_that_always_kills_its_child_is_tried_a_bounded_number_of_times(queue_env, small_warehouse, start_worker):
    worker = start_worker("kill2", app=FAULT_APP, concurrency=2, BQX_FAULT_KILL="gbpusd")
    pairs = ["eurusd", "gbpusd"]
    producer = start_run(queue_env | {"BQX_MAX_DELIVERIES": "2"}, small_warehouse, ",".join(pairs), "always-dies")
    out, err = producer.communicate(timeout=90)
    assert producer.returncode == 1, err  # finished, with a failed pair
    data = assert_each_pair_once(queue_env, "always-dies", pairs)
    status = {p["pair"]: p for p in data["pairs"]}
    assert status["eurusd"]["status"] == "ok"
    assert status["gbpusd"]["status"] == "failed"
    assert "gave up after 2 deliveries" in status["gbpusd"]["error"]
    assert deliveries(queue_env, "always-dies", "gbpusd") == 3  # 2 deaths, then the give-up
    assert "gbpusd" in err  # the producer names the failed pair
    # the worker's log line says which run and pair it gave up on
    assert re.search(r"giving up on a pair \[run=always-dies pair=gbpusd deliveries=2\]", worker.log.read_text())


# 3 ----------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_child_over_memory_cap_is_replaced_and_the_run_goes_on(queue_env, small_warehouse, start_worker):
    # 64 MiB is below any child's resident size after a pair: every child is replaced after its task
    start_worker("mem", concurrency=1, BQX_WORKER_MAX_MEMORY_PER_CHILD_KIB="65536")
    pairs = ["eurusd", "gbpusd", "usdjpy"]
    producer = start_run(queue_env, small_warehouse, ",".join(pairs), "memory-cap")
    out, err = producer.communicate(timeout=90)
    assert producer.returncode == 0, err
    data = assert_each_pair_once(queue_env, "memory-cap", pairs)
    assert all(p["status"] == "ok" for p in data["pairs"])
    # one slot, yet one child per pair: each child was replaced after its task went over the cap
    assert len({p["pid"] for p in data["pairs"]}) == len(pairs)


# 4 ----------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_graceful_stop_mid_run_then_restart_finishes_without_recomputing(queue_env, small_warehouse, start_worker):
    first = start_worker("stop1", app=FAULT_APP, concurrency=1, BQX_FAULT_SLEEP="gbpusd:5")
    pairs = ["eurusd", "gbpusd", "usdjpy", "usdchf"]
    producer = start_run(queue_env, small_warehouse, ",".join(pairs), "stopped")
    folder = run_dir(queue_env, "stopped")
    wait_for(lambda: (folder / "pairs" / "eurusd.json").exists(), 60, "the first pair")
    active_child(queue_env, "gbpusd")  # the second pair is running
    first.process.send_signal(signal.SIGTERM)  # warm shutdown: the running pair finishes
    first.process.wait(60)
    finished = {p.stem: p.stat().st_mtime_ns for p in (folder / "pairs").glob("*.json")}
    assert set(finished) == {"eurusd", "gbpusd"}  # nothing started after the stop began

    second = start_worker("stop2", concurrency=1)
    out, err = producer.communicate(timeout=90)
    assert producer.returncode == 0, err
    data = assert_each_pair_once(queue_env, "stopped", pairs)
    by_pair = {p["pair"]: p for p in data["pairs"]}
    assert all(p["status"] == "ok" for p in data["pairs"])
    for pair, mtime in finished.items():  # finished pairs were not recomputed
        assert (folder / "pairs" / f"{pair}.json").stat().st_mtime_ns == mtime
        assert deliveries(queue_env, "stopped", pair) == 1
    assert by_pair["usdjpy"]["pid"] != by_pair["eurusd"]["pid"]  # the rest ran on the new worker
    assert "bqx.process_pair" in second.log.read_text()


# 5 ----------------------------------------------------------------------------------------


@pytest.fixture()
def persistent_redis(tmp_path: Path):
    """A private Redis with AOF persistence that a test can restart on the same port and folder."""
    server = EmbeddedRedis(port=free_port(), data_dir=tmp_path / "redis-data", appendonly=True)
    server.start()
    yield server
    server.stop()


@pytest.mark.e2e
def test_redis_restart_mid_run_completes_or_resumes(queue_env, small_warehouse, start_worker, persistent_redis):
    env = queue_env | {
        "BQX_BROKER_URL": f"{persistent_redis.url}/0",
        "BQX_RESULT_BACKEND": f"{persistent_redis.url}/1",
    }
    start_worker(
        "aof",
        app=FAULT_APP,
        concurrency=1,
        BQX_FAULT_SLEEP="gbpusd:5",
        BQX_BROKER_URL=env["BQX_BROKER_URL"],
        BQX_RESULT_BACKEND=env["BQX_RESULT_BACKEND"],
    )
    pairs = ["eurusd", "gbpusd", "usdjpy", "usdchf"]
    producer = start_run(env, small_warehouse, ",".join(pairs), "redis-restart")
    folder = run_dir(env, "redis-restart")
    wait_for(lambda: (folder / "pairs" / "eurusd.json").exists(), 60, "the first pair")
    active_child(env, "gbpusd")
    eurusd_written = (folder / "pairs" / "eurusd.json").stat().st_mtime_ns
    persistent_redis.stop()  # SIGTERM: Redis writes its AOF and exits
    time.sleep(1)
    persistent_redis.start()  # same port, same folder: the queues come back
    try:
        out, err = producer.communicate(timeout=45)
        finished_alone = producer.returncode == 0
    except subprocess.TimeoutExpired:
        producer.kill()
        producer.communicate()
        finished_alone = False
    if not finished_alone:  # then --resume must finish it
        resumed = enqueue(env, "--resume", "redis-restart", "--wait", timeout_s=90)
        assert resumed.returncode == 0, resumed.stderr
    data = assert_each_pair_once(env, "redis-restart", pairs)
    assert all(p["status"] == "ok" for p in data["pairs"])
    assert (folder / "pairs" / "eurusd.json").stat().st_mtime_ns == eurusd_written  # not recomputed


# 6 ----------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("visibility, limit", [("10", "10"), ("10", "20")])
def test_worker_refuses_a_visibility_timeout_not_above_the_hard_limit(queue_env, tmp_path, visibility, limit):
    started = time.monotonic()
    worker = subprocess.run(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bqx_queue",
            "worker",
            "--concurrency=1",
            "-n",
            "refuse@%h",
        ],
        env=os.environ | queue_env | {"BQX_VISIBILITY_TIMEOUT_S": visibility, "BQX_TASK_TIME_LIMIT_S": limit},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode != 0
    assert time.monotonic() - started < 30
    message = worker.stderr.strip()
    assert message == (
        f"error: visibility_timeout_s ({visibility}) must exceed task_time_limit_s ({limit}), "
        "or Redis redelivers a pair that is still running"
    )


@pytest.mark.integration
def test_worker_refuses_a_config_module_that_lowers_the_visibility_timeout(queue_env, tmp_path):
    worker = run_worker_with_app(
        "from bqx_queue.celery.application import app\napp.conf.broker_transport_options = {'visibility_timeout': 5}\n",
        queue_env,
        tmp_path,
    )
    assert worker.returncode == 2
    assert worker.stderr.strip().startswith("error: broker_transport_options visibility_timeout (5) must exceed")


@pytest.mark.e2e
def test_pair_longer_than_the_time_limit_is_killed_once_not_redelivered(queue_env, small_warehouse, start_worker):
    # visibility 14 s > hard limit 10 s; the pair would hang 30 s, deaf to the soft limit as C++ is
    limits = {"BQX_TASK_TIME_LIMIT_S": "10", "BQX_VISIBILITY_TIMEOUT_S": "14"}
    worker = start_worker("limit", app=FAULT_APP, concurrency=2, BQX_FAULT_HANG="gbpusd:30", **limits)
    pairs = ["eurusd", "gbpusd"]
    started = time.monotonic()
    producer = start_run(queue_env | limits, small_warehouse, ",".join(pairs), "too-long")
    out, err = producer.communicate(timeout=60)
    assert producer.returncode == 1, err  # the report was written, with the killed pair failed
    data = assert_each_pair_once(queue_env, "too-long", pairs)
    gbpusd = next(p for p in data["pairs"] if p["pair"] == "gbpusd")
    assert gbpusd["status"] == "failed"
    assert gbpusd["error"].startswith("hard time limit exceeded (10 s)")
    assert "Hard time limit (10" in worker.log.read_text()
    # past the visibility timeout, the pair was still delivered only once
    time.sleep(max(0.0, 14 + 3 - (time.monotonic() - started)))
    assert deliveries(queue_env, "too-long", "gbpusd") == 1
    assert len(re.findall(r"bqx\.process_pair\[[^\]]+\] received", worker.log.read_text())) == 2


# 7 ----------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_two_runs_at_once_do_not_mix(queue_env, small_warehouse, start_worker):
    start_worker("two", app=FAULT_APP, concurrency=2, BQX_FAULT_SLEEP="eurusd:1")
    runs = {
        "run-a": (["eurusd", "gbpusd"], [15], 3000),
        "run-b": (["eurusd", "usdjpy", "audusd"], [30, 60], 2000),
    }
    producers = {
        run_id: start_run(queue_env, small_warehouse, ",".join(pairs), run_id, ",".join(map(str, horizons)), rows)
        for run_id, (pairs, horizons, rows) in runs.items()
    }
    for run_id, producer in producers.items():
        out, err = producer.communicate(timeout=90)
        assert producer.returncode == 0, (run_id, err)
    for run_id, (pairs, horizons, rows) in runs.items():
        data = assert_each_pair_once(queue_env, run_id, pairs)
        assert data["run"]["run_id"] == run_id
        assert data["run"]["horizons"] == horizons
        assert {h for p in data["pairs"] for h in p["horizons"]} == {str(h) for h in horizons}
        ledger = pd.read_parquet(run_dir(queue_env, run_id) / "ledger.parquet")
        assert set(ledger["pair"]) == set(pairs)
        assert set(ledger["horizon"].astype(int)) == set(horizons)
        assert all(p["rows"] <= rows for p in data["pairs"])
        assert sorted(f.stem for f in (run_dir(queue_env, run_id) / "pairs").glob("*.json")) == sorted(pairs)
    assert deliveries(queue_env, "run-a", "eurusd") == deliveries(queue_env, "run-b", "eurusd") == 1


@pytest.mark.e2e
def test_pair_past_the_soft_limit_is_recorded_failed_and_the_report_is_written(
    queue_env, small_warehouse, start_worker
):
    limits = {"BQX_TASK_TIME_LIMIT_S": "10", "BQX_VISIBILITY_TIMEOUT_S": "14"}  # soft limit: 8 s
    start_worker("soft", app=FAULT_APP, concurrency=2, BQX_FAULT_SLEEP="gbpusd:20", **limits)
    pairs = ["eurusd", "gbpusd"]
    producer = start_run(queue_env | limits, small_warehouse, ",".join(pairs), "soft-limit")
    out, err = producer.communicate(timeout=60)
    assert producer.returncode == 1, err
    data = assert_each_pair_once(queue_env, "soft-limit", pairs)
    status = {p["pair"]: p for p in data["pairs"]}
    assert status["eurusd"]["status"] == "ok"
    assert status["gbpusd"]["status"] == "failed"
    assert "SoftTimeLimitExceeded" in status["gbpusd"]["error"]
    assert deliveries(queue_env, "soft-limit", "gbpusd") == 1


@pytest.mark.e2e
def test_whole_worker_killed_its_pair_comes_back_after_the_visibility_timeout(queue_env, small_warehouse, start_worker):
    import psutil

    limits = {"BQX_TASK_TIME_LIMIT_S": "10", "BQX_VISIBILITY_TIMEOUT_S": "12"}
    first = start_worker("host1", app=FAULT_APP, concurrency=1, BQX_FAULT_SLEEP="gbpusd:30", **limits)
    pairs = ["eurusd", "gbpusd", "usdjpy"]
    producer = start_run(queue_env | limits, small_warehouse, ",".join(pairs), "host-died")
    child = active_child(queue_env, "gbpusd")
    killed_at = time.monotonic()
    main = psutil.Process(first.process.pid)
    children = main.children(recursive=True)
    assert child in {c.pid for c in children}
    for process in [main, *children]:  # the host dies: nothing shuts down
        process.kill()
    first.process.wait(10)
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive
    # the new worker does not sleep: the redelivered pair finishes at once
    start_worker("host2", concurrency=1, **limits)
    out, err = producer.communicate(timeout=90)
    assert producer.returncode == 0, err
    # not at once: only when the visibility timeout (12 s from its delivery, which came a moment
    # before the kill) has passed
    assert time.monotonic() - killed_at >= 2
    data = assert_each_pair_once(queue_env, "host-died", pairs)
    assert all(p["status"] == "ok" for p in data["pairs"])
    assert deliveries(queue_env, "host-died", "gbpusd") == 2
