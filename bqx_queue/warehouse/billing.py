"""BigQuery's on-demand billing rules, used by every source so costs compare across sources.

Bytes processed: the logical size of every referenced column in every scanned partition
(FLOAT64/INT64/TIMESTAMP/DATE 8 B, NUMERIC 16, BOOL 1, STRING 2 + UTF-8 length, NULL 0).
Bytes billed: at least 10 MiB per referenced table, the total rounded up to the MiB.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from bqx_queue.domain import CostEstimate

if TYPE_CHECKING:
    from bqx_queue.warehouse.catalog import Catalog
    from bqx_queue.warehouse.sql import QueryPlan

MIB = 1024**2
TIB = 1024**4
MIN_BILLED_PER_TABLE = 10 * MIB

FIXED_WIDTH_BYTES = {
    "FLOAT64": 8,
    "INT64": 8,
    "TIMESTAMP": 8,
    "DATETIME": 8,
    "DATE": 8,
    "TIME": 8,
    "NUMERIC": 16,
    "BIGNUMERIC": 32,
    "BOOL": 1,
}
STRING_OVERHEAD_BYTES = 2


def column_bytes(bq_type: str, non_null_values: int, string_bytes: int = 0) -> int:
    """Return the logical bytes of one column: fixed width per non-NULL value, or for STRING
    (and BYTES) 2 bytes per non-NULL value plus the UTF-8 length of all values."""
    if bq_type in ("STRING", "BYTES"):
        return STRING_OVERHEAD_BYTES * non_null_values + string_bytes
    try:
        return FIXED_WIDTH_BYTES[bq_type] * non_null_values
    except KeyError:
        raise ValueError(f"no billing size known for BigQuery type {bq_type}") from None


def bytes_billed(bytes_per_table: Iterable[int]) -> int:
    """Return billed bytes of one query from the bytes it processed in each referenced table."""
    total = sum(max(table_bytes, MIN_BILLED_PER_TABLE) for table_bytes in bytes_per_table)
    return -(-total // MIB) * MIB


def cost_usd(billed: int, price_per_tib_usd: float) -> float:
    """Return the on-demand price of billed bytes."""
    return billed / TIB * price_per_tib_usd


# --- estimates from metadata, caps and prices ------------------------------------------------

# CostEstimate and its cap (CostEstimate.cap, the maximum_bytes_billed sent) live in bqx_queue.domain.manifest:
# the manifest and the report carry estimates without importing the warehouse.
# Average UTF-8 length assumed for a STRING value when only metadata is known.
DEFAULT_STRING_LENGTH = 16


def value_bytes(bq_type: str, value: object) -> int:
    """Return the logical bytes of one value: 0 for NULL, the type's width, or for STRING and
    BYTES 2 + the UTF-8 length; an ARRAY (a repeated field) is the sum of its elements."""
    if value is None:
        return 0
    if isinstance(value, list | tuple):
        return sum(value_bytes(bq_type, item) for item in value)
    if bq_type == "STRING":
        return STRING_OVERHEAD_BYTES + len(str(value).encode("utf-8"))
    if bq_type == "BYTES":
        return STRING_OVERHEAD_BYTES + len(value)  # type: ignore[arg-type]
    return column_bytes(bq_type, 1)


def type_width(bq_type: str, string_length: int = DEFAULT_STRING_LENGTH) -> int:
    """Return the bytes one non-NULL value of a type is billed, assuming string_length for
    STRING/BYTES values (metadata does not say how long they are)."""
    if bq_type in ("STRING", "BYTES"):
        return STRING_OVERHEAD_BYTES + string_length
    return column_bytes(bq_type, 1)


def metadata_bytes(column_types: Iterable[str], rows: int, string_length: int = DEFAULT_STRING_LENGTH) -> int:
    """Return the bytes a scan of these columns over `rows` rows processes, from types alone.

    An upper bound for fixed-width columns (a NULL costs 0, metadata counts every row as filled);
    STRING columns are priced at `string_length` bytes per value plus 2.
    """
    return rows * sum(type_width(t, string_length) for t in column_types)


def round_up_mib(byte_count: int) -> int:
    """Return bytes rounded up to a whole MiB, as BigQuery bills them."""
    return -(-byte_count // MIB) * MIB


def billed_upper_bound(bytes_processed: int, tables: int) -> int:
    """Return the most a query can be billed when only its total bytes are known (a dry run
    reports no per-table split): every table may still be lifted to its 10 MiB minimum."""
    return round_up_mib(bytes_processed + tables * MIN_BILLED_PER_TABLE)


def usd_to_bytes(budget_usd: float, price_per_tib_usd: float) -> int:
    """Return how many billed bytes a budget buys at the on-demand price."""
    return int(budget_usd / price_per_tib_usd * TIB)


def plan_columns(plan: QueryPlan) -> dict[str, list[str]]:
    """Return, per referenced table (dataset.table), the columns the plan reads from it."""
    wanted: dict[str, list[str]] = {name: ["interval_time"] for name in plan.tables}
    wanted[plan.tables[0]] += list(plan.targets)
    for feature in plan.features:
        wanted[feature.table].append(feature.column)
    return wanted


def metadata_estimate(
    plan: QueryPlan,
    catalog: Catalog,
    rows_per_table: Mapping[str, int],
    price_per_tib_usd: float,
    string_length: int = DEFAULT_STRING_LENGTH,
) -> CostEstimate:
    """Return the plan's cost from metadata only: column types from the catalog and the rows of
    every table in the scanned partitions (rows_per_table, keyed dataset.table)."""
    per_table = []
    for qualified, columns in plan_columns(plan).items():
        dataset, name = qualified.split(".")
        types = {c.name: c.type for c in catalog.table(dataset, name).columns}
        per_table.append(metadata_bytes([types[c] for c in columns], rows_per_table.get(qualified, 0), string_length))
    billed = bytes_billed(per_table)
    return CostEstimate(
        pair=plan.pair,
        queries=plan.queries,
        tables=len(plan.tables),
        columns=len(plan.features) + len(plan.targets) + 1,
        bytes_processed=sum(per_table),
        bytes_billed=billed,
        cost_usd=cost_usd(billed, price_per_tib_usd),
        method="metadata",
    )


def combined_estimate(estimates: list[CostEstimate]) -> CostEstimate:
    """Return one pair's estimate from the estimates of its queries (one, unless split)."""
    first = estimates[0]
    billed = sum(e.bytes_billed for e in estimates)
    return CostEstimate(
        pair=first.pair,
        queries=sum(e.queries for e in estimates),
        tables=sum(e.tables for e in estimates),
        columns=sum(e.columns for e in estimates) - (len(estimates) - 1),  # interval_time once
        bytes_processed=sum(e.bytes_processed for e in estimates),
        bytes_billed=billed,
        cost_usd=sum(e.cost_usd for e in estimates) if len(estimates) > 1 else first.cost_usd,
        method=first.method,
    )


