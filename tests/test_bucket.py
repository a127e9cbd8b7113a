"""Worker hosts that share only Redis and a bucket. The run folder is gs://<bucket>/runs on a real
GCS-protocol server (gcp-storage-emulator on a loopback port, driven by gcsfs through
STORAGE_EMULATOR_HOST); the warehouse is BigQuery (the local endpoint), so no disk is shared:
each worker runs in its own empty working folder with its own HOME."""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from conftest import FAULT_APP
from support.bigquery_server import BigQueryServer

from bqx_queue.celery.embedded_redis import free_port
from bqx_queue.runner.processes import stop_process
from bqx_queue.warehouse.synthetic import WarehouseSpec, build_warehouse

pytestmark = pytest.mark.e2e

gcsfs_core = pytest.importorskip("gcsfs.core")
BIN = Path(sys.executable).parent
PROJECT = "bqx-bucket"
PAIRS = ["eurusd", "gbpusd", "usdjpy"]
FAST = {"BQX_SELECTION_PAIRS": "4", "BQX_LGBM_ROUNDS": "10", "BQX_CV_FOLDS": "1", "BQX_SHAP_ROWS": "200"}
_buckets = itertools.count(1)


@pytest.fixture(scope="module")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of gcp-storage-emulator (in memory) on a free loopback port."""
    port = free_port()
    log = tmp_path_factory.mktemp("gcs") / "emulator.log"
    process = subprocess.Popen(
        [str(BIN / "gcp-storage-emulator"), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
        stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gcp-storage-emulator did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    stop_process(process, 10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigQueryServer]:
    path = tmp_path_factory.mktemp("bucket-warehouse") / "tiny.duckdb"
    build_warehouse(path, WarehouseSpec(pairs=tuple(PAIRS), days=3, features_per_pair=20, seed=13))
    with BigQueryServer(path, project=PROJECT) as running:
        yield running


@pytest.fixture()
def bucket_env(
    gcs_emulator: str, server: BigQueryServer, queue_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The test's settings: its Redis databases, a fresh bucket as runs_dir, BigQuery as the warehouse."""
    bucket = f"bqx-test-{next(_buckets)}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    bucket_fs().mkdir(bucket)
    env = (
        queue_env
        | FAST
        | {
            "STORAGE_EMULATOR_HOST": gcs_emulator,
            "BQX_RUNS_DIR": f"gs://{bucket}/runs",
            "BQX_SOURCE": "bigquery",
            "BQX_BIGQUERY_PROJECT": PROJECT,
            "BQX_BIGQUERY_API_ENDPOINT": server.url,
            "BQX_BIGQUERY_RETRY_DEADLINE_S": "0",
            "BQX_MAX_ROWS": "3000",
        }
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def bucket_fs() -> Any:
    # the core class: gcsfs's default one probes each bucket over gRPC, which the emulator never
    # answers (a 60 s stall per bucket; DOMAIN.md section 8)
    return gcsfs_core.GCSFileSystem(token="anon", use_listings_cache=False)


def in_bucket(env: dict[str, str], *parts: str) -> str:
    return "/".join([env["BQX_RUNS_DIR"].removeprefix("gs://"), *parts])


def read_json(env: dict[str, str], *parts: str) -> dict[str, Any]:
    return json.loads(bucket_fs().cat_file(in_bucket(env, *parts)))


def host_env(tmp_path: Path, name: str) -> tuple[Path, dict[str, str]]:
    """An empty working folder and HOME of their own, as on a separate host."""
    cwd, home = tmp_path / f"{name}-cwd", tmp_path / f"{name}-home"
    cwd.mkdir()
    home.mkdir()
    return cwd, {"HOME": str(home)}


def enqueue(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "bqx-enqueue"), "--pairs", ",".join(PAIRS), "--wait", "--worker-timeout", "5", *args],
        env=os.environ | env, cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def run_jobs(server: BigQueryServer, run_id: str) -> list[dict[str, Any]]:
    """Real (billed) query jobs BigQuery ran for a run, by its label."""
    return [j for j in server.query_jobs(dry_run=False) if j["configuration"].get("labels", {}).get("run") == run_id]


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def test_two_workers_share_only_redis_and_a_bucket_and_a_rerun_costs_nothing(
    bucket_env: dict[str, str], server: BigQueryServer, start_worker, tmp_path: Path
) -> None:
    folders = {}
    workers = []
    for name, concurrency in (("b1", 1), ("b2", 2)):
        cwd, home = host_env(tmp_path, name)
        folders[name] = cwd
        workers.append(start_worker(name, concurrency=concurrency, cwd=cwd, **bucket_env, **home))
    children = {w.name: {c.pid for c in psutil.Process(w.process.pid).children(recursive=True)} for w in workers}
    producer_cwd, producer_home = host_env(tmp_path, "producer")
    producer = bucket_env | producer_home

    first = enqueue(producer, producer_cwd, "--run-id", "first", "--horizons", "15,60")
    assert first.returncode == 0, first.stderr[-3000:]
    # the report path printed is in the bucket, and so is everything the run wrote
    assert first.stdout.strip().splitlines()[-1] == f"{bucket_env['BQX_RUNS_DIR']}/first/report.html"
    report = read_json(bucket_env, "first", "report.json")
    assert report["totals"]["pairs_ok"] == 3
    listing = {p.rsplit("/", 1)[-1] for p in bucket_fs().find(in_bucket(bucket_env, "first"))}
    assert {"manifest.json", "report.md", "report.html", "ledger.parquet", "index.json", "part-000.parquet"} <= listing
    assert {f"{p}.json" for p in PAIRS} | {f"{p}.ledger.parquet" for p in PAIRS} <= listing
    # both "hosts" ran pairs, and neither wrote to its own disk
    ran_on = {name for p in report["pairs"] for name, pids in children.items() if p["pid"] in pids}
    assert ran_on == {w.name for w in workers}
    for name, cwd in folders.items():
        assert files_under(cwd) == [], f"worker {name} wrote to its working folder"
        home = tmp_path / f"{name}-home"
        assert not [p for p in files_under(home) if p.suffix in (".json", ".parquet")]
    # `bqx status` and `--resume` read the same URL from another working folder
    status = subprocess.run(
        [str(BIN / "bqx"), "status", "first"], env=os.environ | producer, cwd=producer_cwd,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr[-2000:]
    assert "run first: 3 done, 0 running, 0 failed, 0 queued of 3" in status.stdout + status.stderr
    resumed = subprocess.run(
        [str(BIN / "bqx-enqueue"), "--resume", "first"], env=os.environ | producer, cwd=producer_cwd,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.strip().splitlines()[-1] == f"{bucket_env['BQX_RUNS_DIR']}/first/report.json"
    billed_first = report["totals"]["bytes_billed"]
    assert billed_first > 0 and len(run_jobs(server, "first")) == 4  # 3 pairs + the shared tables once
    assert report["totals"]["extract_cache"]["misses"] == 4 and report["totals"]["extract_cache"]["hits"] == 0

    # A rerun with other horizons needs the same rows: every query is read from the bucket's cache
    second = enqueue(producer, producer_cwd, "--run-id", "second", "--horizons", "15,30")
    assert second.returncode == 0, second.stderr[-3000:]
    report = read_json(bucket_env, "second", "report.json")
    assert report["totals"]["pairs_ok"] == 3
    assert run_jobs(server, "second") == []  # no query reached BigQuery
    assert report["totals"]["bytes_billed"] == 0 and report["totals"]["cost_usd"] == 0
    assert report["totals"]["queries"] == 0
    cache = report["totals"]["extract_cache"]
    assert (cache["hits"], cache["misses"]) == (4, 0)
    assert cache["saved_bytes_billed"] == billed_first and cache["saved_usd"] > 0
    assert (
        "extract cache: 4 queries read from the cache, 0 sent"
        in bucket_fs().cat_file(in_bucket(bucket_env, "second", "report.md")).decode()
    )

    # A table written since: the pairs reading it query again, the others still read the cache
    server.touch_table("bqx_features.mom_eurusd")
    third = enqueue(producer, producer_cwd, "--run-id", "third", "--horizons", "15,60")
    assert third.returncode == 0, third.stderr[-3000:]
    report = read_json(bucket_env, "third", "report.json")
    assert sorted(j["configuration"]["labels"]["pair"] for j in run_jobs(server, "third")) == ["eurusd"]
    by_pair = {p["pair"]: p for p in report["pairs"]}
    assert by_pair["eurusd"]["bytes_billed"] > 0 and by_pair["eurusd"]["extract_cache"]["misses"] == 1
    assert by_pair["gbpusd"]["bytes_billed"] == 0 and by_pair["gbpusd"]["extract_cache"]["hits"] == 1

    # --refresh ignores the cache: every query is sent again
    fourth = enqueue(producer, producer_cwd, "--run-id", "fourth", "--horizons", "15", "--refresh")
    assert fourth.returncode == 0, fourth.stderr[-3000:]
    assert len(run_jobs(server, "fourth")) == 4


def test_a_worker_killed_while_uploading_leaves_no_done_artifact_and_the_pair_is_redone(
    bucket_env: dict[str, str], start_worker, tmp_path: Path
) -> None:
    cwd, home = host_env(tmp_path, "k1")
    # gbpusd's first delivery dies halfway through writing its summary; every delivery first
    # sleeps 3 s, so the bucket can be looked at between the kill and the redone pair
    faults = {"BQX_FAULT_KILL_UPLOAD": "gbpusd", "BQX_FAULT_SLEEP": "gbpusd:3"}
    start_worker("k1", concurrency=1, cwd=cwd, app=FAULT_APP, **bucket_env, **faults, **home)
    producer_cwd, producer_home = host_env(tmp_path, "producer")
    run = subprocess.Popen(
        [str(BIN / "bqx-enqueue"), "--pairs", "gbpusd", "--horizons", "15", "--run-id", "killed", "--wait",
         "--worker-timeout", "5"],
        env=os.environ | bucket_env | producer_home, cwd=producer_cwd, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    broker = redis.Redis.from_url(bucket_env["BQX_BROKER_URL"])
    deadline = time.monotonic() + 120
    while int(broker.get("bqx:deliveries:killed:gbpusd") or 0) < 2:  # the second delivery began
        assert time.monotonic() < deadline and run.poll() is None, "the killed pair was not redelivered"
        time.sleep(0.1)
    pairs = {p.rsplit("/", 1)[-1] for p in bucket_fs().find(in_bucket(bucket_env, "killed", "pairs"))}
    assert "gbpusd.ledger.parquet" in pairs  # written before the kill
    assert "gbpusd.json" not in pairs  # the summary that marks the pair done never appeared, not even half
    # the child died with the summary's upload request half sent, not before the upload began
    assert re.search(r"killed mid-upload, \d+ of \d+ bytes sent", (tmp_path / "k1.log").read_text())

    out, err = run.communicate(timeout=180)
    assert run.returncode == 0, err[-3000:]
    summary = read_json(bucket_env, "killed", "pairs", "gbpusd.json")
    assert summary["status"] == "ok" and summary["horizons"]["15"].get("status", "ok") == "ok"
    assert read_json(bucket_env, "killed", "report.json")["totals"]["pairs_ok"] == 1
    assert files_under(cwd) == []
