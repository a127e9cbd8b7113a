"""A pair's query result as arrays: float32 features, string features, targets and times.

Record batches are copied column by column into one preallocated float32 matrix, so a
production-width pair (80,000 x 6,500) never exists as float64 or as a pandas copy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bqx_queue.domain import DataError
from bqx_queue.warehouse.catalog import KEY_COLUMN
from bqx_queue.warehouse.quality import FrameQuality, TableRows
from bqx_queue.warehouse.sql import FEATURE_SEPARATOR, ROWS_AT_TIME, PairPlan

NUMERIC_TYPES = ("FLOAT64", "INT64", "NUMERIC", "BIGNUMERIC", "BOOL")
# Spare matrix columns per STRING feature, so its one-hot encoding fits without a copy.
MAX_STRING_LEVELS = 8
# A STRING feature is a category (one-hot encoded); values longer than this are free text, and
# 80,000 of them would not be kept in memory as Python strings.
MAX_STRING_CHARS = 1_000
# Rows per Arrow record batch: how every source streams a result (and the extract cache and the
# shared tables hand theirs back), so the copy into the matrix above holds one batch at a time.
BATCH_ROWS = 16_384


@dataclass
class PairFrame:
    pair: str
    times: np.ndarray  # datetime64[us], UTC
    numeric: np.ndarray  # (rows, features + spare) float32, column-major, NaN for NULL
    numeric_names: list[str]
    strings: dict[str, np.ndarray]  # name -> object array (None for NULL)
    targets: pd.DataFrame  # one float64 column per target
    quality: FrameQuality = field(default_factory=FrameQuality)
    excluded: dict[str, str] = field(default_factory=dict)  # columns left out while reading, and why

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
    interval_time and some of the plan's columns over the same rows. The first stream is in
    time order and sets the rows; a later one may come in any order, and its rows are placed
    by interval_time.

    Each table's row count per minute (sql.ROWS_AT_TIME) is summed into frame.quality; +/-inf
    (and values past float32's range) become NULL, counted per column; STRING columns with
    values longer than MAX_STRING_CHARS are left out with their reason."""
    numeric_names = [f.alias for f in plan.features if f.type in NUMERIC_TYPES]
    string_names = [f.alias for f in plan.features if f.type not in NUMERIC_TYPES]
    numeric_index = {name: j for j, name in enumerate(numeric_names)}
    width = len(numeric_names) + MAX_STRING_LEVELS * len(string_names)
    numeric = np.empty((max(capacity, 1), width), dtype=np.float32, order="F")
    strings: dict[str, list[tuple[Rows, np.ndarray]]] = {name: [] for name in string_names}
    targets: dict[str, list[np.ndarray]] = {name: [] for name in plan.targets}
    times = np.array([], dtype="datetime64[us]")
    quality = FrameQuality()
    excluded: dict[str, str] = {}
    qualified = {name.split(".", 1)[1]: name for name in plan.tables}
    rows_part: dict[str, int] = {}  # the targets' row counts come with every part: count them once
    for number, part in enumerate(parts):
        filled = 0
        part_times = []
        placed = np.zeros(len(times), dtype=bool)  # a later part: which of the first part's rows it gave
        for batch in part:
            rows = batch.num_rows
            stamps = batch.column(KEY_COLUMN).cast(pa.timestamp("us", tz="UTC")).to_numpy().astype("datetime64[us]")
            where: Rows
            if number == 0:
                if filled + rows > numeric.shape[0]:
                    grown = np.empty((max(2 * numeric.shape[0], filled + rows), width), np.float32, order="F")
                    grown[: numeric.shape[0]] = numeric
                    numeric = grown
                where = slice(filled, filled + rows)
                part_times.append(stamps)
            else:
                where = _place(times, stamps, placed, plan.pair)
            for name in batch.schema.names:
                if name in numeric_index:
                    segment = _floats(batch.column(name)).astype(np.float32)  # past float32's range: inf
                    quality.count_non_finite(name, segment)
                    numeric[where, numeric_index[name]] = segment
                elif name in strings:
                    column = batch.column(name)
                    longest = _longest_string(column)
                    if longest > MAX_STRING_CHARS:
                        excluded[name] = f"string values up to {longest:,} characters (free text, not a category)"
                        del strings[name]
                        continue
                    strings[name].append((where, column.to_numpy(zero_copy_only=False)))
                elif name in targets and number == 0:
                    values = np.array(_floats(batch.column(name)), dtype=np.float64)
                    quality.count_non_finite(name, values)
                    targets[name].append(values)
                elif name.startswith(ROWS_AT_TIME + FEATURE_SEPARATOR) and rows_part.setdefault(name, number) == number:
                    table = name[len(ROWS_AT_TIME + FEATURE_SEPARATOR) :]
                    quality.tables.setdefault(qualified.get(table, table), TableRows()).add(batch.column(name))
            filled += rows
        if number == 0:
            times = np.concatenate(part_times) if part_times else np.array([], dtype="datetime64[us]")
        elif not placed.all():
            raise DataError(f"pair {plan.pair}: a statement of its tables lacks {int((~placed).sum())} of its rows")
    return PairFrame(
        pair=plan.pair,
        times=times,
        numeric=numeric[: len(times)],
        numeric_names=numeric_names,
        strings={n: _in_order(pieces, len(times)) for n, pieces in strings.items()},
        targets=pd.DataFrame({n: np.concatenate(v) if v else np.array([]) for n, v in targets.items()}),
        quality=quality,
        excluded=excluded,
    )


Rows = slice | np.ndarray  # a batch's rows in the frame: a run of the first part, or positions


def _place(times: np.ndarray, stamps: np.ndarray, placed: np.ndarray, pair: str) -> np.ndarray:
    """Return the frame rows of a later part's batch (times: the first part's, sorted and unique),
    marking them in `placed`; a minute given twice means a table's join added rows."""
    positions = np.searchsorted(times, stamps)
    found = positions < len(times)
    found[found] = times[positions[found]] == stamps[found]
    if not found.all():
        raise DataError(f"pair {pair}: a statement of its tables returned minutes the targets lack")
    if placed[positions].any() or len(np.unique(positions)) != len(positions):
        raise DataError(f"pair {pair}: a table repeats interval_time values, so its join adds rows")
    placed[positions] = True
    return positions


def _in_order(pieces: list[tuple[Rows, np.ndarray]], rows: int) -> np.ndarray:
    """Return a string column's values in frame row order from its (rows, values) pieces."""
    if not pieces:
        return np.array([], dtype=object)
    out = np.empty(rows, dtype=object)
    for where, values in pieces:
        out[where] = values
    return out


def _longest_string(column: pa.Array | pa.ChunkedArray) -> int:
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return 0
    longest = pc.max(pc.utf8_length(column)).as_py()
    return int(longest or 0)


def _floats(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_boolean(column.type) or pa.types.is_decimal(column.type):
        column = column.cast(pa.float64())
    return column.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
