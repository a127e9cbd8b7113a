"""The pair plan: ONE BigQuery-dialect statement with every feature of a pair and its targets.

Every table enters the statement as a subquery with one row per interval_time. Real exports
repeat timestamps; joined as they are, two tables repeating the same minute multiply its rows.
The rule, the same on BigQuery and DuckDB: of the rows sharing an interval_time, keep the one
that sorts first by the selected columns in table order, each descending (largest value first,
NULL last). Each subquery also returns how many rows shared the minute (ROWS_AT_TIME), so the
repeats are counted per table in the same query, at no extra bytes: COUNT(*) reads no column.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlglot

from bqx_queue.config import Settings
from bqx_queue.domain import WarehouseError, target_column
from bqx_queue.warehouse.catalog import (
    FORWARD_LOOKING,
    KEY_COLUMN,
    Catalog,
    Column,
    Table,
    check_identifier,
    is_shared,
    pair_feature_tables,
)

FEATURE_SEPARATOR = "__"  # result columns are <table>__<column>: unique and traceable
ROWS_AT_TIME = "bqx_rows_at_time"  # rows a table has at the minute, before one is kept
DUPLICATE_RULE = (
    "one row per interval_time per table: of the rows sharing a minute, the one that sorts first by the "
    "selected columns in table order, each descending (largest value first, NULL last)"
)
FEATURE_TYPES = ("FLOAT64", "INT64", "NUMERIC", "BIGNUMERIC", "BOOL", "STRING")
CALENDAR_TYPES = ("DATE", "DATETIME", "TIMESTAMP", "TIME")


def rows_alias(table_name: str) -> str:
    """Return the result column that says how many rows a table had at each minute."""
    return f"{ROWS_AT_TIME}{FEATURE_SEPARATOR}{table_name}"


def exclusion_reason(column: Column) -> str | None:
    """Return why a column is not queried as a feature, or None if it is one."""
    if FORWARD_LOOKING.match(column.name):
        return "forward-looking column (leaks the target)"
    if column.type in CALENDAR_TYPES:
        return f"{column.type} column that is not the key (a calendar value, not a measurement)"
    if column.type not in FEATURE_TYPES:
        return f"{column.type} column (not a feature type)"
    if column.name.lower().startswith(ROWS_AT_TIME):
        return f"column name {column.name} is reserved by bqx-queue"
    return None


@dataclass(frozen=True)
class FeatureColumn:
    alias: str
    table: str
    column: str
    type: str


@dataclass(frozen=True)
class PairPlan:
    """What one pair's query reads and returns. Values (the days) are query parameters."""

    pair: str
    sql: str
    tables: tuple[str, ...]  # qualified dataset.table, targets table first
    features: tuple[FeatureColumn, ...]
    targets: tuple[str, ...]
    excluded: tuple[tuple[str, str], ...]  # (alias, reason) left out of the SELECT
    dialect: str = "bigquery"  # the dialect `sql` is written in

    @property
    def queries(self) -> int:
        return 1

    @property
    def result_columns(self) -> int:
        """Columns the statement returns: key, targets, features and one row count per table."""
        return 1 + len(self.targets) + len(self.features) + len(self.tables)

    def to_duckdb(self) -> str:
        """Return the same statement in DuckDB's dialect (parameters become $name)."""
        if self.dialect == DUCKDB.name:
            return self.sql
        return sqlglot.transpile(self.sql, read="bigquery", write="duckdb")[0]


@dataclass(frozen=True)
class Dialect:
    """How the plan's few dialect-specific pieces are spelled. The embedded source renders its
    statements in DuckDB's dialect directly: transpiling a 6,500-column plan with sqlglot took
    longer than DuckDB took to run it."""

    name: str
    quote: str
    days_filter: str  # keeps the sampled days of KEY_COLUMN; @days / $days is the parameter
    datetime_as_utc: str
    order_key: str

    def ident(self, name: str) -> str:
        return f"{self.quote}{check_identifier(name)}{self.quote}"

    def table_ref(self, table: Table, project: str | None) -> str:
        if self.name == "duckdb":
            return f"{self.ident(table.dataset)}.{self.ident(table.name)}"
        parts = [project] if project else []
        parts += [check_identifier(table.dataset), check_identifier(table.name)]
        return "`" + ".".join(parts) + "`"


