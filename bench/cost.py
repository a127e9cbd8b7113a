"""What a full 28-pair run costs on BigQuery, for three plans, from metadata alone.

The catalog is production-shaped and holds no data: per pair 256 own tables / 4,173 feature
columns, shared by all pairs 411 tables / 12,815 columns (tri_ 194 / 6,460, mkt_ 10 / 150,
var_ 63 / 973, csi_ 144 / 5,232), a targets table of 49 columns per pair, every table keyed by
interval_time and partitioned by day: 1-minute bars on weekdays from 2020-01-02, about 2.17
million rows per pair. Bytes come from bqx_queue.warehouse.billing (BigQuery's on-demand rules:
8 bytes per FLOAT64/TIMESTAMP value, 10 MiB minimum per referenced table, MiB rounding).

  A  per-table queries over the full history (what the earlier project did): one query per
     table per pair, no partition filter.
  B  one query per pair over the full history: the pair's own and shared tables and its
     targets joined in one statement, no partition filter.
  C0 days sampled as in C, but each pair's one query also reads the shared tables (what a run
     without shared_tables_once does; at production width that query would return ~17,000
     columns, over BigQuery's 10,000-column limit).
  C  this product's plan: days sampled across the history up to 80,000 rows
     (DATE(interval_time) IN UNNEST(@days) prunes partitions), each pair's own tables and its
     7 targets in one query, the shared tables fetched once per run.

Metadata counts every cell as filled; the real tables have ~12% NULL cells, which cost nothing,
so real bills are lower. Run:  .venv/bin/python bench/cost.py
"""

from __future__ import annotations

import argparse
import time
from datetime import date, timedelta

import numpy as np

from bqx_queue.config import load_settings
from bqx_queue.domain.universe import PAIRS, target_column
from bqx_queue.warehouse import billing
from bqx_queue.warehouse.catalog import KEY_COLUMN, Catalog, Column, Table
from bqx_queue.warehouse.sampling import sample_days
from bqx_queue.warehouse.sql import plan_pair, plan_shared_tables

OWN_TABLES, OWN_COLUMNS = 256, 4_173
SHARED_FAMILIES = {"tri": (194, 6_460), "mkt": (10, 150), "var": (63, 973), "csi": (144, 5_232)}
TARGET_COLUMNS = 49
ROWS_PER_DAY = 1_440
HISTORY_ROWS = 2_170_000
MAX_RESULT_COLUMNS = 10_000  # BigQuery: columns per query result
GIB = 1024**3


def _split(total: int, parts: int) -> list[int]:
    return [len(chunk) for chunk in np.array_split(np.arange(total), parts)]


def _table(dataset: str, name: str, features: int, prefix: str) -> Table:
    columns = [Column(KEY_COLUMN, "TIMESTAMP")]
    columns += [Column(f"{prefix}_f{i:04d}", "FLOAT64") for i in range(features)]
    return Table(dataset, name, tuple(columns))


def production_catalog(pairs: tuple[str, ...]) -> Catalog:
    """Return a metadata-only catalog shaped like the production BigQuery universe."""
    features: dict[str, Table] = {}
    for pair in pairs:
        for index, width in enumerate(_split(OWN_COLUMNS, OWN_TABLES)):
            name = f"own{index:03d}_{pair}"
            features[name] = _table("bqx_features", name, width, f"own{index:03d}")
    for family, (tables, columns) in SHARED_FAMILIES.items():
        for index, width in enumerate(_split(columns, tables)):
            name = f"{family}_{index:03d}"
            features[name] = _table("bqx_features", name, width, name)
    analytics = {}
    for pair in pairs:
        windows = (45, 90, 180, 360, 720, 1440, 2880)
        horizons = (15, 30, 45, 60, 75, 90, 105)
        names = [f"target_bqx{w}_h{h}" for w in windows for h in horizons]
        assert len(names) == TARGET_COLUMNS and target_column(15) in names
        columns = (Column(KEY_COLUMN, "TIMESTAMP"), *(Column(n, "FLOAT64") for n in names))
        analytics[f"targets_{pair}"] = Table("bqx_analytics", f"targets_{pair}", columns)
    return Catalog({"bqx_features": features, "bqx_analytics": analytics})


