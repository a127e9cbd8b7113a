"""The one interface of a warehouse: what the producer and a pair's analysis ask of it.

DuckDBSource (a DuckDB file or a Parquet folder) and BigQuerySource implement it; callers hold a
WarehouseSource and never ask which one they have. This module imports no client library, so
analysis/ can name the type without reaching BigQuery or Redis (import-linter keeps it so).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Protocol

from bqx_queue.config import Settings
from bqx_queue.domain import CostEstimate, SourceKind
from bqx_queue.warehouse.catalog import Catalog, Table
from bqx_queue.warehouse.fetch import PairFetch
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

    def fetch_pair(self, pair: str, settings: Settings, days: list[date], run_id: str | None = None) -> PairFetch:
        """Return the pair's rows on these days as a PairFrame, and what fetching them cost.

        In a run (run_id set) the query goes through the extract cache, and on a billable source
        it is labelled with the run and reserved in the run's cost ledger.
        """
        ...