BIGQUERY = Dialect(
    "bigquery", "`", f"DATE({KEY_COLUMN}) IN UNNEST(@days)", f"TIMESTAMP({KEY_COLUMN})", f"t.{KEY_COLUMN}"
)
# what sqlglot gives for the same pieces (the days list is never empty and holds no NULL)
DUCKDB = Dialect(
    "duckdb", '"', f"ARRAY_CONTAINS($days, CAST({KEY_COLUMN} AS DATE))", f"CAST({KEY_COLUMN} AS TIMESTAMPTZ)",
    f"t.{KEY_COLUMN} NULLS FIRST",
)  # fmt: skip


def _quote(name: str) -> str:
    return BIGQUERY.ident(name)


def one_row_per_time(
    table: Table, columns: list[str], project: str | None, sort_repeats_only: bool = False, dialect: Dialect = BIGQUERY
) -> str:
    """Return the SELECT of one table on the sampled days: one row per interval_time (the rule
    in the module docstring), its columns, and ROWS_AT_TIME. A DATETIME key is read as UTC.

    With sort_repeats_only, only minutes that repeat go through the window sort (same rows,
    same rule): DuckDB sorts every row of a window, which tripled a wide pair's fetch. Not for
    BigQuery: it evaluates a CTE once per reference, so the table would be scanned and billed
    twice.
    """
    key = KEY_COLUMN if table.key_type() == "TIMESTAMP" else f"{dialect.datetime_as_utc} AS {KEY_COLUMN}"
    quoted = [dialect.ident(name) for name in columns]
    order = f" ORDER BY {', '.join(f'{name} DESC' for name in quoted)}" if quoted else ""
    source = f"{dialect.table_ref(table, project)} WHERE {dialect.days_filter}"
    keep_one = f" QUALIFY ROW_NUMBER() OVER (PARTITION BY {KEY_COLUMN}{order}) = 1"
    if not sort_repeats_only:
        return (
            f"SELECT {', '.join([key, *quoted])}, COUNT(*) OVER (PARTITION BY {KEY_COLUMN}) AS {ROWS_AT_TIME}"
            f" FROM {source}{keep_one}"
        )
    names = ", ".join([KEY_COLUMN, *quoted])
    repeated = f"(SELECT {KEY_COLUMN} FROM scanned GROUP BY {KEY_COLUMN} HAVING COUNT(*) > 1)"
    return (
        f"WITH scanned AS (SELECT {', '.join([key, *quoted])} FROM {source}) "
        f"SELECT {names}, 1 AS {ROWS_AT_TIME} FROM scanned WHERE {KEY_COLUMN} NOT IN {repeated} "
        f"UNION ALL SELECT {names}, COUNT(*) OVER (PARTITION BY {KEY_COLUMN}) AS {ROWS_AT_TIME} "
        f"FROM scanned WHERE {KEY_COLUMN} IN {repeated}{keep_one}"
    )


