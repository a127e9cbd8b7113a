"""Damaged run folders: every command says in one line what it found, and `--resume` recovers.

A finished run (three pairs, a real prefork worker, a real Redis) is copied under a new run id for
each case, one of its artifacts is damaged (cut short, bytes flipped, replaced with other JSON,
deleted), and the real CLI is run on it in-process: `bqx status`, `bqx report`, then
`bqx-enqueue --resume --wait`. Nothing may end in a traceback; a damaged manifest is one line that
says resume cannot repair it; anything else is repaired by the resume (the worker runs the damaged
pair again), after which the report is complete and every pair is ok. The property runs on the
local store and on a bucket (gcp-storage-emulator). BQX_DAMAGE_CASES sets the cases per store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import jsonschema
import pytest
from conftest import FAULT_APP, python_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bucket import bucket_fs, gcs_emulator  # noqa: F401  (a fixture, used by name)
from test_faults import BIN, FAST, enqueue, run_dir, wait_for

from bqx_queue.cli import enqueue_main, main
from bqx_queue.domain import Report
from bqx_queue.report.build import report_schema
from bqx_queue.runner.processes import stop_process

pytestmark = pytest.mark.e2e

PAIRS = ["eurusd", "gbpusd", "usdjpy"]
CASES = int(os.environ.get("BQX_DAMAGE_CASES", "8"))
KINDS = ("manifest", "summary", "ledger", "report", "cache-marker", "cache-part")
DAMAGES = ("truncate", "flip", "other-json", "delete")
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@dataclass
class Store:
    """A runs_dir on an fsspec filesystem: a local folder or a bucket prefix."""

    fs: Any
    root: str  # the filesystem's path of runs_dir

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def read(self, *parts: str) -> bytes:
        return bytes(self.fs.cat_file(self.path(*parts)))

    def write(self, data: bytes, *parts: str) -> None:
        if "file" in self.fs.protocol:  # a bucket has no folders to make
            self.fs.makedirs(self.fs._parent(self.path(*parts)), exist_ok=True)
        self.fs.pipe_file(self.path(*parts), data)

    def files(self, *parts: str) -> list[str]:
        return sorted(p.removeprefix(self.path(*parts) + "/") for p in self.fs.find(self.path(*parts)))


def run_cli(
    command: Callable[[list[str]], int], argv: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    """Run a CLI entry point in-process: an exception escaping it is the traceback a user would see."""
    code = command(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


def finished_run(store: Store, warehouse: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """Run the base run to its report; return cache entry folder -> the pair whose rows it holds."""
    args = ["--pairs", ",".join(PAIRS), "--horizons", "15", "--warehouse", str(warehouse), "--max-rows", "3000"]
    code, err = run_cli(enqueue_main, [*args, "--run-id", "base", "--wait", "--worker-timeout", "5"], capsys)
    assert code == 0, err
    entries = {}
    for name in store.files("cache"):
        if name.endswith(".json"):
            tables = json.loads(store.read("cache", name))["identity"]["tables"]
            entries[name.split("/")[0]] = tables[0][0].rsplit("_", 1)[1]  # the pair's targets table
    return entries


def copy_run(store: Store, run_id: str) -> None:
    """Copy the finished base run under a new run id (its manifest names the new id, resealed)."""
    from bqx_queue import artifacts

    for name in store.files("base"):
        store.write(store.read("base", name), run_id, name)
    manifest = json.loads(store.read(run_id, "manifest.json"))
    body = {key: value for key, value in manifest.items() if key != artifacts.SEAL} | {"run_id": run_id}
    store.write(json.dumps(artifacts.sealed(body), indent=2).encode(), run_id, "manifest.json")


@st.composite
def damage_cases(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "kind": draw(st.sampled_from(KINDS)),
        "damage": draw(st.sampled_from(DAMAGES)),
        "pair": draw(st.sampled_from(PAIRS)),
        "cut": draw(st.floats(0, 0.99)),
        "flips": draw(st.lists(st.tuples(st.floats(0, 0.999), st.integers(1, 255)), min_size=1, max_size=4)),
        "other": draw(st.one_of(JSON_VALUES, st.sampled_from(["summary", "manifest"]))),
    }


def damage(store: Store, run_id: str, case: dict[str, Any], entries: dict[str, str]) -> tuple[str, str]:
    """Damage one artifact of the run (or of the extract cache) as the case says; return its path
    (relative to runs_dir) and the pair that must run again on resume ('' for none)."""
    pair = case["pair"]
    rerun = ""
    if case["kind"] == "manifest":
        target = f"{run_id}/manifest.json"
    elif case["kind"] == "summary":
        target, rerun = f"{run_id}/pairs/{pair}.json", pair
    elif case["kind"] == "ledger":
        target, rerun = f"{run_id}/pairs/{pair}.ledger.parquet", pair
    elif case["kind"] == "report":
        target = f"{run_id}/report.json"
    else:  # a cache entry of the pair: its summary goes too, so the resume must read the entry
        entry = next(e for e, p in entries.items() if p == pair)
        suffix = ".json" if case["kind"] == "cache-marker" else ".parquet"
        target = next(f"cache/{n}" for n in store.files("cache") if n.startswith(entry) and n.endswith(suffix))
        store.fs.rm_file(store.path(run_id, "pairs", f"{pair}.json"))
        rerun = pair
    data = store.read(target)
    if case["damage"] == "delete":
        store.fs.rm_file(store.path(target))
        return target, rerun
    if case["damage"] == "truncate":
        data = data[: int(len(data) * case["cut"])]
    elif case["damage"] == "flip":
        changed = bytearray(data)
        for where, mask in case["flips"]:
            changed[int(where * len(changed))] ^= mask
        data = bytes(changed)
    elif case["other"] == "summary":
        data = store.read(run_id, "pairs", f"{'gbpusd' if pair == 'eurusd' else 'eurusd'}.json")
    elif case["other"] == "manifest":
        data = store.read("base", "manifest.json")  # another run's manifest
    else:
        data = json.dumps(case["other"]).encode()
    store.write(data, target)
    return target, rerun


def check_case(store: Store, number: int, case: dict[str, Any], entries: dict[str, str], capsys: Any) -> None:
    run_id = f"case-{number}"
    copy_run(store, run_id)
    damage(store, run_id, case, entries)
    manifest_reads = _manifest_reads(run_id)
    status, status_err = run_cli(main, ["status", run_id], capsys)
    report, report_err = run_cli(main, ["report", run_id], capsys)
    resume, resume_err = run_cli(enqueue_main, ["--resume", run_id, "--wait", "--worker-timeout", "5"], capsys)
    if not manifest_reads:  # the one thing resume cannot repair: each command says so in one line
        for code, err in ((status, status_err), (report, report_err), (resume, resume_err)):
            assert code == 2 and len(err.strip().splitlines()) == 1 and "manifest" in err, err
        assert "--resume cannot repair a manifest" in resume_err or "has no manifest" in resume_err
        return
    assert status in (0, 1), status_err
    assert report == 0, report_err
    assert resume == 0, resume_err
    written = json.loads(store.read(run_id, "report.json"))
    jsonschema.validate(written, report_schema())
    Report.model_validate(written)
    assert [p["pair"] for p in written["pairs"]] == PAIRS
    assert all(p["status"] == "ok" for p in written["pairs"]), [(p["pair"], p.get("error")) for p in written["pairs"]]
    code, err = run_cli(main, ["status", run_id], capsys)
    assert code == 0, err


def _manifest_reads(run_id: str) -> bool:
    from bqx_queue.artifacts.run_folder import RunStore
    from bqx_queue.config import load_settings
    from bqx_queue.domain.errors import BqxError

    try:
        RunStore(load_settings().runs_dir, run_id).manifest()
    except BqxError:
        return False
    return True


def run_property(store: Store, warehouse: Path, capsys: Any, where: str) -> None:
    entries = finished_run(store, warehouse, capsys)
    assert sorted(entries.values()) == PAIRS
    ran: list[dict[str, Any]] = []

    @settings(max_examples=CASES, deadline=None, derandomize=False, suppress_health_check=list(HealthCheck))
    @given(case=damage_cases())
    def each(case: dict[str, Any]) -> None:
        check_case(store, len(ran), case, entries, capsys)
        ran.append(case)

    each()
    with capsys.disabled():
        kinds = sorted({f"{c['kind']}/{c['damage']}" for c in ran})
        print(f"\n{where}: {len(ran)} damage cases ran ({len(kinds)} kinds of damage: {', '.join(kinds)})")
    assert len(ran) >= CASES


def test_damaged_artifacts_on_the_local_store(queue_env, small_warehouse, start_worker, capsys, monkeypatch):
    for key, value in FAST.items():
        monkeypatch.setenv(key, value)
    start_worker("damage", concurrency=2, **FAST)
    store = Store(fsspec.filesystem("file"), queue_env["BQX_RUNS_DIR"])
    run_property(store, small_warehouse, capsys, "local store")


def test_damaged_artifacts_in_a_bucket(gcs_emulator, queue_env, small_warehouse, start_worker, capsys, monkeypatch):  # noqa: F811
    bucket = "bqx-damage"
    env = {"STORAGE_EMULATOR_HOST": gcs_emulator, "BQX_RUNS_DIR": f"gs://{bucket}/runs", **FAST}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    fs = bucket_fs()
    fs.mkdir(bucket)
    start_worker("damage-gcs", concurrency=2, **env)
    run_property(Store(fs, f"{bucket}/runs"), small_warehouse, capsys, "bucket")


@pytest.mark.parametrize("runs_dir, extra", [("gs://bucket/runs", "gcs"), ("s3://bucket/runs", "s3")])
@pytest.mark.parametrize(
    "command", [["bqx", "status", "r1"], ["bqx", "report", "r1"], ["bqx-enqueue", "--resume", "r1"], ["bqx-enqueue"]]
)
def test_a_bucket_without_its_extra_is_one_line_naming_it(runs_dir, extra, command, small_warehouse, tmp_path):
    # the filesystem package is not importable, as when the extra was never installed
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['gcsfs'] = None\nsys.modules['s3fs'] = None\n")
    env = os.environ | {
        "PYTHONPATH": python_path(tmp_path), "BQX_RUNS_DIR": runs_dir, "BQX_WAREHOUSE": str(small_warehouse),
    }  # fmt: skip
    done = subprocess.run([str(BIN / command[0]), *command[1:]], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: runs_dir {runs_dir} needs {extra}fs, which is not installed: install 'bqx-queue[{extra}]'"
    ]


def test_a_worker_without_the_extra_refuses_to_start_in_one_line(queue_env, tmp_path):
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['gcsfs'] = None\n")
    env = os.environ | queue_env | {"PYTHONPATH": python_path(tmp_path), "BQX_RUNS_DIR": "gs://bucket/runs"}
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "bqx_queue", "worker", "-n", "noextra@%h", "--concurrency=1"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert (
        "error: runs_dir gs://bucket/runs needs gcsfs, which is not installed: install 'bqx-queue[gcs]'" in done.stderr
    )
    assert "Traceback" not in done.stderr


def test_a_full_scratch_disk_fails_that_pair_with_the_reason_and_the_worker_runs_the_next(
    queue_env, small_warehouse, tmp_path
):
    # a real full disk: a 64 KiB tmpfs as the worker's scratch_dir, in a mount namespace of its own
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    if subprocess.run(
        ["unshare", "-rm", "mount", "-t", "tmpfs", "tmpfs", str(scratch)], capture_output=True
    ).returncode:
        pytest.skip("no mount namespace here (unshare -rm): cannot mount a small scratch disk")
    log = tmp_path / "worker.log"
    celery = f"{sys.executable} -m celery -A {FAULT_APP} worker --concurrency=1 -n full@%h --loglevel=INFO"
    env = os.environ | queue_env | FAST | {
        "PYTHONPATH": python_path(Path(__file__).parent), "BQX_SCRATCH_DIR": str(scratch), "BQX_FAULT_SPILL": "eurusd",
    }  # fmt: skip
    worker = subprocess.Popen(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {scratch} && exec {celery}"],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(lambda: "ready." in log.read_text(), 60, "the worker to start")
        args = ["--pairs", ",".join(PAIRS), "--horizons", "15", "--warehouse", str(small_warehouse)]
        done = enqueue(queue_env, *args, "--max-rows", "3000", "--run-id", "full", "--wait")
    finally:
        stop_process(worker, 60)
    assert done.returncode == 1, done.stderr  # exit 1: the run finished with a failed pair
    pairs = {p["pair"]: p for p in json.loads((run_dir(queue_env, "full") / "report.json").read_text())["pairs"]}
    assert pairs["eurusd"]["status"] == "failed"
    assert pairs["eurusd"]["error"].startswith("scratch disk full: ")
    assert str(scratch) in pairs["eurusd"]["error"]
    assert pairs["gbpusd"]["status"] == pairs["usdjpy"]["status"] == "ok"  # the same worker went on


def test_a_run_folder_turned_read_only_mid_run_fails_that_pair_and_resume_recovers(
    queue_env, small_warehouse, tmp_path
):
    # a real read-only run folder: runs_dir bind-mounted in the worker's own mount namespace, then
    # remounted read-only there (the test still writes it) while eurusd is being analysed
    runs = Path(queue_env["BQX_RUNS_DIR"])
    runs.mkdir(parents=True)
    if subprocess.run(["unshare", "-rm", "mount", "--bind", str(runs), str(runs)], capture_output=True).returncode:
        pytest.skip("no mount namespace here (unshare -rm): cannot make the run folder read-only")
    log = tmp_path / "worker.log"
    celery = f"{sys.executable} -m celery -A {FAULT_APP} worker --concurrency=1 -n readonly@%h --loglevel=INFO"
    env = os.environ | queue_env | FAST | {
        "PYTHONPATH": python_path(Path(__file__).parent), "BQX_FAULT_SLEEP": "eurusd:4,gbpusd:8",
    }  # fmt: skip
    worker = subprocess.Popen(
        ["unshare", "-rm", "sh", "-c", f"mount --bind {runs} {runs} && exec {celery}"],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip

    def remount(mode: str) -> None:
        nsenter = ["nsenter", "-t", str(worker.pid), "-U", "-m", "--preserve-credentials"]
        subprocess.run([*nsenter, "mount", "-o", f"remount,bind,{mode}", str(runs)], check=True)

    args = ["--pairs", ",".join(PAIRS), "--horizons", "15", "--warehouse", str(small_warehouse), "--max-rows", "3000"]
    try:
        wait_for(lambda: "ready." in log.read_text(), 60, "the worker to start")
        assert enqueue(queue_env, *args, "--run-id", "ro").returncode == 0
        remount("ro")  # eurusd (first, one slot) sleeps 4 s before it reads or writes anything
        wait_for(lambda: "could not record the failure" in log.read_text(), 120, "eurusd to fail")
        remount("rw")  # gbpusd is still asleep: it and usdjpy write as usual
        wait_for(lambda: (run_dir(queue_env, "ro") / "report.json").exists(), 180, "the report")
        assert worker.poll() is None  # the worker went on serving
        text = log.read_text()
        assert "cannot write " in text and "Read-only file system" in text and "eurusd" in text
        pairs = run_dir(queue_env, "ro") / "pairs"
        # nothing of eurusd under a final name: no summary, no ledger; no temporary file either
        assert sorted(p.name for p in pairs.iterdir()) == [
            f"{p}.{kind}" for p in ("gbpusd", "usdjpy") for kind in ("json", "ledger.parquet")
        ]
        report = json.loads((run_dir(queue_env, "ro") / "report.json").read_text())
        assert report["run"]["missing_pairs"] == ["eurusd"]
        resumed = enqueue(queue_env, "--resume", "ro", "--wait")
    finally:
        stop_process(worker, 60)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads((run_dir(queue_env, "ro") / "report.json").read_text())
    assert [(p["pair"], p["status"]) for p in report["pairs"]] == [(p, "ok") for p in PAIRS]


def test_a_bucket_answering_503_or_stalling_is_retried_then_fails_that_pair_with_the_reason(
    gcs_emulator,  # noqa: F811
    queue_env,
    small_warehouse,
    start_worker,
    monkeypatch,
):
    from support.flaky_bucket import Fault, FlakyBucket

    bucket = "bqx-flaky"
    env = {"STORAGE_EMULATOR_HOST": gcs_emulator, "BQX_RUNS_DIR": f"gs://{bucket}/runs", **FAST}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    bucket_fs().mkdir(bucket)
    faults = [
        # the staged upload's name (the failed summary's reason names the ledger too)
        Fault("/.eurusd.ledger.parquet.", "503", times=1000),  # down for good: gcsfs's 6 tries, then failed
        Fault("/.gbpusd.ledger.parquet.", "stall", times=1, stall_s=6),  # silent past bucket_stall_s once
        Fault("/.usdjpy.ledger.parquet.", "503", times=2),  # a passing outage
    ]
    with FlakyBucket(gcs_emulator, faults) as proxy:
        start_worker("flaky", concurrency=2, **env | {"STORAGE_EMULATOR_HOST": proxy.url, "BQX_BUCKET_STALL_S": "2"})
        args = ["--pairs", ",".join(PAIRS), "--horizons", "15", "--warehouse", str(small_warehouse)]
        done = enqueue(queue_env | env, *args, "--max-rows", "3000", "--run-id", "flaky", "--wait", timeout_s=300)
    assert done.returncode == 1, done.stderr  # exit 1: the run finished with a failed pair
    # every fault was met and retried; eurusd's upload was tried 6 times (gcsfs's bound), then given up
    assert [proxy.faulted[f"/.{p}.ledger.parquet."] for p in PAIRS] == [6, 1, 2]
    fs = bucket_fs()
    pairs = {p["pair"]: p for p in json.loads(fs.cat_file(f"{bucket}/runs/flaky/report.json"))["pairs"]}
    assert pairs["eurusd"]["status"] == "failed"
    error = pairs["eurusd"]["error"]
    assert error.startswith(f"cannot write gs://{bucket}/runs/flaky/pairs/eurusd.ledger.parquet: ") and "503" in error
    assert "\n" not in error
    assert pairs["gbpusd"]["status"] == pairs["usdjpy"]["status"] == "ok"
    # nothing half-written: no ledger of eurusd, and no staged upload left under any name
    names = [name.rsplit("/", 1)[1] for name in fs.find(f"{bucket}/runs/flaky/pairs")]
    assert "eurusd.ledger.parquet" not in names and not [n for n in names if n.endswith(".tmp")]
