"""A pair's query result as arrays: float32 features, string features, targets and times.

Record batches are copied column by column into one preallocated float32 matrix, so a
production-width pair (80,000 x 6,500) never exists as float64 or as a pandas copy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from bqx_queue.errors import DataError
from bqx_queue.warehouse.catalog import KEY_COLUMN
from bqx_queue.warehouse.sql import PairPlan

NUMERIC_TYPES = ("FLOAT64", "INT64", "NUMERIC", "BIGNUMERIC", "BOOL")
# Spare matrix columns per STRING feature, so its one-hot encoding fits without a copy.
MAX_STRING_LEVELS = 8


@dataclass
class PairFrame:
    pair: str
    times: np.ndarray  # datetime64[us], UTC
    numeric: np.ndarray  # (rows, features + spare) float32, column-major, NaN for NULL
    numeric_names: list[str]
    strings: dict[str, np.ndarray]  # name -> object array (None for NULL)
    targets: pd.DataFrame  # one float64 column per target

    @property
    def rows(self) -> int:
        return len(self.times)

    def to_pandas(self) -> pd.DataFrame:
        """Return one DataFrame: interval_time, features, then targets (copies the matrix)."""
        parts = [
            pd.DataFrame({KEY_COLUMN: pd.to_datetime(self.times, utc=True)}),
            pd.DataFrame(self.numeric[:, : len(self.numeric_names)], columns=self.numeric_names),
            pd.DataFrame(self.strings),
            self.targets.reset_index(drop=True),
        ]
        return pd.concat(parts, axis=1)


def read_pair_frame(parts: list[Iterable[pa.RecordBatch]], plan: PairPlan, capacity: int) -> PairFrame:
    """Return the pair frame read from its result streams: one per statement, each with
    interval_time and some of the plan's columns, every one over the same rows in time order."""
    numeric_names = [f.alias for f in plan.features if f.type in NUMERIC_TYPES]
    string_names = [f.alias for f in plan.features if f.type not in NUMERIC_TYPES]
    numeric_index = {name: j for j, name in enumerate(numeric_names)}
    width = len(numeric_names) + MAX_STRING_LEVELS * len(string_names)
    numeric = np.empty((max(capacity, 1), width), dtype=np.float32, order="F")
    strings: dict[str, list[np.ndarray]] = {name: [] for name in string_names}
    targets: dict[str, list[np.ndarray]] = {name: [] for name in plan.targets}
    times = np.array([], dtype="datetime64[us]")
    for number, part in enumerate(parts):
        filled = 0
        part_times = []
        for batch in part:
            rows = batch.num_rows
            if filled + rows > numeric.shape[0]:
                grown = np.empty((max(2 * numeric.shape[0], filled + rows), width), np.float32, order="F")
                grown[: numeric.shape[0]] = numeric
                numeric = grown
            for name in batch.schema.names:
                if name in numeric_index:
                    numeric[filled : filled + rows, numeric_index[name]] = _floats(batch.column(name))
                elif name in strings:
                    strings[name].append(batch.column(name).to_numpy(zero_copy_only=False))
                elif name in targets and number == 0:
                    targets[name].append(_floats(batch.column(name)))
            stamps = batch.column(KEY_COLUMN).cast(pa.timestamp("us", tz="UTC")).to_numpy().astype("datetime64[us]")
            part_times.append(stamps)
            filled += rows
        joined = np.concatenate(part_times) if part_times else np.array([], dtype="datetime64[us]")
        if number == 0:
            times = joined
        elif not np.array_equal(joined, times):
            raise DataError(f"pair {plan.pair}: a table repeats interval_time values, so its join adds rows")
    return PairFrame(
        pair=plan.pair,
        times=times,
        numeric=numeric[: len(times)],
        numeric_names=numeric_names,
        strings={n: np.concatenate(v) if v else np.array([], dtype=object) for n, v in strings.items()},
        targets=pd.DataFrame({n: np.concatenate(v) if v else np.array([]) for n, v in targets.items()}),
    )


def _floats(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_boolean(column.type) or pa.types.is_decimal(column.type):
        column = column.cast(pa.float64())
    return column.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
