"""The extract cache: a rerun that needs the same rows reads them from runs_dir/cache (no query, no
bytes billed), whatever its horizons or selection settings; a table written since is read again;
readers trust only markers; --refresh ignores the cache."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pytest
from support.bigquery_server import BigQueryServer

from bqx_queue.config import Settings, load_settings
from bqx_queue.domain.errors import BudgetError
from bqx_queue.runner.extract_cache import CACHE_DIR
from bqx_queue.runner.pair_fetch import fetch_run_pair
from bqx_queue.warehouse.fetch import pair_days
from bqx_queue.warehouse.frame import PairFrame
from bqx_queue.warehouse.source import open_source
from bqx_queue.warehouse.synthetic import WarehouseSpec, build_warehouse

PROJECT = "bqx-cache"


@pytest.fixture(scope="module")
def parquet_warehouse(small_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small warehouse exported as <dataset>/<table>.parquet files."""
    folder = tmp_path_factory.mktemp("cache-export")
    with duckdb.connect(str(small_warehouse), read_only=True) as con:
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema LIKE 'bqx_%' "
            "AND table_schema <> 'bqx_meta'"
        ).fetchall()
        for dataset, table in tables:
            (folder / dataset).mkdir(exist_ok=True)
            con.execute(f"COPY {dataset}.{table} TO '{folder / dataset / table}.parquet' (FORMAT parquet)")
    return folder


def settings_for(warehouse: Path | str, runs: Path, **overrides: object) -> Settings:
    values = {"warehouse": warehouse, "runs_dir": runs, "max_rows": 3000} | overrides
    return load_settings(**values)


def fetch(settings: Settings, pair: str = "eurusd", run_id: str | None = "cache-test") -> tuple[PairFrame, dict]:
    """Fetch the pair as a run does (run_id set: through the extract cache) or outside a run."""
    source = open_source(settings)
    fetched = fetch_run_pair(source, pair, settings, pair_days(source, pair, settings), run_id)
    return fetched.frame, fetched.cost


def assert_same_rows(frame: PairFrame, expected: PairFrame) -> None:
    width = len(expected.numeric_names)  # past these: spare room for one-hot strings
    assert frame.numeric_names == expected.numeric_names
    np.testing.assert_array_equal(frame.times, expected.times)
    np.testing.assert_array_equal(frame.numeric[:, :width], expected.numeric[:, :width])
    assert frame.targets.equals(expected.targets)


