"""Plans that fit BigQuery's limits at production width: the shared tables (411 tables /
12,815 columns) split into the fewest queries under 10,000 result columns, 1,000 tables and
1 MB of SQL; each pair's own query stays well under them."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import pytest

from bqx_queue.config import load_settings
from bqx_queue.warehouse.sql import (
    MAX_REFERENCED_TABLES,
    MAX_RESULT_COLUMNS,
    MAX_SQL_BYTES,
    plan_pair,
    plan_shared_tables,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def bench_cost() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "bench" / "cost.py"
    spec = importlib.util.spec_from_file_location("bench_cost", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_production_shared_tables_split_into_the_fewest_queries_that_fit(
    bench_cost: ModuleType,
) -> None:
    catalog = bench_cost.production_catalog(("eurusd",))
    settings = load_settings()
    plans = plan_shared_tables(catalog, settings)
    shared_tables = [
        t for t in catalog.dataset_tables("bqx_features") if t.name.startswith(settings.shared_table_prefixes)
    ]
    assert len(shared_tables) == 411
    # every shared table exactly once, every column once
    assert sorted(t for p in plans for t in p.tables) == sorted(t.qualified for t in shared_tables)
    assert sum(len(p.features) for p in plans) == 12_815
    for plan in plans:
        assert plan.result_columns <= MAX_RESULT_COLUMNS  # with one row count per table
        assert len(plan.tables) <= MAX_REFERENCED_TABLES
        assert len(plan.sql.encode()) <= MAX_SQL_BYTES
    text = sum(len(p.sql.encode()) for p in plans)
    fewest = max(math.ceil(12_816 / MAX_RESULT_COLUMNS), math.ceil(text / MAX_SQL_BYTES))
    assert len(plans) <= fewest + 1  # greedy packing: at most one query more than the bound


def test_a_pairs_own_query_fits_at_production_width(bench_cost: ModuleType) -> None:
    catalog = bench_cost.production_catalog(("eurusd", "gbpusd"))
    settings = load_settings()
    own = plan_pair("eurusd", catalog, settings, include_shared=False)
    full = plan_pair("eurusd", catalog, settings)
    assert len(own.tables) == 257 and len(own.features) == 4_173
    assert own.result_columns <= MAX_RESULT_COLUMNS
    assert len(own.sql.encode()) <= MAX_SQL_BYTES
    # with the shared tables in it, the one query would break the column limit
    assert len(full.features) + len(full.targets) + 1 > MAX_RESULT_COLUMNS
