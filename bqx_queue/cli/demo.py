"""`bqx demo`: the whole product on one machine: a demo warehouse, a private Redis, one worker,
every pair through bqx-enqueue, then both stopped."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bqx_queue.cli.common import settings_of
from bqx_queue.cli.enqueue import enqueue_parser, run_enqueue

# the demo warehouse (`bqx demo`, `bqx warehouse build`): strengths in the range real FX features
# have (a single feature's R^2 of a 45-minute return rarely above 1-2%): each linear planted feature
# 1.5% of the h45 target, each nonlinear kind's drift 3% of its variance (a model reading the
# kind's features: R^2 0.6-1.4% at h45); WarehouseSpec's own defaults stay strong for the tests
DEMO_WAREHOUSE: dict[str, Any] = {
    "days": 30,
    "features_per_pair": 100,
    "planted_share": 0.75,
    "feature_r2": 0.015,
    "nonlinear_r2": 0.03,
}


def run_demo(args: argparse.Namespace) -> int:
    """Build a demo warehouse if missing, start Redis and a worker, run all pairs, stop both."""
    from bqx_queue.celery.embedded_redis import EmbeddedRedis, redis_server_binary
    from bqx_queue.runner import stop_process
    from bqx_queue.warehouse.synthetic import WarehouseSpec, build_warehouse

    redis_server_binary()  # no Redis to start: say so before building anything
    settings = settings_of(args)
    warehouse = Path(settings.warehouse)
    if not warehouse.exists():
        print(f"building demo warehouse {warehouse} ...", flush=True)
        build_warehouse(warehouse, WarehouseSpec(**DEMO_WAREHOUSE))
    concurrency = args.concurrency or settings.concurrency
    # the worker's banner and logs go to a file: the terminal shows progress, then the answer
    log_path = Path(settings.runs_dir) / "demo-worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"worker log: {log_path}", flush=True)
    with EmbeddedRedis() as server, log_path.open("w") as log:
        broker = {"broker_url": f"{server.url}/0", "result_backend": f"{server.url}/1"}
        # the worker is another host as far as settings go: its broker and file come in its environment
        env = os.environ | {f"BQX_{name.upper()}": url for name, url in broker.items()}
        if args.config:
            env["BQX_CONFIG"] = str(Path(args.config).resolve())
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bqx_queue", "worker", f"--concurrency={concurrency}",
             "-n", "demo@%h", "--loglevel=WARNING"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            args_enqueue = enqueue_parser().parse_args(
                ["--pairs", args.pairs, "--wait", "--worker-timeout", "5", "--warehouse", str(warehouse)]
                + (["--config", args.config] if args.config else [])
            )
            args.host_overrides = args_enqueue.host_overrides = broker
            from bqx_queue.celery import use_settings
            from bqx_queue.celery.producer import live_workers

            app = use_settings(settings_of(args))
            for _ in range(20):  # the worker needs a few seconds to come up
                if live_workers(app, 1.0):
                    break
            return run_enqueue(args_enqueue)
        finally:
            stop_process(worker, 60)
