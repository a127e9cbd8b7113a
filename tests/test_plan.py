"""Units of the data layer: pair selection, the one-statement plan, day sampling, the frame."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pytest
import sqlglot

from bqx_queue.config import load_settings
from bqx_queue.domain.errors import DataError, SelectionError, WarehouseError
from bqx_queue.domain.universe import GROUPS, PAIRS, TARGET_COLUMNS, resolve_horizons, resolve_pairs
from bqx_queue.warehouse.catalog import Catalog, Column, Table
from bqx_queue.warehouse.duckdb_source import DuckDBSource
from bqx_queue.warehouse.frame import read_pair_frame
from bqx_queue.warehouse.sampling import sample_days
from bqx_queue.warehouse.sql import FeatureColumn, PairPlan, plan_pair


@pytest.mark.unit
def test_pairs_resolve_from_all_groups_and_lists():
    assert resolve_pairs("all") == list(PAIRS) and len(PAIRS) == 28
    assert resolve_pairs("majors") == list(GROUPS["majors"])
    assert resolve_pairs("gbpjpy, EURUSD") == ["gbpjpy", "eurusd"]
    assert all("jpy" in p for p in resolve_pairs("jpy-pairs")) and len(resolve_pairs("jpy-pairs")) == 7


@pytest.mark.unit
@pytest.mark.parametrize(
    ("spec", "message"),
    [("eurxxx", "unknown pair or group 'eurxxx'"), ("", "no pairs selected"), ("eurusd,eurusd", "listed twice")],
)
def test_bad_pair_selections_name_the_problem(spec, message):
    with pytest.raises(SelectionError, match=message):
        resolve_pairs(spec)


@pytest.mark.unit
def test_horizons_are_checked():
    assert resolve_horizons("60,15") == [15, 60]
    with pytest.raises(SelectionError, match="unknown horizon 20"):
        resolve_horizons("20")


@pytest.mark.integration
def test_plan_is_one_statement_with_all_targets_and_a_day_filter_per_table(small_warehouse):
    source = DuckDBSource(small_warehouse)
    plan = plan_pair("eurusd", source.catalog(), load_settings())
    statements = sqlglot.parse(plan.sql, read="bigquery")
    assert len(statements) == 1 and plan.queries == 1
    assert all(f"`{t}`" in plan.sql for t in TARGET_COLUMNS)
    # every referenced table is pruned to the sampled days on its own partition column
    # (the targets table too, inside its one-row-per-minute subquery)
    assert plan.sql.count("DATE(interval_time) IN UNNEST(@days)") == len(plan.tables)
    assert "LIMIT" not in plan.sql
    assert {"base_eurusd__target_bqx45_h15", "base_eurusd__target_bqx45_h30"} <= {a for a, _ in plan.excluded}
    assert any(t.startswith("bqx_features.tri_") for t in plan.tables)  # shared tables joined
    assert not any("gbpjpy" in t for t in plan.tables)  # nothing of an unrelated pair


@pytest.mark.unit
def test_plan_refuses_identifiers_that_are_not_plain_names():
    table = Table(
        "bqx_features",
        "reg_eurusd`; DROP TABLE x; --",
        (Column("interval_time", "TIMESTAMP"), Column("reg_slope_45", "FLOAT64")),
    )
    targets = Table(
        "bqx_analytics",
        "targets_eurusd",
        (Column("interval_time", "TIMESTAMP"),) + tuple(Column(t, "FLOAT64") for t in TARGET_COLUMNS),
    )
    catalog = Catalog({"bqx_features": {table.name: table}, "bqx_analytics": {targets.name: targets}})
    with pytest.raises(WarehouseError, match="refusing identifier"):
        plan_pair("eurusd", catalog, load_settings())


@pytest.mark.integration
def test_missing_tables_and_datasets_are_named(small_warehouse):
    catalog = DuckDBSource(small_warehouse).catalog()
    with pytest.raises(WarehouseError, match="dataset 'nope' not found"):
        plan_pair("eurusd", catalog, load_settings(features_dataset="nope"))
    with pytest.raises(WarehouseError, match="targets_eurusd_v9 not found"):
        plan_pair("eurusd", catalog, load_settings(targets_table="targets_{pair}_v9"))


@pytest.mark.unit
def test_days_are_whole_days_spread_over_the_history_and_reproducible():
    days = {date(2020, 1, 1) + timedelta(days=i): 1440 for i in range(2000)}
    chosen = sample_days(days, 80_000, seed=3)
    assert len(chosen) == 55 and sum(days[d] for d in chosen) <= 80_000
    assert chosen == sorted(chosen) == sample_days(days, 80_000, seed=3)
    gaps = np.diff([d.toordinal() for d in chosen])
    assert chosen[0] < date(2020, 3, 1) and chosen[-1] > date(2025, 3, 1)  # not the first N rows
    assert gaps.max() < 3 * 2000 / 55
    assert sample_days(days, 80_000, seed=4) != chosen


@pytest.mark.integration
def test_frame_holds_float32_features_and_the_sampled_days_only(small_warehouse):
    source = DuckDBSource(small_warehouse)
    settings = load_settings()
    plan = plan_pair("usdjpy", source.catalog(), settings)
    all_days = sorted(source.day_counts(source.catalog().table("bqx_analytics", "targets_usdjpy")))
    days = all_days[::3]
    frame = read_pair_frame([source.fetch(plan, days)], plan, capacity=100)  # grows past capacity
    assert frame.rows == 1440 * len(days)
    assert frame.numeric.dtype == np.float32
    assert set(frame.times.astype("datetime64[D]").astype(object)) == set(days)
    assert list(frame.targets.columns) == list(TARGET_COLUMNS)
    assert "regime_usdjpy__regime_state" in frame.strings


def _one_statement(warehouse):
    """Return eurusd's source, settings, plan, first two days and its frame read as one statement."""
    source = DuckDBSource(warehouse)
    settings = load_settings()
    plan = plan_pair("eurusd", source.catalog(), settings)
    days = sorted(source.day_counts(source.catalog().table("bqx_analytics", "targets_eurusd")))[:2]
    return source, settings, plan, days, read_pair_frame([source.fetch(plan, days)], plan, capacity=10)


