"""BigQuery's on-demand billing rules, used by every source so costs compare across sources.

Bytes processed: the logical size of every referenced column in every scanned partition
(FLOAT64/INT64/TIMESTAMP/DATE 8 B, NUMERIC 16, BOOL 1, STRING 2 + UTF-8 length, NULL 0).
Bytes billed: at least 10 MiB per referenced table, the total rounded up to the MiB.
"""

from __future__ import annotations

from collections.abc import Iterable

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