def plan_pair(
    pair: str,
    catalog: Catalog,
    settings: Settings,
    horizons: tuple[int, ...] | None = None,
    project: str | None = None,
    include_shared: bool = True,
    tables: list[Table] | None = None,
    sort_repeats_only: bool = False,
    dialect: Dialect = BIGQUERY,
    ordered: bool = True,
) -> PairPlan:
    """Return the plan joining the pair's feature tables to its targets on interval_time.

    Every table is filtered to the sampled days on its own partition column, so BigQuery prunes
    partitions of each table; forward-looking columns are left out of the SELECT. Without
    include_shared, the tables shared by every pair are left to plan_shared_tables (fetched
    once per run). `tables` replaces the pair's feature tables (split_pair_plan uses it).
    Without `ordered` the rows come in any order (the reader places them by interval_time).
    """
    horizons = horizons or settings.horizons
    # pair and patterns are user text: refused unless plain identifiers, before any lookup
    targets_name = check_identifier(settings.targets_table.format(pair=pair))
    targets_table = catalog.table(settings.analytics_dataset, targets_name)
    targets = tuple(target_column(h) for h in horizons)
    missing = [t for t in targets if t not in targets_table.column_names()]
    if missing:
        raise WarehouseError(f"table {targets_table.qualified} lacks {', '.join(missing)}")
    targets_table.key_type()
    own, shared = pair_feature_tables(catalog, pair, settings)
    if not include_shared:
        shared = []
    if tables is not None:
        own, shared = list(tables), []

    select = [f"t.{KEY_COLUMN}"] + [f"t.{dialect.ident(name)}" for name in targets]
    select.append(f"t.{ROWS_AT_TIME} AS {dialect.ident(rows_alias(targets_table.name))}")
    joins: list[str] = []
    features: list[FeatureColumn] = []
    excluded: list[tuple[str, str]] = []
    referenced = [targets_table.qualified]
    for index, table in enumerate(own + shared):
        chosen = []
        for column in table.columns:
            if column.name == KEY_COLUMN:
                continue
            alias = f"{table.name}{FEATURE_SEPARATOR}{column.name}"
            reason = exclusion_reason(column)
            if reason:
                excluded.append((alias, reason))
                continue
            chosen.append(column)
            features.append(FeatureColumn(alias, table.qualified, column.name, column.type))
            select.append(f"f{index}.{dialect.ident(column.name)} AS {dialect.ident(alias)}")
        if not chosen:
            continue
        referenced.append(table.qualified)
        select.append(f"f{index}.{ROWS_AT_TIME} AS {dialect.ident(rows_alias(table.name))}")
        joins.append(
            f"LEFT JOIN ({one_row_per_time(table, [c.name for c in chosen], project, sort_repeats_only, dialect)})"
            f" AS f{index} ON f{index}.{KEY_COLUMN} = t.{KEY_COLUMN}"
        )
    sql = "\n".join(
        [
            "SELECT " + ",\n  ".join(select),
            f"FROM ({one_row_per_time(targets_table, list(targets), project, sort_repeats_only, dialect)}) AS t",
            *joins,
            *([f"ORDER BY {dialect.order_key}"] if ordered else []),
        ]
    )
    return PairPlan(pair, sql, tuple(referenced), tuple(features), targets, tuple(excluded), dialect.name)


# BigQuery's limits on one query (cloud.google.com/bigquery/quotas)
MAX_RESULT_COLUMNS = 10_000
MAX_REFERENCED_TABLES = 1_000
MAX_SQL_BYTES = 1_000_000


@dataclass(frozen=True)
class TablesPlan:
    """One query over some tables joined on interval_time for the sampled days (parameter @days)."""

    name: str
    sql: str
    tables: tuple[str, ...]
    features: tuple[FeatureColumn, ...]
    excluded: tuple[tuple[str, str], ...]

    @property
    def queries(self) -> int:
        return 1

    @property
    def columns(self) -> int:
        return len(self.features) + 1

    @property
    def result_columns(self) -> int:
        """Columns the statement returns: key, features and one row count per table."""
        return len(self.features) + 1 + len(self.tables)

    @property
    def pair(self) -> str:
        return self.name  # what labels and messages call it

    @property
    def targets(self) -> tuple[str, ...]:
        return ()


def plan_shared_tables(
    catalog: Catalog, settings: Settings, project: str | None = None, max_columns: int | None = None
) -> list[TablesPlan]:
    """Return the fewest queries that read every shared table (tri_, mkt_, var_, csi_) for the
    sampled days within BigQuery's limits (result columns, referenced tables, SQL text).

    Tables are FULL OUTER JOINed USING (interval_time), so a minute any table has is kept.
    """
    shared = [t for t in catalog.dataset_tables(settings.features_dataset) if is_shared(t, settings)]
    return plan_table_groups(shared, "shared", project, max_columns or settings.max_query_columns)


