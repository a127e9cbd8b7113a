"""The whole run through real parts: bqx-enqueue -> Redis -> prefork workers -> chord report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pandas as pd
import pytest

from bqx_queue.domain.universe import HORIZONS, PAIRS
from bqx_queue.report.build import report_schema
from bqx_queue.warehouse.duckdb_source import DuckDBSource

pytestmark = pytest.mark.e2e

ENQUEUE = str(Path(sys.executable).with_name("bqx-enqueue"))


def test_all_pairs_through_celery_find_the_planted_features(small_warehouse, queue_env, start_worker):
    start_worker("w1", concurrency=2)
    done = subprocess.run(
        [ENQUEUE, "--pairs", "all", "--wait", "--warehouse", str(small_warehouse)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("run ")
    assert "sampled days" in done.stdout
    assert "1 live workers, total concurrency 2" in done.stderr
    # the answer in a few lines, then the page to open
    assert "Families that hold across pairs: " in done.stdout and "\nConfirmed: " in done.stdout
    assert done.stdout.strip().endswith("report.html")
    report_path = Path(done.stdout.strip().splitlines()[-1]).with_name("report.json")  # the last line: report.html
    report = json.loads(report_path.read_text())
    jsonschema.validate(report, report_schema())

    assert [p["pair"] for p in report["pairs"]] == list(PAIRS)
    assert report["totals"]["pairs_ok"] == 28 and report["totals"]["pairs_failed"] == 0
    assert report["totals"]["queries"] == 28
    assert all(p["queries"] == 1 for p in report["pairs"])
    assert all(sorted(map(int, p["horizons"])) == list(HORIZONS) for p in report["pairs"])
    assert all(p["bytes_billed"] >= p["bytes_processed"] > 0 and p["peak_rss_bytes"] > 0 for p in report["pairs"])
    assert report["run"]["concurrency"] == 2 and report["run"]["worker_count"] == 1

    manifest = DuckDBSource(small_warehouse).manifest()
    found = wanted = 0
    for pair in report["pairs"]:
        truth = manifest["pairs"][pair["pair"]]
        for horizon, result in pair["horizons"].items():
            stable = {s["feature"] for s in result["stable"]}
            assert not stable & set(truth["leaky"]), "a forward-looking column was selected"
            if int(horizon) <= 30:  # where the planted signal is strongest
                informative = set(truth["horizons"][horizon]["informative"])
                found += len(informative & stable)
                wanted += len(informative)
    assert wanted > 0 and found / wanted >= 0.9, f"recall {found}/{wanted}"

    ledger = pd.read_parquet(report_path.parent / "ledger.parquet")
    assert set(ledger["pair"]) == set(PAIRS) and set(ledger["horizon"]) == set(HORIZONS)
    assert ledger.groupby(["pair", "horizon", "feature"]).size().max() == 1
    reasons = set(ledger["excluded"].dropna())
    assert "forward-looking column (leaks the target)" in reasons and "all NULL" in reasons
    assert (report_path.parent / "report.md").read_text().startswith(f"# bqx-queue run {report['run']['run_id']}")
