"""What a real export's hazards did to a pair's rows, counted while the result is read.

Repeated timestamps are resolved in the query (one row per interval_time per table, see
warehouse/sql.py); each table's row count at every minute travels in the same result, and is
summed here: minutes a table repeats, rows it dropped, and minutes it lacks (a history that
starts later or ends earlier than the targets'). Values that are +/-inf, or too large for
float32, become NULL and are counted per column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from bqx_queue.domain import DataError


@dataclass
class TableRows:
    """One table's rows at the pair's minutes."""

    repeated_timestamps: int = 0  # minutes at which the table had more than one row
    rows_dropped: int = 0  # rows beyond the one kept at those minutes
    rows_missing: int = 0  # pair minutes at which the table had no row

    def add(self, rows_at_time: pa.Array | pa.ChunkedArray) -> None:
        counts = rows_at_time.to_numpy(zero_copy_only=False).astype(np.float64)
        present = counts[~np.isnan(counts)]
        self.rows_missing += len(counts) - len(present)
        self.repeated_timestamps += int((present > 1).sum())
        self.rows_dropped += int((present - 1).clip(min=0).sum())


@dataclass
class FrameQuality:
    """Counts gathered while a pair's result is read."""

    tables: dict[str, TableRows] = field(default_factory=dict)  # qualified table -> its rows
    non_finite: dict[str, int] = field(default_factory=dict)  # column -> values turned into NULL

    def count_non_finite(self, name: str, values: np.ndarray) -> None:
        """Turn +/-inf in values (a writable float array) into NaN, counting them for name."""
        infinite = np.isinf(values)
        if infinite.any():
            values[infinite] = np.nan
            self.non_finite[name] = self.non_finite.get(name, 0) + int(infinite.sum())

    def repeating_tables(self) -> dict[str, TableRows]:
        return {name: rows for name, rows in self.tables.items() if rows.repeated_timestamps}

    def check_duplicates(self, pair: str, on_duplicate_timestamps: str) -> None:
        """Raise DataError naming the tables that repeat timestamps when the setting says "fail"."""
        repeating = self.repeating_tables()
        if on_duplicate_timestamps == "fail" and repeating:
            named = "; ".join(
                f"{name} ({rows.repeated_timestamps} timestamps, {rows.rows_dropped} extra rows)"
                for name, rows in repeating.items()
            )
            raise DataError(
                f"pair {pair}: tables repeat interval_time values: {named} (on_duplicate_timestamps = 'fail')"
            )

    def summary(self, on_duplicate_timestamps: str, missing_families: list[str]) -> dict[str, Any]:
        """Return the pair summary's data_quality entry: only tables and columns with a hazard."""
        return {
            "on_duplicate_timestamps": on_duplicate_timestamps,
            "tables": [
                {
                    "table": name,
                    "repeated_timestamps": rows.repeated_timestamps,
                    "rows_dropped": rows.rows_dropped,
                    "rows_missing": rows.rows_missing,
                }
                for name, rows in sorted(self.tables.items())
                if rows.repeated_timestamps or rows.rows_missing
            ],
            "non_finite": [{"column": name, "values": count} for name, count in sorted(self.non_finite.items())],
            "missing_families": missing_families,
        }