def format_estimate(estimate: dict[str, Any]) -> str:
    """Return the dry-run table: one line per pair (queries, tables, columns, bytes, $), then
    the run total against the budget."""
    header = (
        f"{'pair':<10} {'queries':>7} {'tables':>6} {'columns':>8} {'bytes processed':>16} {'bytes billed':>16} "
        f"{'$':>10}"
    )
    rule = "-" * len(header)
    lines = [header, rule]
    for pair, e in estimate["pairs"].items():
        lines.append(
            f"{pair:<10} {e['queries']:>7} {e['tables']:>6} {e['columns']:>8} "
            f"{e['bytes_processed']:>16,} {e['bytes_billed']:>16,} {e['cost_usd']:>10.4f}"
        )
    for e in estimate.get("shared", []):
        lines.append(
            f"{e['pair']:<10} {e['queries']:>7} {e['tables']:>6} {e['columns']:>8} "
            f"{e['bytes_processed']:>16,} {e['bytes_billed']:>16,} {e['cost_usd']:>10.4f}"
            "  (shared tables, once per run)"
        )
    total, budget = estimate["cost_usd"], estimate["budget_usd"]
    lines += [
        rule,
        f"{'total':<10} {estimate['queries']:>7} {'':>6} {'':>8} "
        f"{estimate['bytes_processed']:>16,} {estimate['bytes_billed']:>16,} {total:>10.4f}",
        f"estimate ({estimate['method']}) ${total:.4f} for {len(estimate['pairs'])} pairs; budget ${budget:.4f}: "
        + ("within budget" if total <= budget else "OVER BUDGET"),
    ]
    return "\n".join(lines)
