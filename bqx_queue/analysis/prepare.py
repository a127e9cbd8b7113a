"""The feature matrix a pair's selection and models share: leakage guard, types, NULLs, scale.

Prepared once per pair and reused by every horizon and every subsample.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bqx_queue.domain import DataError
from bqx_queue.warehouse.catalog import FORWARD_LOOKING, KEY_COLUMN
from bqx_queue.warehouse.frame import MAX_STRING_LEVELS, PairFrame
from bqx_queue.warehouse.quality import FrameQuality
from bqx_queue.warehouse.sql import FEATURE_SEPARATOR

CHUNK_COLUMNS = 256
MIN_ROWS = 200


@dataclass
class PreparedPair:
    """Standardised features (NULL -> mean, i.e. 0) for the rows where every target is known."""

    pair: str
    matrix: np.ndarray  # (all rows, features) float32 view; use `rows` to pick usable rows
    features: list[str]
    rows: np.ndarray  # indices of rows whose targets are all present, in time order
    targets: pd.DataFrame  # targets of the usable rows, one column per target
    times: np.ndarray
    exclusions: dict[str, str] = field(default_factory=dict)  # feature -> why it was left out
    tested: int = 0  # features that reached preparation (before exclusions)
    failed_targets: dict[str, str] = field(default_factory=dict)  # target -> why its horizon cannot run


def _forward_looking(name: str) -> bool:
    return bool(FORWARD_LOOKING.match(name.split(FEATURE_SEPARATOR)[-1]))


def prepare_pair(frame: PairFrame, exclusions: dict[str, str] | None = None) -> PreparedPair:
    """Return the prepared pair. The frame's matrix is standardised and compacted in place.

    Left out, each with its reason: forward-looking columns, all-NULL and constant columns,
    exact duplicates (the first copy stays), and strings with more than 8 distinct values
    (strings with fewer are one-hot encoded).
    """
    excluded = dict(exclusions or {})
    matrix = frame.numeric
    names: list[str] = []
    seen: dict[bytes, str] = {}
    write = 0
    n_numeric = len(frame.numeric_names)
    for start in range(0, n_numeric, CHUNK_COLUMNS):
        chunk = matrix[:, start : start + CHUNK_COLUMNS]
        present = ~np.isnan(chunk)
        counts = present.sum(axis=0)
        sums = np.where(present, chunk, 0).sum(axis=0, dtype=np.float64)
        means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        for offset, name in enumerate(frame.numeric_names[start : start + CHUNK_COLUMNS]):
            column = matrix[:, start + offset]
            reason = _column_problem(name, column, int(counts[offset]), seen)
            if reason:
                excluded[name] = reason
                continue
            centred = np.nan_to_num(column - np.float32(means[offset]), nan=0.0)
            scale = float(np.sqrt(np.square(centred, dtype=np.float64).sum() / counts[offset]))
            matrix[:, write] = centred / np.float32(scale)
            names.append(name)
            write += 1
    for name, values in frame.strings.items():
        if _forward_looking(name):
            excluded[name] = "forward-looking column (leaks the target)"
            continue
        levels = pd.unique(values[pd.notna(values)])
        if len(levels) == 0:
            excluded[name] = "all NULL"
        elif len(levels) == 1:
            excluded[name] = "constant"
        elif len(levels) > MAX_STRING_LEVELS:
            excluded[name] = f"string with {len(levels)} distinct values (not encoded)"
        else:
            for level in sorted(levels, key=str):
                indicator = (values == level).astype(np.float32)
                indicator -= indicator.mean()
                matrix[:, write] = indicator / max(float(indicator.std()), 1e-12)
                names.append(f"{name}={level}")
                write += 1
    if not names:
        raise DataError(f"pair {frame.pair}: no usable feature columns")
    targets = frame.targets
    failed_targets = target_problems(targets)
    if len(failed_targets) == len(targets.columns):
        raise DataError(f"pair {frame.pair}: every horizon failed: " + "; ".join(failed_targets.values()))
    usable = [column for column in targets.columns if column not in failed_targets]
    # a failed target is left out of "rows with every target": its horizon fails, the others go on
    rows = np.flatnonzero(targets[usable].notna().all(axis=1).to_numpy())
    if len(rows) < MIN_ROWS:
        raise DataError(f"pair {frame.pair}: only {len(rows)} rows have every target (need {MIN_ROWS})")
    return PreparedPair(
        pair=frame.pair,
        matrix=matrix[:, :write],
        features=names,
        rows=rows,
        targets=targets.iloc[rows].reset_index(drop=True),
        times=frame.times,
        exclusions=excluded,
        tested=len(frame.numeric_names) + len(frame.strings) + len(exclusions or {}),
        failed_targets=failed_targets,
    )


def target_problems(targets: pd.DataFrame) -> dict[str, str]:
    """Return target column -> why its horizon cannot be analysed (NULL or constant on every row)."""
    problems = {}
    for column in targets.columns:
        values = targets[column].dropna()
        if values.empty:
            problems[column] = f"target {column} is NULL on every sampled row"
        elif values.min() == values.max():
            problems[column] = f"target {column} is constant ({values.iloc[0]}) on every sampled row"
    return problems


def _column_problem(name: str, column: np.ndarray, count: int, seen: dict[bytes, str]) -> str | None:
    if _forward_looking(name):
        return "forward-looking column (leaks the target)"
    if count == 0:
        return "all NULL"
    present = column[~np.isnan(column)]
    if present.min() == present.max():
        return "constant"
    digest = hashlib.blake2b(column.tobytes(), digest_size=16).digest()
    if digest in seen:
        return f"duplicate of {seen[digest]}"
    seen[digest] = name
    return None


def frame_from_pandas(df: pd.DataFrame, pair: str, targets: list[str]) -> PairFrame:
    """Return a PairFrame from a DataFrame such as query_pair_all_horizons gives."""
    missing = [t for t in targets if t not in df.columns]
    if missing:
        raise DataError(f"pair {pair}: DataFrame lacks target columns {missing}")
    feature_columns = [c for c in df.columns if c != KEY_COLUMN and c not in targets]
    numeric_names = [
        c for c in feature_columns if pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])
    ]
    string_names = [c for c in feature_columns if c not in numeric_names]
    matrix = np.empty((len(df), len(numeric_names) + MAX_STRING_LEVELS * len(string_names)), np.float32, order="F")
    quality = FrameQuality()
    for j, name in enumerate(numeric_names):
        matrix[:, j] = df[name].to_numpy(dtype=np.float32, na_value=np.nan)
        quality.count_non_finite(name, matrix[:, j])
    if KEY_COLUMN in df:
        times = pd.to_datetime(df[KEY_COLUMN], utc=True).dt.tz_convert(None).to_numpy().astype("datetime64[us]")
    else:  # rows are taken to be consecutive minutes
        times = np.arange(len(df)).astype("datetime64[m]").astype("datetime64[us]")
    return PairFrame(
        pair=pair,
        times=times,
        numeric=matrix,
        numeric_names=numeric_names,
        strings={name: df[name].astype(object).where(df[name].notna(), None).to_numpy() for name in string_names},
        targets=df[targets].astype(np.float64).replace([np.inf, -np.inf], np.nan).reset_index(drop=True),
        quality=quality,
    )