@pytest.mark.integration
def test_a_rerun_with_other_horizons_reads_the_cache_and_a_written_table_is_read_again(
    parquet_warehouse: Path, tmp_path: Path
) -> None:
    first, cost = fetch(settings_for(parquet_warehouse, tmp_path, horizons=(15, 60)))
    assert cost["extract_cache"] == {"hits": 0, "misses": 1, "saved_bytes_billed": 0, "saved_usd": 0, "saved_s": 0}
    assert cost["queries"] == 1 and cost["bytes_billed"] > 0
    billed = cost["bytes_billed"]

    # other horizons and selection settings, same rows: read from the cache, nothing billed
    rerun = settings_for(parquet_warehouse, tmp_path, horizons=(15, 30), selection_pairs=7)
    cached, cost = fetch(rerun, run_id="another-run")
    assert cost["queries"] == 0 and cost["bytes_billed"] == 0 and cost["bytes_processed"] == 0
    assert cost["extract_cache"]["hits"] == 1 and cost["extract_cache"]["saved_bytes_billed"] == billed
    assert cost["extract_cache"]["saved_usd"] > 0
    assert list(cached.targets.columns) == ["target_bqx45_h15", "target_bqx45_h30"]
    uncached, _ = fetch(rerun, run_id=None)  # outside a run: no cache
    assert_same_rows(cached, uncached)

    # one table written since the extract: the pair is queried again
    table = parquet_warehouse / "bqx_features" / "mom_eurusd.parquet"
    stat = table.stat()
    os.utime(table, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    _, cost = fetch(rerun, run_id="another-run")
    assert cost["extract_cache"]["misses"] == 1 and cost["bytes_billed"] == billed
    _, cost = fetch(rerun, run_id="another-run")
    assert cost["extract_cache"]["hits"] == 1

    # --refresh (refresh_extracts) queries even with the rows cached
    _, cost = fetch(rerun.model_copy(update={"refresh_extracts": True}), run_id="another-run")
    assert cost["extract_cache"]["misses"] == 1 and cost["bytes_billed"] == billed


@pytest.mark.integration
def test_a_duckdb_file_written_since_invalidates_and_readers_trust_only_markers(
    small_warehouse: Path, tmp_path: Path
) -> None:
    warehouse = tmp_path / "copy.duckdb"
    warehouse.write_bytes(small_warehouse.read_bytes())
    settings = settings_for(warehouse, tmp_path / "runs")
    fetch(settings)
    assert fetch(settings)[1]["extract_cache"]["hits"] == 1
    (folder,) = (tmp_path / "runs" / CACHE_DIR).iterdir()
    (marker,) = folder.glob("*.json")
    (data,) = folder.glob("*.parquet")

    # a data object without its marker (a writer killed mid-upload) is never read
    marker.unlink()
    assert fetch(settings)[1]["extract_cache"]["misses"] == 1
    # a marker whose data object is not whole is not trusted
    (marker,) = folder.glob("*.json")
    newest = max(folder.glob("*.parquet"), key=lambda p: p.stat().st_mtime_ns)
    newest.write_bytes(newest.read_bytes()[:100])
    assert fetch(settings)[1]["extract_cache"]["misses"] == 1

    stat = warehouse.stat()
    os.utime(warehouse, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert fetch(settings)[1]["extract_cache"]["misses"] == 1
    assert data.exists()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigQueryServer]:
    path = tmp_path_factory.mktemp("cache-bq") / "tiny.duckdb"
    build_warehouse(path, WarehouseSpec(pairs=("eurusd", "gbpusd"), days=3, features_per_pair=20, seed=5))
    with BigQueryServer(path, project=PROJECT) as running:
        yield running


@pytest.mark.integration
def test_a_second_fetch_bills_zero_bytes_on_bigquery_and_a_touched_table_is_fetched_again(
    server: BigQueryServer, queue_env: dict[str, str], tmp_path: Path
) -> None:
    settings = settings_for(
        "unused", tmp_path, source="bigquery", bigquery_project=PROJECT, bigquery_api_endpoint=server.url,
        bigquery_retry_deadline_s=0, broker_url=queue_env["BQX_BROKER_URL"],
    )  # fmt: skip

    def pair_jobs(dry_run: bool | None = None) -> int:
        """eurusd's row queries, dry runs included (not the catalog and calendar queries)."""
        return sum(
            "targets_eurusd" in (sql := j["configuration"]["query"]["query"]) and "UNNEST(@days)" in sql
            for j in server.query_jobs(dry_run)
        )

    first, cost = fetch(settings)
    assert cost["bytes_billed"] > 0 and pair_jobs(dry_run=False) == 1
    seen = pair_jobs()
    assert seen == 2  # its dry run (the cap) and the query

    cached, cost = fetch(settings.model_copy(update={"horizons": (30, 105)}))
    assert cost["bytes_billed"] == 0 and cost["queries"] == 0 and cost["extract_cache"]["hits"] == 1
    assert pair_jobs() == seen  # no query of the pair, not even a dry run, reached BigQuery
    np.testing.assert_array_equal(cached.times, first.times)

    server.touch_table("bqx_analytics.targets_eurusd")
    _, cost = fetch(settings)
    assert cost["bytes_billed"] > 0 and cost["extract_cache"]["misses"] == 1
    assert pair_jobs(dry_run=False) == 2


@pytest.mark.integration
def test_a_rerun_in_the_local_pool_reports_its_hits_and_what_they_saved(small_warehouse: Path, tmp_path: Path) -> None:
    from bqx_queue.runner.run import plan_run, run_parallel_testing

    fast = {"selection_pairs": 4, "lgbm_rounds": 10, "cv_folds": 1, "shap_rows": 200, "max_rows": 3000}
    settings = load_settings(warehouse=small_warehouse, runs_dir=tmp_path / "runs", horizons=(15, 60), **fast)
    first_path = run_parallel_testing("eurusd,gbpusd", max_workers=2, settings=settings)
    first = json.loads(first_path.read_text())
    first_cost = json.loads((first_path.parent / "manifest.json").read_text())["estimate"]["cost_usd"]
    # the rerun's budget is below the first run's estimate: only a $0 estimate of the cached rows passes it
    rerun = settings.model_copy(update={"horizons": (30,), "budget_usd": first_cost / 10})
    with pytest.raises(BudgetError, match="above the budget"):
        plan_run(rerun.model_copy(update={"refresh_extracts": True}), ["eurusd", "gbpusd"])
    second_path = run_parallel_testing("eurusd,gbpusd", max_workers=2, settings=rerun)
    second = json.loads(second_path.read_text())
    estimate = json.loads((second_path.parent / "manifest.json").read_text())["estimate"]
    assert estimate["cost_usd"] == 0 and estimate["queries"] == 0
    assert {e["method"] for e in estimate["pairs"].values()} == {"extract-cache"}
    # the cache is in this run folder's store (the children know runs_dir only from their store)
    assert (tmp_path / "runs" / CACHE_DIR).is_dir()
    assert first["totals"]["extract_cache"]["misses"] == 2 and first["totals"]["bytes_billed"] > 0
    cache = second["totals"]["extract_cache"]
    assert (cache["hits"], cache["misses"]) == (2, 0)
    assert second["totals"]["bytes_billed"] == 0 and second["totals"]["queries"] == 0
    assert cache["saved_bytes_billed"] == first["totals"]["bytes_billed"] and cache["saved_s"] > 0
    assert "extract cache: 2 queries read from the cache, 0 sent" in (second_path.parent / "report.md").read_text()
    assert "extract cache hits" in (second_path.parent / "report.html").read_text()
