"""A pair's query result as arrays: float32 features, string features, targets and times.

Record batches are copied column by column into one preallocated float32 matrix, so a
production-width pair (80,000 x 6,500) never exists as float64 or as a pandas copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

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


def read_pair_frame(reader: pa.RecordBatchReader, plan: PairPlan, capacity: int) -> PairFrame:
    """Return the pair frame read from the plan's result stream."""
    numeric_names = [f.alias for f in plan.features if f.type in NUMERIC_TYPES]
    string_names = [f.alias for f in plan.features if f.type not in NUMERIC_TYPES]
    width = len(numeric_names) + MAX_STRING_LEVELS * len(string_names)
    numeric = np.empty((max(capacity, 1), width), dtype=np.float32, order="F")
    times: list[np.ndarray] = []
    strings: dict[str, list[np.ndarray]] = {name: [] for name in string_names}
    targets: dict[str, list[np.ndarray]] = {name: [] for name in plan.targets}
    filled = 0
    for batch in reader:
        rows = batch.num_rows
        if filled + rows > numeric.shape[0]:
            grown = np.empty((max(2 * numeric.shape[0], filled + rows), numeric.shape[1]), np.float32, order="F")
            grown[:filled] = numeric[:filled]
            numeric = grown
        for j, name in enumerate(numeric_names):
            numeric[filled : filled + rows, j] = _floats(batch.column(name))
        for name in string_names:
            strings[name].append(batch.column(name).to_numpy(zero_copy_only=False))
        for name in plan.targets:
            targets[name].append(_floats(batch.column(name)))
        times.append(batch.column(KEY_COLUMN).cast(pa.timestamp("us", tz="UTC")).to_numpy().astype("datetime64[us]"))
        filled += rows
    return PairFrame(
        pair=plan.pair,
        times=np.concatenate(times) if times else np.array([], dtype="datetime64[us]"),
        numeric=numeric[:filled],
        numeric_names=numeric_names,
        strings={n: np.concatenate(v) if v else np.array([], dtype=object) for n, v in strings.items()},
        targets=pd.DataFrame({n: np.concatenate(v) if v else np.array([]) for n, v in targets.items()}),
    )


def _floats(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_boolean(column.type) or pa.types.is_decimal(column.type):
        column = column.cast(pa.float64())
    return column.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
