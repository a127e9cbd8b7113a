"""A small Parquet export shaped like the real warehouse (<dataset>/<table>.parquet), built in a
second, for the tests of real-export hazards: each test damages one table the way real exports do.

Two pairs (eurusd, gbpusd) on weekdays, ROWS_PER_DAY one-minute bars a day. Each pair's log
returns are a random walk; `bqx_45` is the 45-row log return and `target_bqx45_hH` is `bqx_45`
H rows ahead (NULL past the end), as in the warehouse. Feature families reg_, mom_, vol_ per
pair and one shared mkt_ table. mom_{pair}.mom_30 (the last 30 returns) shares returns with the
h15 target, so the short horizons have something to find.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from bqx_queue.domain.universe import HORIZONS, TARGET_WINDOW, target_column

PAIRS = ("eurusd", "gbpusd")
ROWS_PER_DAY = 180
FIRST_DAY = date(2024, 1, 1)  # a Monday
FEATURES = "bqx_features"
ANALYTICS = "bqx_analytics"


def weekdays(count: int, skip: tuple[date, ...] = ()) -> list[date]:
    days, day = [], FIRST_DAY
    while len(days) < count:
        if day.weekday() < 5 and day not in skip:
            days.append(day)
        day += timedelta(days=1)
    return days


def minutes(days: list[date]) -> pd.DatetimeIndex:
    starts = pd.to_datetime(days).tz_localize("UTC") + pd.Timedelta(hours=8)
    offsets = pd.to_timedelta(np.arange(ROWS_PER_DAY), unit="min")
    return pd.DatetimeIndex([start + offset for start in starts for offset in offsets])


class Export:
    """The export folder, and table-level edits a test makes to it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, table: str) -> Path:
        dataset = ANALYTICS if table.startswith("targets_") else FEATURES
        return self.root / dataset / f"{table}.parquet"

    def read(self, table: str) -> pd.DataFrame:
        return pd.read_parquet(self.path(table))

    def write(self, table: str, frame: pd.DataFrame) -> None:
        self.path(table).parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(self.path(table), index=False)

    def change(self, table: str, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
        self.write(table, edit(self.read(table)))

    def remove(self, table: str) -> None:
        self.path(table).unlink()


def build_export(root: Path, days: int = 24, seed: int = 7, skip: tuple[date, ...] = ()) -> Export:
    """Write the export under root and return it."""
    export = Export(root)
    times = minutes(weekdays(days, skip))
    rng = np.random.default_rng(seed)
    for pair in PAIRS:
        returns = pd.Series(rng.normal(0, 1e-4, len(times)))
        bqx_45 = returns.rolling(TARGET_WINDOW, min_periods=1).sum()
        targets = {target_column(h): bqx_45.shift(-h) for h in HORIZONS}
        export.write(f"targets_{pair}", pd.DataFrame({"interval_time": times, **targets}))
        export.write(
            f"reg_{pair}",
            pd.DataFrame(
                {
                    "interval_time": times,
                    "ret_1": returns,
                    "ret_15": returns.rolling(15, min_periods=1).sum(),
                    "zscore_60": (returns - returns.rolling(60, min_periods=2).mean())
                    / returns.rolling(60, min_periods=2).std(),
                }
            ),
        )
        export.write(
            f"mom_{pair}",
            pd.DataFrame(
                {
                    "interval_time": times,
                    "mom_30": returns.rolling(30, min_periods=1).sum(),
                    "mom_90": returns.rolling(90, min_periods=1).sum(),
                }
            ),
        )
        export.write(
            f"vol_{pair}",
            pd.DataFrame({"interval_time": times, "vol_30": returns.rolling(30, min_periods=2).std()}),
        )
    export.write(
        "mkt_global",
        pd.DataFrame(
            {"interval_time": times, "noise_a": rng.normal(size=len(times)), "noise_b": rng.normal(size=len(times))}
        ),
    )
    return export
