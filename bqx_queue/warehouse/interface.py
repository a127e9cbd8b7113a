"""The one interface of a warehouse: what the producer and a pair's fetch ask of it.

DuckDBSource (a DuckDB file or a Parquet folder) and BigQuerySource implement it, and so does a
source that wraps another (the runner's extract cache); callers hold a WarehouseSource and never
ask which one they have. A source only queries: fetch.fetch_pair composes a pair's queries. This
module imports no client library, so any layer can name the type without reaching BigQuery.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Protocol

from bqx_queue.config import Settings
from bqx_queue.domain import CostEstimate, SourceKind
from bqx_queue.warehouse.catalog import Catalog, Table
from bqx_queue.warehouse.fetch import QueryContext, QueryRows
from bqx_queue.warehouse.sql import PairPlan, QueryPlan, TablesPlan


class WarehouseSource(Protocol):
    """A warehouse a run reads: its tables, their calendars, what a query costs, a pair's rows."""

    kind: SourceKind
    billable: bool  # whether queries are billed (BigQuery): capped, ledgered, shared tables once

    def describe(self) -> str:
        """Return where the data lives, for manifests, messages and the extract cache's key."""
        ...

    def catalog(self) -> Catalog:
        """Return every table and column the run may read."""
        ...

    def day_counts(self, table: Table) -> dict[date, int]:
        """Return rows per partition day of a table."""
        ...

    def tables_modified(self, tables: Iterable[str]) -> dict[str, str]:
        """Return when each dataset.table was last written (the extract cache keys on it)."""
        ...

    def location_settings(self) -> dict[str, str]:
        """Return the settings that say where this warehouse's data is, beyond what names the
        source itself (a local file's or folder's path), for a run's manifest to pin."""
        ...

    def pair_plans(
        self, pair: str, catalog: Catalog, settings: Settings, include_shared: bool = True
    ) -> tuple[PairPlan, list[TablesPlan]]:
        """Return the pair's one query plan and, where this warehouse's limits need it, the parts
        it is split into (joined back on interval_time); `include_shared`: with the shared tables."""
        ...

    def estimate(self, plan: QueryPlan, days: list[date], settings: Settings) -> CostEstimate:
        """Return what the plan's query will process and be billed on these days."""
        ...

    def query(self, plan: QueryPlan, days: list[date], settings: Settings, context: QueryContext) -> QueryRows:
        """Return one planned query's rows on these days and the bytes it processed and billed;
        a billable query carries the context's labels and is sent inside its reservation."""
        ...

    def frame_rows(self, plan: PairPlan, days: list[date], settings: Settings) -> int:
        """Return the most rows the pair's plan can return on these days (its frame's size)."""
        ...

    def close(self) -> None:
        """Release what the source holds between pairs; the next use reopens it."""
        ...
