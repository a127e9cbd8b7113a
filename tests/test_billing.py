"""BigQuery's on-demand billing rules, checked against the examples its documentation gives.

Sources: cloud.google.com/bigquery/pricing ("Data size calculation": INT64/FLOAT64/TIMESTAMP
8 bytes, NUMERIC 16, BOOL 1, STRING 2 + UTF-8 length, NULL 0, a repeated field is the sum of
its values; on-demand $6.25 per TiB, rounded up to the MB, at least 10 MB per table referenced
and per query) and Tigani & Naidu, *Google BigQuery Analytics*, ch. 7 ("an integer repeated 10
times is charged 80 bytes").
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bqx_queue.config import load_settings
from bqx_queue.domain import CostEstimate
from bqx_queue.warehouse import billing
from bqx_queue.warehouse.billing import MIB, TIB
from bqx_queue.warehouse.duckdb_source import DuckDBSource
from bqx_queue.warehouse.sql import PairPlan, plan_pair
from bqx_queue.warehouse.synthetic import WarehouseSpec, build_warehouse


@pytest.mark.unit
@pytest.mark.parametrize(
    ("bq_type", "value", "expected"),
    [
        ("INT64", 42, 8),
        ("FLOAT64", 1.5, 8),
        ("TIMESTAMP", "2020-01-02 00:00:00", 8),
        ("DATE", date(2020, 1, 2), 8),
        ("NUMERIC", "1.25", 16),
        ("BIGNUMERIC", "1.25", 32),
        ("BOOL", True, 1),
        ("STRING", "abc", 5),  # 2 + 3 UTF-8 bytes
        ("STRING", "", 2),  # an empty string still costs its 2 bytes
        ("STRING", "é", 4),  # 2 + 2: UTF-8 length, not characters
        ("STRING", "eurusd", 8),
        ("BYTES", b"\x00\x01\x02", 5),
        ("INT64", None, 0),  # NULL is free, whatever its type
        ("STRING", None, 0),
        ("INT64", list(range(10)), 80),  # the book's repeated-field example
        ("INT64", [], 0),
    ],
)
def test_value_bytes_follow_the_data_size_table(bq_type: str, value: object, expected: int) -> None:
    assert billing.value_bytes(bq_type, value) == expected


@pytest.mark.unit
def test_column_bytes_count_non_null_values_and_string_lengths() -> None:
    # 1,000 FLOAT64 values of which 120 are NULL: 880 x 8
    assert billing.column_bytes("FLOAT64", 880) == 7_040
    # 3 strings 'eurusd', 'gbpjpy', NULL: 2 x (2 + 6)
    assert billing.column_bytes("STRING", 2, string_bytes=12) == 16
    with pytest.raises(ValueError, match="GEOGRAPHY"):
        billing.column_bytes("GEOGRAPHY", 1)


@pytest.mark.unit
def test_each_referenced_table_is_billed_at_least_10_mib() -> None:
    # three small tables (1 KB each): 3 x 10 MiB, not 3 KB
    assert billing.bytes_billed([1_000, 1_000, 1_000]) == 30 * MIB
    # a big table and a small one: the big one as is, the small one lifted to 10 MiB
    assert billing.bytes_billed([500 * MIB, 10]) == 510 * MIB
    # a table with no rows in the scanned partitions is still a referenced table
    assert billing.bytes_billed([0]) == 10 * MIB


@pytest.mark.unit
def test_billed_bytes_are_rounded_up_to_the_mib() -> None:
    assert billing.bytes_billed([10 * MIB + 1]) == 11 * MIB
    assert billing.bytes_billed([10 * MIB]) == 10 * MIB
    assert billing.round_up_mib(1) == MIB


@pytest.mark.unit
def test_price_is_6_25_usd_per_tib_and_configurable() -> None:
    assert billing.cost_usd(TIB, 6.25) == pytest.approx(6.25)
    assert billing.cost_usd(10 * MIB, 6.25) == pytest.approx(6.25 * 10 / 1024**2)
    assert billing.cost_usd(TIB, 5.0) == pytest.approx(5.0)
    assert billing.usd_to_bytes(6.25, 6.25) == TIB
    assert billing.usd_to_bytes(50, 6.25) == 8 * TIB


@pytest.mark.unit
def test_domain_anchor_full_history_scan_of_the_earlier_project() -> None:
    # The earlier project's dry run: 462 tables / 11,337 FLOAT64 columns, no partition filter,
    # ~2.17M rows, 12% NULL cells: 168.9 GiB and about $1 per pair. The model lands there too.
    rows = 2_170_000
    all_filled = billing.metadata_bytes(["FLOAT64"] * 11_337 + ["TIMESTAMP"] * 462, rows)  # + each table's key
    with_nulls = int(all_filled * (1 - 0.12))  # NULL cells are free
    assert with_nulls / 1024**3 == pytest.approx(168.9, rel=0.02)
    assert billing.cost_usd(billing.bytes_billed([with_nulls]), 6.25) == pytest.approx(1.03, abs=0.05)


@pytest.mark.unit
def test_metadata_bytes_multiply_type_widths_by_rows() -> None:
    assert billing.metadata_bytes(["FLOAT64", "INT64", "TIMESTAMP"], 1_000) == 24_000
    assert billing.metadata_bytes(["STRING"], 100, string_length=6) == 800
    assert billing.metadata_bytes(["BOOL", "NUMERIC"], 10) == 170


@pytest.mark.unit
@given(st.lists(st.integers(min_value=0, max_value=50 * 1024**3), min_size=1, max_size=60))
def test_the_cap_and_the_dry_run_bound_never_undercut_the_bill(per_table: list[int]) -> None:
    billed = documented_bill(per_table)
    total = sum(per_table)
    # the cap sent as maximum_bytes_billed (CostEstimate.cap, what bigquery_source and the budget
    # send): estimate + 11 MiB per table, so a correct estimate is never refused
    estimate = CostEstimate(
        pair="eurusd", queries=1, tables=len(per_table), columns=1, bytes_processed=total,
        bytes_billed=billed, cost_usd=billing.cost_usd(billed, 6.25), method="dry-run",
    )  # fmt: skip
    assert estimate.cap >= billed
    # a dry run knows only the total: its bound must still cover the per-table minimums
    assert billing.billed_upper_bound(total, len(per_table)) >= billed


@pytest.fixture(scope="module")
def tiny_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("billing") / "tiny.duckdb"
    build_warehouse(path, WarehouseSpec(pairs=("eurusd", "gbpusd"), days=3, features_per_pair=20, seed=3))
    return path


@pytest.mark.integration
def test_metadata_estimate_bounds_the_measured_scan(tiny_warehouse: Path) -> None:
    settings = load_settings(warehouse=tiny_warehouse)
    source = DuckDBSource(tiny_warehouse)
    plan = plan_pair("eurusd", source.catalog(), settings)
    days = sorted(source.day_counts(source.catalog().table(*plan.tables[0].split("."))))[:2]
    estimate = source.estimate(plan, days, settings)
    measured = source.scanned_bytes(plan, days)
    assert estimate.method == "metadata"
    assert estimate.tables == len(plan.tables) == len(measured)
    # no NULLs in this warehouse and short strings: metadata is an upper bound, and a close one
    assert sum(measured.values()) <= estimate.bytes_processed <= 1.2 * sum(measured.values())
    expected = documented_bytes_per_table(tiny_warehouse, plan, days)
    assert estimate.bytes_processed == sum(expected)
    assert estimate.bytes_billed == documented_bill(expected)
    assert estimate.cost_usd == pytest.approx(documented_bill(expected) / 2**40 * 6.25)
    # fewer days, fewer bytes: the estimate follows partition pruning
    one_day = source.estimate(plan, days[:1], settings)
    assert one_day.bytes_processed == pytest.approx(estimate.bytes_processed / 2, rel=0.01)


# The oracle below restates the documented rules by hand and reads the warehouse with DuckDB; it
# calls nothing in billing. Widths per value by the warehouse's DuckDB types (FLOAT64, TIMESTAMP 8);
# metadata cannot see string lengths, so a STRING is 2 + the assumed 16 UTF-8 bytes.
DOCUMENTED_WIDTH = {"DOUBLE": 8, "BIGINT": 8, "TIMESTAMP WITH TIME ZONE": 8, "TIMESTAMP": 8, "VARCHAR": 2 + 16}


def documented_bill(per_table: list[int]) -> int:
    """At least 10 MiB per referenced table, the total rounded up to a whole MiB."""
    total = sum(max(table_bytes, 10 * 2**20) for table_bytes in per_table)
    return math.ceil(total / 2**20) * 2**20


def documented_bytes_per_table(warehouse: Path, plan: PairPlan, days: list[date]) -> list[int]:
    """Bytes per referenced table from the warehouse itself: every row of the sampled days counted
    as filled, times the widths of the columns the plan reads there (its key, its features, and
    the targets in the first table)."""
    columns: dict[str, list[str]] = {name: ["interval_time"] for name in plan.tables}
    columns[plan.tables[0]] += list(plan.targets)
    for feature in plan.features:
        columns[feature.table].append(feature.column)
    result = []
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for qualified, names in columns.items():
            dataset, table = qualified.split(".")
            types = dict(
                con.execute(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = ? AND table_name = ?",
                    [dataset, table],
                ).fetchall()
            )
            (rows,) = con.execute(
                f'SELECT count(*) FROM "{dataset}"."{table}" WHERE CAST(interval_time AS DATE) IN (SELECT unnest(?))',
                [days],
            ).fetchone()
            width = sum(DOCUMENTED_WIDTH[types[name]] for name in names)
            result.append(rows * width)
    return result
