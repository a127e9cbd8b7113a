"""`bqx-enqueue --resume RUN_ID` and idempotency: only unfinished pairs run again, a repeated
pair is counted once, and a report that fires early waits for the missing pairs."""

from __future__ import annotations

import json
import shutil

import pytest
import redis
from celery import Celery
from test_faults import assert_each_pair_once, deliveries, enqueue, run_dir, wait_for

pytestmark = pytest.mark.e2e

PAIRS = ["eurusd", "gbpusd", "usdjpy"]


def complete_run(env: dict[str, str], warehouse, run_id: str) -> None:
    done = enqueue(
        env,
        "--pairs",
        ",".join(PAIRS),
        "--horizons",
        "15",
        "--warehouse",
        str(warehouse),
        "--max-rows",
        "3000",
        "--run-id",
        run_id,
        "--wait",
    )
    assert done.returncode == 0, done.stderr


def test_resume_reenqueues_only_unfinished_pairs_and_rebuilds_the_report(queue_env, small_warehouse, start_worker):
    start_worker("resume", concurrency=2)
    complete_run(queue_env, small_warehouse, "partial")
    folder = run_dir(queue_env, "partial")
    # gbpusd never finished (no artifact); usdjpy finished as failed
    (folder / "pairs" / "gbpusd.json").unlink()
    (folder / "pairs" / "gbpusd.ledger.parquet").unlink()
    failed = json.loads((folder / "pairs" / "usdjpy.json").read_text()) | {
        "status": "failed",
        "error": "boom",
    }
    (folder / "pairs" / "usdjpy.json").write_text(json.dumps(failed))
    eurusd_written = (folder / "pairs" / "eurusd.json").stat().st_mtime_ns
    old_report = (folder / "report.json").stat().st_mtime_ns

    resumed = enqueue(queue_env, "--resume", "partial", "--wait")
    assert resumed.returncode == 0, resumed.stderr
    assert "re-enqueued 2 of 3 pairs: gbpusd, usdjpy" in resumed.stdout
    data = assert_each_pair_once(queue_env, "partial", PAIRS)
    assert all(p["status"] == "ok" for p in data["pairs"])
    assert (folder / "report.json").stat().st_mtime_ns > old_report
    assert (folder / "pairs" / "eurusd.json").stat().st_mtime_ns == eurusd_written  # not recomputed
    assert deliveries(queue_env, "partial", "eurusd") == 1
    assert deliveries(queue_env, "partial", "gbpusd") == 1  # counter reset for the resumed pairs
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["resumes"][-1]["pairs"] == ["gbpusd", "usdjpy"]


def test_resume_after_the_queue_was_lost(queue_env, small_warehouse, start_worker):
    # enqueued while no worker runs, then Redis loses everything (a restart without persistence)
    queued = enqueue(
        queue_env,
        "--pairs",
        ",".join(PAIRS),
        "--horizons",
        "15",
        "--warehouse",
        str(small_warehouse),
        "--max-rows",
        "3000",
        "--run-id",
        "lost",
        "--no-wait-for-workers",
        "--worker-timeout",
        "0.5",
    )
    assert queued.returncode == 0, queued.stderr
    broker = redis.Redis.from_url(queue_env["BQX_BROKER_URL"])
    broker.flushdb()
    worker = start_worker("lost", concurrency=2)
    # nothing left to run: the queue is empty and the consuming worker answers that it holds nothing
    assert broker.llen("celery") == 0
    probe = Celery(broker=queue_env["BQX_BROKER_URL"])
    probe.conf.update(accept_content=["json"])
    inspect = probe.control.inspect(destination=[worker.name], timeout=10)
    assert inspect.active() == {worker.name: []}
    assert inspect.reserved() == {worker.name: []}
    probe.close()
    assert not list((run_dir(queue_env, "lost") / "pairs").glob("*.json"))
    resumed = enqueue(queue_env, "--resume", "lost", "--wait")
    assert resumed.returncode == 0, resumed.stderr
    assert "re-enqueued 3 of 3 pairs" in resumed.stdout
    data = assert_each_pair_once(queue_env, "lost", PAIRS)
    assert all(p["status"] == "ok" for p in data["pairs"])


def test_resume_of_a_finished_run_only_rebuilds_the_report(queue_env, small_warehouse, start_worker):
    worker = start_worker("again", concurrency=2)
    complete_run(queue_env, small_warehouse, "finished")
    worker.stop()
    folder = run_dir(queue_env, "finished")
    (folder / "report.json").unlink()
    # no broker needed: nothing is enqueued
    resumed = enqueue(queue_env | {"BQX_BROKER_URL": "redis://127.0.0.1:1/0"}, "--resume", "finished")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == str(folder / "report.json")
    assert_each_pair_once(queue_env, "finished", PAIRS)


def test_repeated_pair_is_not_recomputed_and_counted_once(queue_env, small_warehouse, start_worker):
    start_worker("repeat", concurrency=2)
    complete_run(queue_env, small_warehouse, "repeated")
    folder = run_dir(queue_env, "repeated")
    before = json.loads((folder / "report.json").read_text())
    written = (folder / "pairs" / "gbpusd.json").stat().st_mtime_ns
    app = Celery(broker=queue_env["BQX_BROKER_URL"], backend=queue_env["BQX_RESULT_BACKEND"])
    app.conf.update(accept_content=["json"], result_accept_content=["json"])
    # the same pair delivered again, as after a lost acknowledgement
    again = app.send_task("bqx.process_pair", args=["repeated", "gbpusd"]).get(timeout=30)
    assert again["status"] == "ok"
    report = app.send_task("bqx.build_report", args=[[], "repeated"]).get(timeout=30)
    after = json.loads(open(report).read())
    assert (folder / "pairs" / "gbpusd.json").stat().st_mtime_ns == written
    assert after["totals"] == before["totals"]
    assert [p["pair"] for p in after["pairs"]] == PAIRS
    app.close()


def test_report_that_fires_early_waits_for_missing_pairs(queue_env, small_warehouse, start_worker, tmp_path):
    start_worker("early", concurrency=2)
    complete_run(queue_env, small_warehouse, "early")
    folder = run_dir(queue_env, "early")
    parked = tmp_path / "gbpusd.json"
    shutil.move(folder / "pairs" / "gbpusd.json", parked)
    (folder / "report.json").unlink()
    app = Celery(broker=queue_env["BQX_BROKER_URL"], backend=queue_env["BQX_RESULT_BACKEND"])
    app.conf.update(accept_content=["json"], result_accept_content=["json"])
    # a chord that counted one pair twice calls its report with a pair still running
    report = app.send_task("bqx.build_report", args=[[], "early"])
    wait_for(lambda: report.state == "RETRY", 30, "the report to wait for the missing pair")
    assert not (folder / "report.json").exists()
    shutil.move(parked, folder / "pairs" / "gbpusd.json")  # the pair finishes
    wait_for(lambda: (folder / "report.json").exists(), 20, "the report")
    data = assert_each_pair_once(queue_env, "early", PAIRS)
    assert all(p["status"] == "ok" for p in data["pairs"])
    app.close()
