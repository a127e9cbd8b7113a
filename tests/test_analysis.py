"""The science without a broker: preparation, selection, a whole pair, and its failures."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from bqx_queue.analysis.pair import run_stability_selection_local
from bqx_queue.analysis.prepare import frame_from_pandas, prepare_pair
from bqx_queue.analysis.stability import choose_q, error_bound
from bqx_queue.config import load_settings
from bqx_queue.domain.errors import DataError, MemoryBudgetExceeded, WarehouseError
from bqx_queue.domain.universe import TARGET_COLUMNS
from bqx_queue.runner.memory import MemoryWatch
from bqx_queue.runner.pair import process_pair_all_horizons
from bqx_queue.warehouse.duckdb_source import DuckDBSource
from bqx_queue.warehouse.source import open_source, query_pair_all_horizons


@pytest.mark.unit
def test_preparation_leaves_out_leaks_nulls_constants_duplicates_and_wide_strings():
    rng = np.random.default_rng(0)
    n = 500
    base = rng.normal(size=n)
    df = pd.DataFrame(
        {
            "interval_time": pd.date_range("2021-01-04", periods=n, freq="min", tz="UTC"),
            "reg_x__good": base * 3 + 1,
            "reg_x__copy": base * 3 + 1,
            "base_x__target_bqx45_h15": rng.normal(size=n),
            "ext_x__empty": np.nan,
            "ext_x__flat": 2.0,
            "regime_x__state": rng.choice(["up", "down", "range"], n),
            "regime_x__id": [f"id{i}" for i in range(n)],
            "target_bqx45_h15": rng.normal(size=n),
        }
    )
    df.loc[::7, "reg_x__good"] = np.nan
    df.loc[::7, "reg_x__copy"] = np.nan
    prepared = prepare_pair(frame_from_pandas(df, "x", ["target_bqx45_h15"]))
    assert prepared.exclusions == {
        "reg_x__copy": "duplicate of reg_x__good",
        "base_x__target_bqx45_h15": "forward-looking column (leaks the target)",
        "ext_x__empty": "all NULL",
        "ext_x__flat": "constant",
        "regime_x__id": "string with 500 distinct values (not encoded)",
    }
    assert prepared.features == ["reg_x__good", "regime_x__state=down", "regime_x__state=range", "regime_x__state=up"]
    good = prepared.matrix[:, 0]
    assert prepared.matrix.dtype == np.float32 and not np.isnan(prepared.matrix).any()
    assert abs(float(good.mean())) < 1e-5 and good[0] == 0.0  # NULL -> mean after standardising
    assert abs(float(good[~df["reg_x__good"].isna().to_numpy()].std()) - 1) < 1e-3


@pytest.mark.unit
def test_all_null_target_is_a_data_error():
    df = pd.DataFrame(
        {
            "interval_time": pd.date_range("2021-01-04", periods=300, freq="min", tz="UTC"),
            "a__x": np.arange(300.0),
            "target_bqx45_h15": np.nan,
        }
    )
    with pytest.raises(DataError, match="target_bqx45_h15 is NULL on every sampled row"):
        prepare_pair(frame_from_pandas(df, "eurusd", ["target_bqx45_h15"]))


@pytest.mark.unit
def test_error_bound_and_q_follow_meinshausen_buehlmann():
    q = choose_q(6500, 0.8, 2.0)
    assert q == 88 and error_bound(q, 6500, 0.8) <= 2.0 < error_bound(q + 1, 6500, 0.8)


@pytest.mark.integration
def test_selection_on_one_frame_ranks_the_planted_features_first(small_warehouse):
    settings = load_settings(warehouse=small_warehouse)
    df = query_pair_all_horizons("eurusd", settings)
    assert set(TARGET_COLUMNS) <= set(df.columns) and df["interval_time"].is_monotonic_increasing
    selection = run_stability_selection_local(df, 15, settings)
    table = selection.table
    planted = set(DuckDBSource(small_warehouse).manifest()["pairs"]["eurusd"]["horizons"]["15"]["informative"])
    assert set(table[table["stable"]]["feature"]) >= planted - {None}
    assert set(table.head(len(planted))["feature"]) == planted
    assert selection.fits == 100 and selection.error_bound <= 2.0
    assert not any(f.split("__")[-1].startswith("target_") for f in table["feature"])


@pytest.mark.integration
def test_a_pair_reports_one_query_cost_and_every_horizon(small_warehouse):
    settings = load_settings(warehouse=small_warehouse, selection_pairs=10)
    result = process_pair_all_horizons("gbpjpy", settings, source=open_source(settings))
    summary = result.summary.model_dump(mode="json")  # as pairs/PAIR.json holds it
    assert summary["status"] == "ok" and summary["queries"] == 1
    assert summary["bytes_billed"] >= summary["tables"] * 10 * 1024**2  # 10 MiB minimum per table
    assert sorted(summary["horizons"]) == sorted(str(h) for h in (15, 30, 45, 60, 75, 90, 105))
    for horizon in summary["horizons"].values():
        assert set(horizon["metrics"]["mean"]) == {"auc", "accuracy", "directional_accuracy", "log_loss"}
        assert len(horizon["metrics"]["folds"]) == 3
    ledger = result.ledger
    assert len(ledger[ledger["excluded"].isna()]) == 7 * summary["features_usable"]


def _export_parquet(warehouse: Path, folder: Path, tables: list[tuple[str, str, str]]) -> None:
    con = duckdb.connect(str(warehouse), read_only=True)
    for dataset, table, select in tables:
        (folder / dataset).mkdir(parents=True, exist_ok=True)
        con.execute(
            f"COPY ({select.format(t=f'{dataset}.{table}')}) TO '{folder / dataset / table}.parquet' (FORMAT parquet)"
        )
    con.close()


@pytest.mark.integration
def test_parquet_export_runs_and_an_all_null_target_fails_only_its_horizon(small_warehouse, tmp_path):
    names = (
        duckdb.connect(str(small_warehouse), read_only=True)
        .execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_name LIKE '%usdcad%' OR table_name LIKE 'tri_%'"
        )
        .fetchall()
    )
    tables = [(d, t, "SELECT * FROM {t}") for d, t in names if t != "targets_usdcad"]
    tables.append(("bqx_analytics", "targets_usdcad", "SELECT * REPLACE (NULL::DOUBLE AS target_bqx45_h60) FROM {t}"))
    _export_parquet(small_warehouse, tmp_path / "export", tables)
    settings = load_settings(warehouse=tmp_path / "export", selection_pairs=5)
    source = DuckDBSource(tmp_path / "export")
    assert source.kind == "parquet" and "targets_usdcad" in source.catalog().tables["bqx_analytics"]
    summary = process_pair_all_horizons("usdcad", settings, source=source).summary.model_dump(mode="json")
    assert summary["status"] == "ok"
    assert summary["horizons"]["60"] == {
        "status": "failed",
        "error": "target target_bqx45_h60 is NULL on every sampled row",
    }
    assert all("metrics" in summary["horizons"][h] for h in ("15", "30", "45", "75", "90", "105"))
    with pytest.raises(WarehouseError, match="targets_eurusd not found"):
        process_pair_all_horizons("eurusd", settings, source=source)


@pytest.mark.unit
def test_a_path_that_is_not_a_warehouse_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(WarehouseError, match="not a DuckDB file or a Parquet folder"):
        DuckDBSource(tmp_path / "notes.txt")
    with pytest.raises(WarehouseError, match="does not exist"):
        DuckDBSource(tmp_path / "missing.duckdb")


@pytest.mark.unit
def test_memory_watch_stops_a_task_past_its_budget():
    hoard = []
    with pytest.raises(MemoryBudgetExceeded, match="memory budget exceeded"):
        with MemoryWatch(budget_bytes=300 * 1024**2, interval_s=0.01) as watch:
            for _ in range(200):
                hoard.append(np.ones(4 * 1024**2))  # 32 MiB each
    assert watch.peak_bytes > 300 * 1024**2
    hoard.clear()


@pytest.mark.unit
def test_constant_target_is_a_data_error():
    df = pd.DataFrame({"a__x": np.arange(300.0), "target_bqx45_h15": 0.25})
    with pytest.raises(DataError, match=r"target_bqx45_h15 is constant \(0.25\)"):
        prepare_pair(frame_from_pandas(df, "eurusd", ["target_bqx45_h15"]))