def plan_table_groups(tables: list[Table], prefix: str, project: str | None, max_columns: int) -> list[TablesPlan]:
    """Return queries over these tables, packed in order into as few as fit BigQuery's limits."""
    groups: list[list[tuple[Table, list[Column]]]] = [[]]
    width, text = 1, 0
    for table in tables:
        table.key_type()
        chosen = _feature_columns(table)
        if not chosen:
            continue
        if len(chosen) + 2 > max_columns:
            raise WarehouseError(
                f"table {table.qualified} alone has {len(chosen)} columns, over {max_columns} per query"
            )
        piece = len(_tables_sql([(table, chosen)], project).encode())  # this table's share of the text
        if groups[-1] and (
            width + len(chosen) + 1 > max_columns
            or len(groups[-1]) >= MAX_REFERENCED_TABLES
            or text + piece > MAX_SQL_BYTES
        ):
            groups.append([])
            width, text = 1, 0
        groups[-1].append((table, chosen))
        width += len(chosen) + 1  # its columns and its row count
        text += piece
    plans = []
    for number, group in enumerate(g for g in groups if g):
        features = tuple(
            FeatureColumn(f"{t.name}{FEATURE_SEPARATOR}{c.name}", t.qualified, c.name, c.type)
            for t, cs in group
            for c in cs
        )
        excluded = tuple(
            (f"{t.name}{FEATURE_SEPARATOR}{c.name}", reason)
            for t, _ in group
            for c in t.columns
            if c.name != KEY_COLUMN and (reason := exclusion_reason(c))
        )
        plans.append(
            TablesPlan(
                f"{prefix}-{number:03d}",
                _tables_sql(group, project),
                tuple(t.qualified for t, _ in group),
                features,
                excluded,
            )
        )
    return plans


def _feature_columns(table: Table) -> list[Column]:
    return [c for c in table.columns if c.name != KEY_COLUMN and not exclusion_reason(c)]


def _fits(plan: PairPlan, max_columns: int) -> bool:
    return (
        plan.result_columns <= max_columns
        and len(plan.tables) <= MAX_REFERENCED_TABLES
        and len(plan.sql.encode()) <= MAX_SQL_BYTES
    )


def split_pair_plan(
    pair: str,
    catalog: Catalog,
    settings: Settings,
    project: str | None = None,
    include_shared: bool = True,
    max_columns: int | None = None,
) -> tuple[PairPlan, list[TablesPlan]]:
    """Return the pair's plan, split into the fewest queries that fit BigQuery's limits when one
    does not: the targets with as many of the pair's tables as fit, then the other tables in
    groups (TablesPlan) that the caller joins on interval_time. Most pairs fit in one query."""
    limit = max_columns or settings.max_query_columns
    plan = plan_pair(pair, catalog, settings, project=project, include_shared=include_shared)
    if _fits(plan, limit):
        return plan, []
    own, shared = pair_feature_tables(catalog, pair, settings)
    candidates = own + (shared if include_shared else [])
    main: list[Table] = []
    width = len(plan.targets) + 2  # key, targets and the targets' row count
    for table in candidates:
        chosen = len(_feature_columns(table)) + 1  # its columns and its row count
        if width + chosen > limit or len(main) + 2 > MAX_REFERENCED_TABLES:
            break
        main.append(table)
        width += chosen
    head = plan_pair(pair, catalog, settings, project=project, tables=main)
    while main and not _fits(head, limit):  # the SQL text is the limit: give back tables
        main.pop()
        head = plan_pair(pair, catalog, settings, project=project, tables=main)
    rest = candidates[len(main) :]
    return head, plan_table_groups(rest, f"{pair}-part", project, limit)


def _tables_sql(group: list[tuple[Table, list[Column]]], project: str | None) -> str:
    select = [KEY_COLUMN]
    joins = []
    for index, (table, chosen) in enumerate(group):
        source = f"({one_row_per_time(table, [c.name for c in chosen], project)}) AS s{index}"
        joins.append(f"FROM {source}" if index == 0 else f"FULL OUTER JOIN {source} USING ({KEY_COLUMN})")
        select += [f"s{index}.{_quote(c.name)} AS {_quote(f'{table.name}{FEATURE_SEPARATOR}{c.name}')}" for c in chosen]
        select.append(f"s{index}.{ROWS_AT_TIME} AS {_quote(rows_alias(table.name))}")
    return "\n".join(["SELECT " + ",\n  ".join(select), *joins, f"ORDER BY {KEY_COLUMN}"])


QueryPlan = PairPlan | TablesPlan  # anything a source can dry-run and fetch
