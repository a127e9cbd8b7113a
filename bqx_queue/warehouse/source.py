"""Choosing the warehouse a run reads, from settings or an explicit path."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from bqx_queue.config import Settings
from bqx_queue.errors import WarehouseError
from bqx_queue.warehouse import billing
from bqx_queue.warehouse.duckdb_source import DuckDBSource
from bqx_queue.warehouse.sql import QueryPlan


def open_source(settings: Settings, path: Path | str | None = None, threads: int | None = None) -> Any:
    """Return the source for a DuckDB file or a Parquet folder (settings.warehouse by default),
    or BigQuery when settings.source is "bigquery"."""
    if settings.source == "bigquery":
        from bqx_queue.warehouse.bigquery_source import BigQuerySource

        return BigQuerySource(settings)
    source = DuckDBSource(Path(path or settings.warehouse), threads=threads)
    if settings.source not in ("auto", source.kind):
        raise WarehouseError(f"warehouse {source.path} is a {source.kind} source, but source={settings.source!r}")
    return source


def source_location(source: Any) -> str:
    """Return where a source's data lives, for manifests and messages."""
    if hasattr(source, "describe"):
        return str(source.describe())
    return str(Path(source.path).resolve())


def estimate_plan(source: Any, plan: QueryPlan, days: list[date], settings: Settings) -> billing.CostEstimate:
    """Return what the plan will cost: BigQuery's dry run where the source has one, otherwise
    the metadata estimate (catalog types x rows in the sampled partitions of every table)."""
    if hasattr(source, "dry_run"):
        return source.dry_run(plan, days)
    catalog = source.catalog()
    wanted = set(days)
    rows = {}
    for qualified in plan.tables:
        counts = source.day_counts(catalog.table(*qualified.split(".")))
        rows[qualified] = sum(n for day, n in counts.items() if day in wanted)
    return billing.metadata_estimate(plan, catalog, rows, settings.price_per_tib_usd, settings.string_length_estimate)
