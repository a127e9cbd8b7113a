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
    Table,
    check_identifier,
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
) -> PairPlan:
    """Return the plan joining the pair's feature tables to its targets on interval_time.

    Every table is filtered to the sampled days on its own partition column, so BigQuery prunes
    partitions of each table; forward-looking columns are left out of the SELECT.
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
