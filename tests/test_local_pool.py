"""run_parallel_testing: the same run as bqx-enqueue, in a local process pool, no broker."""

from __future__ import annotations

import json

import jsonschema
import pytest

from bqx_queue.config import load_settings
from bqx_queue.report.build import report_schema
from bqx_queue.runner.run import run_parallel_testing

pytestmark = pytest.mark.integration


def test_local_pool_runs_pairs_into_the_same_report(small_warehouse, tmp_path):
    settings = load_settings(warehouse=small_warehouse, runs_dir=tmp_path / "runs", selection_pairs=10)
    report_path = run_parallel_testing("eurusd,gbpjpy,nzdcad", max_workers=2, settings=settings)
    report = json.loads(report_path.read_text())
    jsonschema.validate(report, report_schema())
    assert [p["pair"] for p in report["pairs"]] == ["eurusd", "gbpjpy", "nzdcad"]
    assert all(p["status"] == "ok" and p["queries"] == 1 for p in report["pairs"])
    assert report["run"]["workers"] == {"local-pool": 2}
    assert len({p["pid"] for p in report["pairs"]}) >= 2  # more than one process did the work
    assert (report_path.parent / "ledger.parquet").exists()
