"""More hosts: two worker processes with their own node names and concurrency join one Redis and
one run folder by their settings alone, share one chord, and every pair has exactly one result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import redis

from bqx_queue.artifacts.run_folder import RunStore

pytestmark = pytest.mark.e2e

ENQUEUE = str(Path(sys.executable).with_name("bqx-enqueue"))
PAIRS = ["eurusd", "gbpusd", "usdjpy"]


def test_two_workers_share_one_chord_with_one_result_per_pair(small_warehouse, queue_env, start_worker) -> None:
    # Like two hosts: each worker gets only the broker, the result backend and the run folder.
    w1 = start_worker("w1", concurrency=1)
    w2 = start_worker("w2", concurrency=2)
    children = {w.name: {c.pid for c in psutil.Process(w.process.pid).children(recursive=True)} for w in (w1, w2)}

    done = subprocess.run(
        [ENQUEUE, "--pairs", ",".join(PAIRS), "--wait", "--warehouse", str(small_warehouse), "--worker-timeout", "5",
         "--horizons", "15,30"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 live workers, total concurrency 3" in done.stderr
    report_path = Path(done.stdout.strip().splitlines()[-1]).with_name("report.json")  # the last line: report.html
    report = json.loads(report_path.read_text())
    run_id = report["run"]["run_id"]

    # The manifest recorded both workers by node name; the report names who ran each pair.
    assert report["run"]["workers"] == {w1.name: 1, w2.name: 2}
    assert report["run"]["worker_count"] == 2 and report["run"]["concurrency"] == 3

    # Exactly one result per pair: one entry in the report, one artifact, one delivery each.
    assert sorted(p["pair"] for p in report["pairs"]) == sorted(PAIRS)
    assert report["totals"]["pairs_ok"] == 3 and report["totals"]["queries"] == 3
    store = RunStore(queue_env["BQX_RUNS_DIR"], run_id)
    assert sorted(store.pair_summaries()) == sorted(PAIRS)
    broker = redis.Redis.from_url(queue_env["BQX_BROKER_URL"])
    assert {p: int(broker.get(f"bqx:deliveries:{run_id}:{p}") or 0) for p in PAIRS} == dict.fromkeys(PAIRS, 1)

    # Spread: three pairs, three pool slots, so each pair ran in its own child and both workers
    # took part: w1's one child ran one pair, w2's two children ran the other two.
    ran_on = {}
    for pair in report["pairs"]:
        owner = [name for name, pids in children.items() if pair["pid"] in pids]
        assert len(owner) == 1, f"{pair['pair']} ran in pid {pair['pid']}, not a child of either worker"
        ran_on[pair["pair"]] = owner[0]
    assert sorted(ran_on.values()) == sorted([w1.name, w2.name, w2.name])
    assert report["run"]["processes"] == 3

    # The same spread is what report.html's timeline draws: one lane per process.
    page = (report_path.parent / "report.html").read_text()
    assert "Pair tasks per worker process (3 processes)" in page
    # `--wait` used the live view: its last line counts every pair done.
    assert f"run {run_id}: 3 done, 0 running, 0 failed, 0 queued of 3" in done.stderr


def test_a_producer_process_follows_its_settings_to_another_broker(redis_server, queue_env, start_worker) -> None:
    # one process, two brokers (a notebook, a test session): the second's workers answer, and its
    # tasks go to the second broker, not to the first, whose pools the app used before
    from bqx_queue.celery.application import use_settings
    from bqx_queue.celery.producer import live_workers
    from bqx_queue.config import load_settings

    first = f"{redis_server}/15"  # the result backend's database: queue_env emptied it
    app = use_settings(load_settings(broker_url=first))
    assert live_workers(app, 1) == {}  # the first broker's pools are now in use
    worker = start_worker("second", concurrency=1)
    app = use_settings(load_settings())
    assert live_workers(app, 5) == {worker.name: 1}
    app.send_task("bqx.nothing", queue="probe")
    assert redis.Redis.from_url(queue_env["BQX_BROKER_URL"]).llen("probe") == 1
    assert redis.Redis.from_url(first).llen("probe") == 0
