"""The embedded warehouse: a DuckDB file, or a folder of Parquet files <dataset>/<table>.parquet.

It runs the BigQuery-dialect plan transpiled by sqlglot, and measures what BigQuery would have
billed for the same scan (non-NULL values and string lengths in the sampled partitions).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from bqx_queue.config import Settings
from bqx_queue.domain import HORIZONS, CostEstimate, SourceKind, WarehouseError, target_column
from bqx_queue.warehouse import billing
from bqx_queue.warehouse.catalog import KEY_COLUMN, Catalog, Column, Table, check_identifier
from bqx_queue.warehouse.fetch import QueryContext, QueryRows
from bqx_queue.warehouse.frame import BATCH_ROWS
from bqx_queue.warehouse.sql import DUCKDB, PairPlan, QueryPlan, TablesPlan, plan_pair

META_SCHEMA = "bqx_meta"
DUCKDB_MAGIC = b"DUCK"
DUCKDB_MEMORY_LIMIT = "1GB"
PART_TABLES = 40  # feature tables per DuckDB statement (see fetch_plan)
PART_COLUMNS = 600


def bigquery_type(duckdb_type: str) -> str:
    """Return the BigQuery type a DuckDB column would have in the production warehouse."""
    t = duckdb_type.upper()
    if t in ("DOUBLE", "FLOAT", "REAL"):
        return "FLOAT64"
    if t in ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "UBIGINT", "UINTEGER", "USMALLINT", "UTINYINT", "HUGEINT"):
        return "INT64"
    if t.startswith("TIMESTAMP"):
        # with a time zone it is an instant (BigQuery TIMESTAMP); without, a wall-clock DATETIME
        return "TIMESTAMP" if "TIME ZONE" in t else "DATETIME"
    if t.startswith("DECIMAL"):
        precision, scale = (int(n) for n in t[t.index("(") + 1 : -1].split(","))
        # BigQuery's NUMERIC is DECIMAL(38, 9); anything wider is BIGNUMERIC (billed 32 bytes)
        return "NUMERIC" if precision - scale <= 29 and scale <= 9 else "BIGNUMERIC"
    if t == "BOOLEAN":
        return "BOOL"
    if t == "DATE":
        return "DATE"
    if t.startswith("TIME"):
        return "TIME"
    if t == "BLOB":
        return "BYTES"
    return "STRING"


def _ident(name: str) -> str:
    return f'"{check_identifier(name)}"'


class DuckDBSource:
    """A warehouse on local disk. Connections open lazily, so the object survives a fork."""

    kind: SourceKind  # "duckdb" for a file, "parquet" for a folder
    billable = False  # its queries cost nothing; the bytes BigQuery would bill are measured

    def __init__(self, path: Path | str, threads: int | None = None) -> None:
        self.path = Path(path)
        self.threads = threads
        if not self.path.exists():
            raise WarehouseError(f"warehouse {self.path} does not exist (build one with `bqx warehouse build`)")
        if self.path.is_dir():
            self.kind = "parquet"
            if not any(self.path.glob("*/*.parquet")):
                raise WarehouseError(f"warehouse folder {self.path} holds no <dataset>/<table>.parquet files")
        else:
            with self.path.open("rb") as handle:
                header = handle.read(12)
            if header[8:12] != DUCKDB_MAGIC:
                raise WarehouseError(f"{self.path} is not a DuckDB file or a Parquet folder")
            self.kind = "duckdb"
        self._connection: duckdb.DuckDBPyConnection | None = None
        self._pid: int | None = None
        self._catalog: Catalog | None = None
        self._day_counts: dict[str, dict[date, int]] = {}

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        if self._connection is None or self._pid != os.getpid():
            self._connection = self._connect()
            self._pid = os.getpid()
        return self._connection

    def location_settings(self) -> dict[str, str]:
        """Return the warehouse path, for a run's manifest to pin."""
        return {"warehouse": self.describe()}

    def pair_plans(
        self, pair: str, catalog: Catalog, settings: Settings, include_shared: bool = True
    ) -> tuple[PairPlan, list[TablesPlan]]:
        """Return the pair's plan, never split: DuckDB has no column or SQL-length limit to fit."""
        return plan_pair(pair, catalog, settings, include_shared=include_shared), []

    def describe(self) -> str:
        """Return where the data lives, for manifests, messages and the extract cache's key."""
        return str(self.path.resolve())

    def close(self) -> None:
        """Close the connection and free DuckDB's cache; the next use reconnects."""
        if self._connection is not None and self._pid == os.getpid():
            self._connection.close()
        self._connection = None

    def _connect(self) -> duckdb.DuckDBPyConnection:
        try:
            if self.kind == "duckdb":
                con = duckdb.connect(str(self.path), read_only=True)
            else:
                con = duckdb.connect()
                for file in sorted(self.path.glob("*/*.parquet")):
                    dataset, table = check_identifier(file.parent.name), check_identifier(file.stem)
                    con.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(dataset)}")
                    con.execute(
                        f"CREATE VIEW {_ident(dataset)}.{_ident(table)} AS "
                        f"SELECT * FROM read_parquet({_sql_string(str(file))})"
                    )
        except duckdb.Error as exc:
            raise WarehouseError(f"cannot open warehouse {self.path}: {exc}") from None
        con.execute("SET TimeZone='UTC'")
        con.execute("SET enable_progress_bar=false")  # a worker's log is not a terminal
        # DuckDB caches table blocks up to 80% of RAM by default: in a worker child that cache
        # would count against the pair's memory budget, so keep it small
        con.execute(f"SET memory_limit='{DUCKDB_MEMORY_LIMIT}'")
        if self.threads:
            con.execute(f"SET threads={int(self.threads)}")
        return con

    def catalog(self) -> Catalog:
        """Return every table and column, read once from information_schema."""
        if self._catalog is None:
            rows = self.connection.execute(
                "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema NOT IN ('information_schema', 'pg_catalog', ?) "
                "ORDER BY table_schema, table_name, ordinal_position",
                [META_SCHEMA],
            ).fetchall()
            grouped: dict[str, dict[str, list[Column]]] = {}
            for dataset, table, column, dtype in rows:
                grouped.setdefault(dataset, {}).setdefault(table, []).append(Column(column, bigquery_type(dtype)))
            self._catalog = Catalog(
                {
                    ds: {name: Table(ds, name, tuple(cols)) for name, cols in tables.items()}
                    for ds, tables in grouped.items()
                }
            )
        return self._catalog

    def day_counts(self, table: Table) -> dict[date, int]:
        """Return rows per partition day of a table (what BigQuery's PARTITIONS view would say),
        counted once per source: shared tables are in every pair's plan."""
        if table.qualified not in self._day_counts:
            rows = self.connection.execute(
                f"SELECT CAST({KEY_COLUMN} AS DATE) AS day, count(*) FROM {_ident(table.dataset)}.{_ident(table.name)} "
                "GROUP BY day ORDER BY day"
            ).fetchall()
            self._day_counts[table.qualified] = {day: count for day, count in rows if day is not None}
        return self._day_counts[table.qualified]

    def tables_modified(self, tables: Iterable[str]) -> dict[str, str]:
        """Return when each dataset.table was last written (file mtime, ns): the whole file for
        DuckDB, the table's own file for a Parquet folder. The extract cache keys on it."""
        modified = {}
        for qualified in tables:
            dataset, name = qualified.split(".", 1)
            file = self.path if self.kind == "duckdb" else self.path / dataset / f"{name}.parquet"
            try:
                modified[qualified] = str(file.stat().st_mtime_ns)
            except FileNotFoundError:
                raise WarehouseError(f"table {qualified}: {file} no longer exists") from None
        return modified

    def estimate(self, plan: QueryPlan, days: list[date], settings: Settings) -> CostEstimate:
        """Return what the plan would cost on BigQuery, from metadata: catalog types x rows in the
        sampled partitions of every table."""
        catalog = self.catalog()
        wanted = set(days)
        rows = {}
        for qualified in plan.tables:
            counts = self.day_counts(catalog.table(*qualified.split(".")))
            rows[qualified] = sum(n for day, n in counts.items() if day in wanted)
        return billing.metadata_estimate(
            plan, catalog, rows, settings.price_per_tib_usd, settings.string_length_estimate
        )

    def query(self, plan: QueryPlan, days: list[date], settings: Settings, context: QueryContext) -> QueryRows:
        """Return the pair plan's rows (one stream per statement, see fetch_plan) and what BigQuery
        would bill for its one query; nothing here is billed, so the context has nothing to add."""
        if not isinstance(plan, PairPlan):
            raise WarehouseError(f"query {plan.name}: a DuckDB warehouse runs whole pair plans only")
        per_table = self.scanned_bytes(plan, days)
        billed = {"bytes_processed": sum(per_table.values()), "bytes_billed": billing.bytes_billed(per_table.values())}
        return QueryRows(list(self.fetch_plan(plan.pair, plan, settings, days)), billed)

    def frame_rows(self, plan: PairPlan, days: list[date], settings: Settings) -> int:
        """Return the rows the targets table holds on these days: the matrix is allocated once at
        its size (an oversized column-major buffer becomes resident whole under transparent huge pages)."""
        counts = self.day_counts(self.catalog().table(*plan.tables[0].split(".")))
        return sum(counts.get(day, 0) for day in days)

    def fetch(self, plan: PairPlan, days: list[date]) -> pa.RecordBatchReader:
        """Run one statement and stream its rows as Arrow record batches."""
        try:
            return self.connection.sql(plan.to_duckdb(), params={"days": days}).to_arrow_reader(BATCH_ROWS)
        except duckdb.Error as exc:
            raise WarehouseError(f"pair {plan.pair}: query failed: {exc}") from None

    def fetch_plan(
        self, pair: str, plan: PairPlan, settings: Settings, days: list[date]
    ) -> list[Iterator[pa.RecordBatch]]:
        """Run the pair's one statement as statements of the same shape over groups of its
        tables (targets joined to at most PART_COLUMNS feature columns each), in order.

        DuckDB's planner takes minutes on one statement with 300+ joins and holds every joined
        table in hash tables at once (14 GB at 6,500 columns); the groups give the same rows
        and columns in seconds. Only repeated minutes are sorted (same rule, same rows: see
        one_row_per_time), and only the first statement is ordered: sorting every wide result
        took half of each statement's time, and the reader places later ones' rows by
        interval_time. BigQuery runs the one statement.
        """
        catalog = self.catalog()
        # the plan's targets, not the settings' horizons: a plan may read more (the extract cache's)
        horizons = tuple(h for target in plan.targets for h in HORIZONS if target_column(h) == target)
        columns_of: dict[str, int] = {}
        for feature in plan.features:
            columns_of[feature.table] = columns_of.get(feature.table, 0) + 1
        groups: list[list[Any]] = [[]]
        width = 0
        # one statement, as BigQuery runs it, only when it is small in tables and in columns: 20 own
        # tables of 2,000 columns in one statement passed DuckDB's 1 GB memory limit
        small = len(plan.tables) <= PART_TABLES and len(plan.features) <= PART_COLUMNS
        for qualified in plan.tables[1:]:
            columns = columns_of.get(qualified, 0)
            if not small and groups[-1] and (width + columns > PART_COLUMNS or len(groups[-1]) >= PART_TABLES):
                groups.append([])
                width = 0
            groups[-1].append(catalog.table(*qualified.split(".")))
            width += columns
        return [
            self._stream(
                plan_pair(
                    pair,
                    catalog,
                    settings,
                    horizons,
                    tables=group,
                    sort_repeats_only=True,
                    dialect=DUCKDB,
                    ordered=not number,
                ),
                days,
            )
            for number, group in enumerate(groups)
        ]

    def _stream(self, plan: PairPlan, days: list[date]) -> Iterator[pa.RecordBatch]:
        """Batches of one statement, started only when read (one open result per connection)."""
        yield from self.fetch(plan, days)

    def scanned_bytes(self, plan: PairPlan, days: list[date]) -> dict[str, int]:
        """Return, per referenced table, the bytes BigQuery would process for the plan's scan."""
        wanted: dict[str, list[str]] = {name: [KEY_COLUMN] for name in plan.tables}
        wanted[plan.tables[0]] += list(plan.targets)
        for feature in plan.features:
            wanted[feature.table].append(feature.column)
        catalog = self.catalog()
        per_table: dict[str, int] = {}
        for qualified, columns in wanted.items():
            dataset, name = qualified.split(".")
            types = {c.name: c.type for c in catalog.table(dataset, name).columns}
            measures = []
            for column in columns:
                measures.append(f"count({_ident(column)})")
                if types[column] == "STRING":
                    measures.append(f"coalesce(sum(strlen(CAST({_ident(column)} AS VARCHAR))), 0)")
            row = self.connection.execute(
                f"SELECT {', '.join(measures)} FROM {_ident(dataset)}.{_ident(name)} "
                f"WHERE CAST({KEY_COLUMN} AS DATE) IN (SELECT unnest($days))",
                {"days": days},
            ).fetchall()  # not fetchone: the result must be complete before a pair's statements run
            values = iter(row[0] if row else ())
            total = 0
            for column in columns:
                count = next(values)
                strings = next(values) if types[column] == "STRING" else 0
                total += billing.column_bytes(types[column], count, strings)
            per_table[qualified] = total
        return per_table

    def manifest(self) -> dict[str, Any] | None:
        """Return the synthetic warehouse's manifest (planted features), if it has one."""
        if self.kind != "duckdb":
            return None
        try:
            row = self.connection.execute(f"SELECT body FROM {META_SCHEMA}.manifest").fetchone()
        except duckdb.CatalogException:
            return None
        return json.loads(row[0]) if row else None


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
