"""The pair plan: ONE BigQuery-dialect statement with every feature of a pair and its targets."""

from __future__ import annotations

from dataclasses import dataclass

import sqlglot

from bqx_queue.config import Settings
from bqx_queue.errors import WarehouseError
from bqx_queue.universe import target_column
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

    @property
    def queries(self) -> int:
        return 1

    def to_duckdb(self) -> str:
        """Return the same statement in DuckDB's dialect (parameters become $name)."""
        return sqlglot.transpile(self.sql, read="bigquery", write="duckdb")[0]


def _quote(name: str) -> str:
    return f"`{check_identifier(name)}`"


def _table_ref(table: Table, project: str | None) -> str:
    parts = [project] if project else []
    parts += [check_identifier(table.dataset), check_identifier(table.name)]
    return "`" + ".".join(parts) + "`"


def plan_pair(
    pair: str,
    catalog: Catalog,
    settings: Settings,
    horizons: tuple[int, ...] | None = None,
    project: str | None = None,
    include_shared: bool = True,
    tables: list[Table] | None = None,
) -> PairPlan:
    """Return the plan joining the pair's feature tables to its targets on interval_time.

    Every table is filtered to the sampled days on its own partition column, so BigQuery prunes
    partitions of each table; forward-looking columns are left out of the SELECT. Without
    include_shared, the tables shared by every pair are left to plan_shared_tables (fetched
    once per run). `tables` replaces the pair's feature tables (split_pair_plan uses it).
    """
    horizons = horizons or settings.horizons
    targets_table = catalog.table(settings.analytics_dataset, settings.targets_table.format(pair=pair))
    targets = tuple(target_column(h) for h in horizons)
    missing = [t for t in targets if t not in targets_table.column_names()]
    if missing:
        raise WarehouseError(f"table {targets_table.qualified} lacks {', '.join(missing)}")
    if KEY_COLUMN not in targets_table.column_names():
        raise WarehouseError(f"table {targets_table.qualified} has no {KEY_COLUMN} column")
    own, shared = pair_feature_tables(catalog, pair, settings)
    if not include_shared:
        shared = []
    if tables is not None:
        own, shared = list(tables), []

    day_filter = f"DATE({KEY_COLUMN}) IN UNNEST(@days)"
    select = [f"t.{KEY_COLUMN}"] + [f"t.{_quote(name)}" for name in targets]
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
            if FORWARD_LOOKING.match(column.name):
                excluded.append((alias, "forward-looking column (leaks the target)"))
                continue
            chosen.append(column)
            features.append(FeatureColumn(alias, table.qualified, column.name, column.type))
            select.append(f"f{index}.{_quote(column.name)} AS {_quote(alias)}")
        if not chosen:
            continue
        referenced.append(table.qualified)
        columns = ", ".join([KEY_COLUMN] + [_quote(c.name) for c in chosen])
        joins.append(
            f"LEFT JOIN (SELECT {columns} FROM {_table_ref(table, project)} WHERE {day_filter})"
            f" AS f{index} ON f{index}.{KEY_COLUMN} = t.{KEY_COLUMN}"
        )
    sql = "\n".join(
        [
            "SELECT " + ",\n  ".join(select),
            f"FROM {_table_ref(targets_table, project)} AS t",
            *joins,
            f"WHERE DATE(t.{KEY_COLUMN}) IN UNNEST(@days)",
            f"ORDER BY t.{KEY_COLUMN}",
        ]
    )
    return PairPlan(pair, sql, tuple(referenced), tuple(features), targets, tuple(excluded))


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
        if KEY_COLUMN not in table.column_names():
            raise WarehouseError(f"table {table.qualified} has no {KEY_COLUMN} column")
        chosen = _feature_columns(table)
        if not chosen:
            continue
        if len(chosen) + 1 > max_columns:
            raise WarehouseError(f"table {table.qualified} alone has {len(chosen)} columns, over {max_columns} per query")
        piece = len(_tables_sql([(table, chosen)], project).encode())  # this table's share of the text
        if groups[-1] and (
            width + len(chosen) > max_columns or len(groups[-1]) >= MAX_REFERENCED_TABLES or text + piece > MAX_SQL_BYTES
        ):
            groups.append([])
            width, text = 1, 0
        groups[-1].append((table, chosen))
        width += len(chosen)
        text += piece
    plans = []
    for number, group in enumerate(g for g in groups if g):
        features = tuple(
            FeatureColumn(f"{t.name}{FEATURE_SEPARATOR}{c.name}", t.qualified, c.name, c.type) for t, cs in group for c in cs
        )
        excluded = tuple(
            (f"{t.name}{FEATURE_SEPARATOR}{c.name}", "forward-looking column (leaks the target)")
            for t, _ in group
            for c in t.columns
            if FORWARD_LOOKING.match(c.name)
        )
        plans.append(
            TablesPlan(
                f"{prefix}-{number:03d}", _tables_sql(group, project), tuple(t.qualified for t, _ in group), features, excluded
            )
        )
    return plans


def _feature_columns(table: Table) -> list[Column]:
    return [c for c in table.columns if c.name != KEY_COLUMN and not FORWARD_LOOKING.match(c.name)]


def _fits(plan: PairPlan, max_columns: int) -> bool:
    return (
        len(plan.features) + len(plan.targets) + 1 <= max_columns
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
    width = len(plan.targets) + 1
    for table in candidates:
        chosen = len(_feature_columns(table))
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
    day_filter = f"DATE({KEY_COLUMN}) IN UNNEST(@days)"
    for index, (table, chosen) in enumerate(group):
        columns = ", ".join([KEY_COLUMN] + [_quote(c.name) for c in chosen])
        source = f"(SELECT {columns} FROM {_table_ref(table, project)} WHERE {day_filter}) AS s{index}"
        joins.append(f"FROM {source}" if index == 0 else f"FULL OUTER JOIN {source} USING ({KEY_COLUMN})")
        select += [f"s{index}.{_quote(c.name)} AS {_quote(f'{table.name}{FEATURE_SEPARATOR}{c.name}')}" for c in chosen]
    return "\n".join(["SELECT " + ",\n  ".join(select), *joins, f"ORDER BY {KEY_COLUMN}"])


QueryPlan = PairPlan | TablesPlan  # anything a source can dry-run and fetch
