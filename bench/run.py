"""The whole run, measured: N pairs through a real Redis and a real Celery worker.

    python bench/run.py                                  # 4 pairs, 6,500 features, concurrency 2
    python bench/run.py --pairs 2 --features 17000 --concurrency 2

Builds /tmp/bqx-bench/run-<pairs>x<features>.duckdb when missing, starts a private redis-server
and `celery -A bqx_queue worker --concurrency=C` (threads per child = cores / C), runs
`bqx-enqueue --pairs ... --wait`, and reads the report. It prints pairs per hour per core and
projects all 28 pairs on an 8-core host at concurrency 8: 28 x (core-seconds per pair) / 8,
with the per-child peak RSS that host needs (8 children at once).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bqx_queue.celery.embedded_redis import EmbeddedRedis
from bqx_queue.domain.universe import PAIRS
from bqx_queue.runner.processes import stop_process

BENCH_DIR = Path(tempfile.gettempdir()) / "bqx-bench"
GIB = 1024**3
FULL_RUN_PAIRS = 28
HOST_CORES = 8


def warehouse_for(pairs: list[str], features: int, days: int) -> Path:
    path = BENCH_DIR / f"run-{len(pairs)}x{features}.duckdb"
    if not path.exists():
        from bqx_queue.warehouse.synthetic import WarehouseSpec, build_warehouse

        print(f"building {path} ({len(pairs)} pairs, {features} features each, {days} days) ...", flush=True)
        shared = 0.75 if features > 10_000 else WarehouseSpec.shared_fraction
        spec = WarehouseSpec(pairs=tuple(pairs), days=days, features_per_pair=features, shared_fraction=shared)
        build_warehouse(path, spec)
    return path


def wait_ready(log: Path, worker: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            sys.exit(f"worker exited: {log.read_text()[-2000:]}")
        if "ready." in log.read_text():
            return
        time.sleep(0.2)
    sys.exit("worker not ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--features", type=int, default=6500)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--days", type=int, default=60)
    args = parser.parse_args()
    pairs = list(PAIRS[: args.pairs])
    warehouse = warehouse_for(pairs, args.features, args.days)
    cores = os.cpu_count() or 1
    folder = Path(tempfile.mkdtemp(prefix="bqx-bench-run-"))
    with EmbeddedRedis() as server:
        env = os.environ | {
            "BQX_BROKER_URL": f"{server.url}/0", "BQX_RESULT_BACKEND": f"{server.url}/1",
            "BQX_RUNS_DIR": str(folder / "runs"), "BQX_WAREHOUSE": str(warehouse),
        }  # fmt: skip
        log = folder / "worker.log"
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bqx_queue", "worker", f"--concurrency={args.concurrency}",
             "-n", "bench@%h", "--loglevel=INFO", "--without-mingle", "--without-gossip"],
            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_ready(log, worker)
            started = time.perf_counter()
            done = subprocess.run(
                [str(Path(sys.executable).with_name("bqx-enqueue")), "--pairs", ",".join(pairs), "--wait"],
                env=env, capture_output=True, text=True,
            )  # fmt: skip
            wall = time.perf_counter() - started
        finally:
            stop_process(worker, 60)
    if done.returncode != 0:
        sys.exit(f"bqx-enqueue failed ({done.returncode}): {done.stderr[-2000:]}")
    report = json.loads(Path(done.stdout.strip().splitlines()[-1]).read_text())
    ok = [p for p in report["pairs"] if p["status"] == "ok"]
    peak = max(p["peak_rss_bytes"] for p in ok)
    core_s_per_pair = wall * cores / len(pairs)
    projected_s = FULL_RUN_PAIRS * core_s_per_pair / HOST_CORES
    print(
        f"{len(pairs)} pairs x {args.features:,} features on {cores} cores, concurrency {args.concurrency}: "
        f"{len(ok)} ok, wall {wall:.0f} s (enqueue to report)"
    )
    print(
        f"  per pair (median): {sorted(p['wall_s'] for p in ok)[len(ok) // 2]:.0f} s in its child; "
        f"peak RSS per child {peak / GIB:.2f} GiB (max)"
    )
    print(f"  pairs per hour per core: {len(pairs) / (wall / 3600) / cores:.1f}")
    print(
        f"  projected: all {FULL_RUN_PAIRS} pairs on a {HOST_CORES}-core host at concurrency {HOST_CORES}: "
        f"{projected_s / 60:.1f} min, "
        f"with {HOST_CORES} x {peak / GIB:.2f} = {HOST_CORES * peak / GIB:.0f} GiB of children"
    )


if __name__ == "__main__":
    main()
