"""Choosing the warehouse a run reads, from settings or an explicit path; and one pair's rows
from it outside a run (query_pair_all_horizons)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd

from bqx_queue.config import Settings, load_settings
from bqx_queue.domain import WarehouseError
from bqx_queue.warehouse.bigquery_source import BigQuerySource
from bqx_queue.warehouse.duckdb_source import DuckDBSource
from bqx_queue.warehouse.fetch import fetch_pair, pair_days
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
    """Return ONE query's result: interval_time, every feature of the pair, and its targets.

    Every feature table of the pair and the shared tables are joined on ``interval_time`` with
    the pair's targets, on the sampled days only, one row per minute (a table repeating an
    ``interval_time`` keeps one row by the rule in warehouse/sql.py, or fails the pair when
    ``on_duplicate_timestamps`` is "fail"). Outside a run: no extract cache, no cost ledger.

    Parameters
    ----------
    pair : str
        The pair's name, e.g. "eurusd".
    settings : Settings, optional
        Where the warehouse is and how much to read (``warehouse``, ``source``, ``max_rows``,
        ``seed``, ``horizons``); loaded from the environment when omitted.
    days : list of datetime.date, optional
        The days to read; by default whole days sampled from the pair's own calendar, spread
        over its history, up to ``settings.max_rows`` rows.
    source : WarehouseSource, optional
        The warehouse to read; by default ``open_source(settings)``.

    Returns
    -------
    pandas.DataFrame
        Time-ordered rows: ``interval_time``, one column per feature (named ``table__column``)
        and one ``target_bqx45_h{horizon}`` column per horizon of ``settings.horizons``.

    Raises
    ------
    WarehouseError
        When the warehouse or the pair's tables cannot be read.
    DataError
        When a table repeats an ``interval_time`` and ``on_duplicate_timestamps`` is "fail".

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from bqx_queue.warehouse.synthetic import WarehouseSpec, build_warehouse
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = build_warehouse(folder / "tiny.duckdb", WarehouseSpec(pairs=("eurusd",), days=2, features_per_pair=20))
    >>> settings = load_settings(warehouse=folder / "tiny.duckdb", horizons=[15, 60])
    >>> df = query_pair_all_horizons("eurusd", settings)
    >>> len(df), df["interval_time"].is_monotonic_increasing  # two days of 1-minute bars
    (2880, True)
    >>> [column for column in df.columns if column.startswith("target_")]
    ['target_bqx45_h15', 'target_bqx45_h60']
    """
    settings = settings or load_settings()
    source = source or open_source(settings)
    days = days if days is not None else pair_days(source, pair, settings)
    return fetch_pair(source, pair, settings, days).frame.to_pandas()