def _assert_same_rows(split, whole) -> None:
    assert np.array_equal(split.times, whole.times)
    width = len(whole.numeric_names)  # the spare columns for string encodings are not data
    assert np.array_equal(split.numeric[:, :width], whole.numeric[:, :width], equal_nan=True)
    assert split.targets.equals(whole.targets)


@pytest.mark.integration
def test_local_parts_return_exactly_the_one_statement_rows(small_warehouse, monkeypatch):
    import bqx_queue.warehouse.duckdb_source as duckdb_source

    source, settings, plan, days, whole = _one_statement(small_warehouse)
    monkeypatch.setattr(duckdb_source, "PART_TABLES", 3)
    parts = source.fetch_plan("eurusd", plan, settings, days)
    assert len(parts) >= 5
    _assert_same_rows(read_pair_frame(parts, plan, capacity=10), whole)


@pytest.mark.integration
def test_a_pair_of_few_wide_tables_is_split_by_columns(small_warehouse, monkeypatch):
    # few tables but many columns: one statement joining them all passed DuckDB's 1 GB memory limit
    # (20 own tables of 2,000 columns over 60 days); the columns per statement bound the groups too
    import bqx_queue.warehouse.duckdb_source as duckdb_source

    source, settings, plan, days, whole = _one_statement(small_warehouse)
    monkeypatch.setattr(duckdb_source, "PART_TABLES", len(plan.tables))  # "small" in tables
    assert len(source.fetch_plan("eurusd", plan, settings, days)) == 1
    monkeypatch.setattr(duckdb_source, "PART_COLUMNS", len(plan.features) // 3)  # but not in columns
    parts = source.fetch_plan("eurusd", plan, settings, days)
    assert len(parts) >= 3
    _assert_same_rows(read_pair_frame(parts, plan, capacity=10), whole)


def _part(times: list[int], **columns: list) -> pa.RecordBatchReader:
    stamps = pa.array(np.array(times, dtype="datetime64[m]").astype("datetime64[us]"), pa.timestamp("us", tz="UTC"))
    batch = pa.RecordBatch.from_pydict({"interval_time": stamps, **columns})
    return pa.RecordBatchReader.from_batches(batch.schema, [batch])


@pytest.mark.unit
def test_a_later_statement_in_any_order_is_placed_by_interval_time():
    # DuckDB's later statements come unordered (sorting each wide result took half its time)
    features = (
        FeatureColumn("a_eurusd__x", "f.a_eurusd", "x", "FLOAT64"),
        FeatureColumn("b_eurusd__y", "f.b_eurusd", "y", "FLOAT64"),
        FeatureColumn("b_eurusd__s", "f.b_eurusd", "s", "STRING"),
    )
    plan = PairPlan("eurusd", "", ("a.t", "f.a_eurusd", "f.b_eurusd"), features, ("target_bqx45_h15",), (), "duckdb")
    first = _part([0, 1, 2, 3], a_eurusd__x=[0.0, 1.0, 2.0, 3.0], target_bqx45_h15=[0.1, 0.2, 0.3, 0.4])
    later = _part([2, 0, 3, 1], b_eurusd__y=[20.0, 0.0, 30.0, 10.0], b_eurusd__s=["c", "a", "d", "b"])
    frame = read_pair_frame([first, later], plan, capacity=4)
    assert frame.numeric[:, 0].tolist() == [0, 1, 2, 3] and frame.numeric[:, 1].tolist() == [0, 10, 20, 30]
    assert frame.strings["b_eurusd__s"].tolist() == ["a", "b", "c", "d"]
    assert frame.targets["target_bqx45_h15"].tolist() == [0.1, 0.2, 0.3, 0.4]
    repeated = _part([2, 0, 2, 1], b_eurusd__y=[1.0, 2.0, 3.0, 4.0], b_eurusd__s=["c", "a", "d", "b"])
    with pytest.raises(DataError, match="repeats interval_time values"):
        read_pair_frame([_part([0, 1, 2, 3], a_eurusd__x=[0.0] * 4, target_bqx45_h15=[0.0] * 4), repeated], plan, 4)
    short = _part([2, 0], b_eurusd__y=[1.0, 2.0], b_eurusd__s=["c", "a"])
    with pytest.raises(DataError, match="lacks 2 of its rows"):
        read_pair_frame([_part([0, 1, 2, 3], a_eurusd__x=[0.0] * 4, target_bqx45_h15=[0.0] * 4), short], plan, 4)
