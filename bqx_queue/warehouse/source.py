"""Choosing the warehouse a run reads, from settings or an explicit path."""

from __future__ import annotations

from pathlib import Path

from bqx_queue.config import Settings
from bqx_queue.errors import WarehouseError
from bqx_queue.warehouse.duckdb_source import DuckDBSource


def open_source(settings: Settings, path: Path | str | None = None, threads: int | None = None) -> DuckDBSource:
    """Return the source for a DuckDB file or a Parquet folder (settings.warehouse by default)."""
    source = DuckDBSource(Path(path or settings.warehouse), threads=threads)
    if settings.source not in ("auto", source.kind):
        raise WarehouseError(f"warehouse {source.path} is a {source.kind} source, but source={settings.source!r}")
    return source
