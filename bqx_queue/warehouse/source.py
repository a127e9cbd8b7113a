"""Choosing the warehouse a run reads, from settings or an explicit path; and one pair's rows
from it outside a run (query_pair_all_horizons)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd

from bqx_queue.config import Settings, load_settings
from bqx_queue.errors import WarehouseError
from bqx_queue.warehouse.bigquery_source import BigQuerySource
from bqx_queue.warehouse.duckdb_source import DuckDBSource
from bqx_queue.warehouse.fetch import pair_days
from bqx_queue.warehouse.interface import WarehouseSource


def open_source(settings: Settings, path: Path | str | None = None, threads: int | None = None) -> WarehouseSource:
    """Return the source for a DuckDB file or a Parquet folder (settings.warehouse by default),
    or BigQuery when settings.source is "bigquery"."""
    if settings.source == "bigquery":
        return BigQuerySource(settings)
    source = DuckDBSource(Path(path or settings.warehouse), threads=threads)
    if settings.source not in ("auto", source.kind):
        raise WarehouseError(f"warehouse {source.path} is a {source.kind} source, but source={settings.source!r}")
    return source


def query_pair_all_horizons(
    pair: str,
    settings: Settings | None = None,
    days: list[date] | None = None,
    source: WarehouseSource | None = None,
) -> pd.DataFrame:
    """Return ONE query's result: interval_time, every feature of the pair, and its targets."""
    settings = settings or load_settings()
    source = source or open_source(settings)
    days = days if days is not None else pair_days(source, pair, settings)
    return source.fetch_pair(pair, settings, days).frame.to_pandas()
