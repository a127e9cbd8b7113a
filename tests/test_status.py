"""`bqx status RUN_ID`: pairs done, running (on which worker), failed, queued, cost so far, ETA;
the same view that `bqx-enqueue --wait` follows."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from celery import Celery
from conftest import FAULT_APP
from rich.console import Console

from bqx_queue.artifacts.run_folder import RunStore
from bqx_queue.celery.config import celery_config
from bqx_queue.celery.status import render_status, run_status, status_line, watch_run
from bqx_queue.config import load_settings
from bqx_queue.domain import PairStatus, Resume

BQX = str(Path(sys.executable).with_name("bqx"))
ENQUEUE = str(Path(sys.executable).with_name("bqx-enqueue"))


class _Inspect:
    def __init__(self, active: dict[str, list[dict[str, Any]]]) -> None:
        self._active = active

    def active(self) -> dict[str, list[dict[str, Any]]]:
        return self._active


class _Control:
    def __init__(self, active: dict[str, list[dict[str, Any]]]) -> None:
        self._active = active

    def inspect(self, timeout: float) -> _Inspect:
        return _Inspect(self._active)


class AppAnswering:
    """Stands in for the Celery app: answers inspect().active() with fixed requests."""

    def __init__(self, active: dict[str, list[dict[str, Any]]]) -> None:
        self.control = _Control(active)


def _run_folder(tmp_path: Path, now: float) -> RunStore:
    store = RunStore(tmp_path, "run-1")
    created = datetime.fromtimestamp(now - 60, UTC).isoformat()
    store.write_json(
        store.manifest_path,
        {
            "run_id": "run-1",
            "created_at": created,
            "pairs": ["eurusd", "gbpusd", "usdjpy", "audusd"],
            "horizons": [15],
            "days": ["2024-01-02"],
            "warehouse": "w.duckdb",
            "source": "duckdb",
            "plans": {},
            "settings": {},
            "workers": {"w1@a": 1, "w2@b": 1},
        },
    )
    # an ok pair's summary vouches for its ledger: without one the pair would read as damaged
    ledger = store.write_parquet(store.ledger_path("eurusd"), pd.DataFrame({"feature": ["f1"], "horizon": [15]}))
    store.write_json(
        store.pair_path("eurusd"),
        {
            "pair": "eurusd",
            "status": "ok",
            "ledger": ledger.model_dump(),
            "cost_usd": 0.25,
            "host": "a",
            "pid": 11,
            "wall_s": 9.5,
            "started_at": now - 30,
            "finished_at": now - 20,
        },
    )
    store.write_json(
        store.pair_path("gbpusd"),
        {
            "pair": "gbpusd",
            "status": "failed",
            "error": "no table",
            "cost_usd": 0.0,
            "host": "b",
            "pid": 12,
            "started_at": now - 15,
            "finished_at": now - 5,
        },
    )
    return store


@pytest.mark.unit
def test_status_counts_running_pairs_by_worker_and_estimates_the_rest(tmp_path: Path) -> None:
    now = time.time()
    store = _run_folder(tmp_path, now)
    running = {
        "args": ["run-1", "usdjpy"],
        "name": "bqx.process_pair",
        "time_start": now - 4,
        "worker_pid": 77,
        "id": "t1",
    }
    other_run = {
        "args": ["run-0", "audusd"],
        "name": "bqx.process_pair",
        "time_start": now - 4,
        "worker_pid": 78,
        "id": "t2",
    }
    status = run_status(store, AppAnswering({"w2@b": [running], "w1@a": [other_run]}))

    assert status.counts == {
        PairStatus.OK: 1,
        PairStatus.RUNNING: 1,
        PairStatus.FAILED: 1,
        PairStatus.DAMAGED: 0,
        PairStatus.QUEUED: 1,
    }
    assert [p.pair for p in status.having(PairStatus.QUEUED)] == ["audusd"]  # another run's audusd does not count
    usdjpy = status.having(PairStatus.RUNNING)[0]
    assert usdjpy.pair == "usdjpy" and usdjpy.worker == "w2@b:77"
    assert status.cost_usd == pytest.approx(0.25)
    # mean pair time 10 s; usdjpy has ~6 s left, audusd needs 10 s; two slots: ~8 s
    assert status.eta_s == pytest.approx(8.0, abs=0.5)
    assert status_line(status).startswith("run run-1: 1 done, 1 running, 1 failed, 1 queued of 4; cost so far $0.2500")

    console = Console(file=io.StringIO(), width=120)
    console.print(render_status(status))
    text = console.file.getvalue()
    assert "usdjpy" in text and "w2@b:77" in text and "no table" in text and "queued: audusd" in text

    # Without anyone to ask, running pairs show as queued and the view says so.
    blind = run_status(store)
    assert (
        blind.counts
        == {PairStatus.OK: 1, PairStatus.RUNNING: 0, PairStatus.FAILED: 1, PairStatus.DAMAGED: 0, PairStatus.QUEUED: 2}
        and not blind.workers_answered
    )
    console = Console(file=io.StringIO(), width=120)
    console.print(render_status(blind))
    assert "running pairs show as queued" in console.file.getvalue()


@pytest.mark.unit
def test_watch_returns_the_report_and_says_when_it_is_written(tmp_path: Path) -> None:
    now = time.time()
    store = _run_folder(tmp_path, now)
    for pair in ("usdjpy", "audusd"):
        ledger = store.write_parquet(store.ledger_path(pair), pd.DataFrame({"feature": ["f1"], "horizon": [15]}))
        store.write_json(
            store.pair_path(pair),
            {"pair": pair, "status": "ok", "ledger": ledger.model_dump(), "cost_usd": 0.5, "host": "a", "pid": 1},
        )
    store.write_json(store.report_path, {})  # not a report: the watch still ends, and says so
    output = io.StringIO()
    assert watch_run(store, console=Console(file=output, width=200), poll_s=0.05) == store.report_path
    assert "3 done, 0 running, 1 failed, 0 queued of 4; cost so far $1.2500" in output.getvalue()
    assert "report written" in output.getvalue()


@pytest.mark.integration
def test_status_of_an_unknown_run_is_one_clear_line(queue_env: dict[str, str]) -> None:
    done = subprocess.run([BQX, "status", "no-such-run"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "run no-such-run has no manifest" in done.stderr


@pytest.mark.e2e
def test_status_of_a_live_run_shows_the_running_pair_and_its_worker(small_warehouse, queue_env, start_worker) -> None:
    # eurusd and gbpusd take both slots and hold them 10 s: on a loaded machine a pair could
    # otherwise finish before the view saw two running, and usdjpy take its slot
    worker = start_worker("w1", concurrency=2, app=FAULT_APP, BQX_FAULT_SLEEP="eurusd:10,gbpusd:10")
    enqueued = subprocess.run(
        [ENQUEUE, "--pairs", "eurusd,gbpusd,usdjpy", "--warehouse", str(small_warehouse), "--horizons", "15,30,45"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert enqueued.returncode == 0, enqueued.stderr
    run_id = enqueued.stdout.splitlines()[0].removeprefix("run ").strip()
    store = RunStore(queue_env["BQX_RUNS_DIR"], run_id)

    app = Celery("status-test")  # on this test's broker (the package's app may point at another test's)
    app.conf.update(celery_config(load_settings()))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = run_status(store, app)
        if status.counts[PairStatus.RUNNING] == 2:
            break
    assert status.counts == {
        PairStatus.OK: 0,
        PairStatus.RUNNING: 2,
        PairStatus.FAILED: 0,
        PairStatus.DAMAGED: 0,
        PairStatus.QUEUED: 1,
    }, status
    places = [p.worker for p in status.having(PairStatus.RUNNING)]
    assert all(w.startswith(f"{worker.name}:") for w in places) and len(set(places)) == 2  # two children
    assert status.eta_s is None  # nothing finished yet to measure by

    shown = subprocess.run(
        [BQX, "status", run_id],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"COLUMNS": "200"},
    )
    assert shown.returncode == 0, shown.stderr
    assert f"run {run_id}: 0 done, 2 running, 0 failed, 1 queued of 3" in shown.stdout
    assert f"{worker.name}:" in shown.stdout and "queued: " in shown.stdout

    watched = subprocess.run([BQX, "status", run_id, "--watch"], capture_output=True, text=True, timeout=600)
    assert watched.returncode == 0, watched.stderr
    assert f"run {run_id}: 3 done, 0 running, 0 failed, 0 queued of 3" in watched.stdout
    assert "report written" in watched.stdout and store.report_path.exists()
    final = run_status(store, app)
    assert final.finished and final.eta_s == 0.0 and final.cost_usd > 0


@pytest.mark.unit
def test_a_failed_pair_enqueued_again_by_resume_counts_as_queued_not_failed(tmp_path: Path) -> None:
    now = time.time()
    store = _run_folder(tmp_path, now)
    resume = Resume(at=datetime.fromtimestamp(now - 2, UTC).isoformat(), pairs=["gbpusd"])
    store.write_manifest(store.manifest().model_copy(update={"resumes": [resume]}))
    assert run_status(store).counts == {
        PairStatus.OK: 1,
        PairStatus.RUNNING: 0,
        PairStatus.FAILED: 0,
        PairStatus.DAMAGED: 0,
        PairStatus.QUEUED: 3,
    }
    rerun = {
        "args": ["run-1", "gbpusd"],
        "name": "bqx.process_pair",
        "time_start": now - 1,
        "worker_pid": 5,
        "id": "t3",
    }
    status = run_status(store, AppAnswering({"w1@a": [rerun]}))
    assert [(p.pair, p.worker) for p in status.having(PairStatus.RUNNING)] == [("gbpusd", "w1@a:5")]


@pytest.mark.integration
def test_bqx_status_without_a_broker_shows_the_run_folder_and_exits_1_for_failed_pairs(tmp_path: Path) -> None:
    _run_folder(tmp_path, time.time())
    env = os.environ | {"BQX_RUNS_DIR": str(tmp_path), "BQX_BROKER_URL": "redis://127.0.0.1:1/0", "COLUMNS": "200"}
    shown = subprocess.run([BQX, "status", "run-1"], capture_output=True, text=True, timeout=60, env=env)
    assert shown.returncode == 1  # the run has a failed pair
    assert "cannot reach broker" in shown.stderr and "running pairs show as queued" in shown.stderr
    assert "run run-1: 1 done, 0 running, 1 failed, 2 queued of 4; cost so far $0.2500" in shown.stdout
    assert "gbpusd" in shown.stdout and "no table" in shown.stdout