def weekday_calendar(rows: int) -> dict[date, int]:
    """Return rows per weekday partition from 2020-01-02 until `rows` 1-minute bars."""
    calendar, day = {}, date(2020, 1, 2)
    while sum(calendar.values()) + ROWS_PER_DAY <= rows:
        if day.weekday() < 5:
            calendar[day] = ROWS_PER_DAY
        day += timedelta(days=1)
    return calendar


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-rows", type=int, default=80_000)
    parser.add_argument("--price", type=float, default=6.25, help="USD per TiB")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    pairs = PAIRS
    catalog = production_catalog(pairs)
    settings = load_settings(max_rows=args.max_rows, price_per_tib_usd=args.price)
    calendar = weekday_calendar(HISTORY_ROWS)
    history_rows = sum(calendar.values())
    days = sample_days(calendar, settings.max_rows, settings.seed)
    sampled_rows = sum(calendar[d] for d in days)
    shared = [t for t in catalog.dataset_tables("bqx_features") if t.name.startswith(settings.shared_table_prefixes)]

    def price(billed: int) -> float:
        return billing.cost_usd(billed, args.price)

    # A: one query per table per pair (own, shared, targets), full history, no filter
    a_queries = a_processed = a_billed = 0
    for pair in pairs:
        plan = plan_pair(pair, catalog, settings)
        for qualified, columns in billing.plan_columns(plan).items():
            table = catalog.table(*qualified.split("."))
            width = len(table.columns) if table.dataset == "bqx_features" else len(columns)
            processed = billing.metadata_bytes(["FLOAT64"] * width, history_rows)
            a_queries += 1
            a_processed += processed
            a_billed += billing.bytes_billed([processed])

    # B: one query per pair (own + shared + targets), full history, no filter
    b_processed = b_billed = 0
    b_columns = b_tables = 0
    for pair in pairs:
        plan = plan_pair(pair, catalog, settings)
        rows = {name: history_rows for name in plan.tables}
        estimate = billing.metadata_estimate(plan, catalog, rows, args.price)
        b_processed += estimate.bytes_processed
        b_billed += estimate.bytes_billed
        b_columns, b_tables = estimate.columns, estimate.tables

    # C0: sampled days, one query per pair with the shared tables in it (the planner as built)
    c0_processed = c0_billed = 0
    for pair in pairs:
        plan = plan_pair(pair, catalog, settings)
        estimate = billing.metadata_estimate(plan, catalog, {n: sampled_rows for n in plan.tables}, args.price)
        c0_processed += estimate.bytes_processed
        c0_billed += estimate.bytes_billed

    # C: sampled days; own tables + targets in one query per pair; shared tables once per run
    c_pair_processed = c_pair_billed = 0
    c_columns = c_tables = 0
    for pair in pairs:
        plan = plan_pair(pair, catalog, settings, include_shared=False)
        rows = {name: sampled_rows for name in plan.tables}
        estimate = billing.metadata_estimate(plan, catalog, rows, args.price)
        c_pair_processed += estimate.bytes_processed
        c_pair_billed += estimate.bytes_billed
        c_columns, c_tables = estimate.columns, estimate.tables
    shared_columns = sum(len(t.columns) for t in shared)
    # the planner's own split of the shared tables at BigQuery's limits (columns, tables, SQL text)
    shared_plans = plan_shared_tables(catalog, settings)
    shared_queries = len(shared_plans)
    shared_estimates = [
        billing.metadata_estimate(p, catalog, {n: sampled_rows for n in p.tables}, args.price) for p in shared_plans
    ]
    shared_processed = sum(e.bytes_processed for e in shared_estimates)
    shared_billed = sum(e.bytes_billed for e in shared_estimates)
    c_processed = c_pair_processed + shared_processed
    c_billed = c_pair_billed + shared_billed

    print(
        f"production-shaped catalog (metadata only): {len(pairs)} pairs; per pair {OWN_TABLES} own tables / "
        f"{OWN_COLUMNS:,} columns; shared {len(shared)} tables / {shared_columns - len(shared):,} columns"
    )
    print(
        f"history: {len(calendar):,} weekday partitions, {history_rows:,} rows per table; sample: {len(days)} days "
        f"spread over the history = {sampled_rows:,} rows (max_rows {settings.max_rows:,})"
    )
    print(f"price ${args.price}/TiB, 10 MiB minimum per table, MiB rounding; every cell counted as filled\n")
    header = f"{'plan':<58} {'queries':>8} {'GiB processed':>14} {'GiB billed':>11} {'USD':>10}"
    print(header)
    print("-" * len(header))
    rows_out = [
        ("A per-table queries, full history (earlier project)", a_queries, a_processed, a_billed),
        ("B one query per pair, full history", len(pairs), b_processed, b_billed),
        ("C0 sampled days, one query per pair incl. shared tables", len(pairs), c0_processed, c0_billed),
        ("C product: sampled days, own tables per pair, shared once",
         len(pairs) + shared_queries, c_processed, c_billed),
    ]  # fmt: skip
    for label, queries, processed, billed in rows_out:
        print(f"{label:<58} {queries:>8,} {processed / GIB:>14,.1f} {billed / GIB:>11,.1f} {price(billed):>10,.4f}")
    print()
    limit = "over" if b_columns > MAX_RESULT_COLUMNS else "within"
    print(
        f"B per query: {b_tables} tables, {b_columns:,} result columns "
        f"({limit} BigQuery's {MAX_RESULT_COLUMNS:,}-column limit)"
    )
    print(f"C per pair query: {c_tables} tables, {c_columns:,} result columns, "
          f"${price(c_pair_billed) / len(pairs):.4f} per pair; shared tables: {shared_queries} queries once per run, "
          f"${price(shared_billed):.4f}")  # fmt: skip
    print(f"C vs A: {a_billed / c_billed:,.0f}x fewer bytes billed; C total ${price(c_billed):.4f} "
          f"(goal: at most $0.50; the earlier project's approved plan of a smaller universe: $29.56)")  # fmt: skip
    print(f"\n({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
