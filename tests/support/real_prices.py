"""A Parquet export built from real prices: hourly EUR/USD bars shipped by `backtesting`.

The product has to be right on prices it did not generate. The features are past-only
indicators of the close (returns over many windows, z-scores, ranges, volatility, lagged
returns, hour of day) plus persistent AR(1) noise columns; the targets follow the BQX
definition: bqx_45 is the 45-row log return and target_bqx45_hH is bqx_45 read H rows ahead.
The truth needs no planting: for H < 45 the target contains the last 45 - H returns, so the
momentum over 45 - H rows is informative; for H >= 45 nothing here should be. Needs the `test`
extra (`backtesting` ships the bars; nothing is downloaded).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bqx_queue.domain.universe import HORIZONS, TARGET_WINDOW, target_column

PAIR = "eurusd"
RETURN_WINDOWS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 35, 40, 45, 50, 60)
SCALE_WINDOWS = (10, 20, 50)
RANGE_WINDOWS = (5, 20, 50)
LAGS = (1, 2, 3, 4, 5)
WARM_UP = max(RETURN_WINDOWS + SCALE_WINDOWS + RANGE_WINDOWS + LAGS)  # rows before every feature is defined
NOISE_COLUMNS = 6
NOISE_PHI = 0.99


def eurusd_bars() -> pd.DataFrame:
    """Return the ~5,000 hourly EUR/USD bars (2017-04 to 2018-02) that backtesting ships."""
    from backtesting.test import EURUSD

    return EURUSD.copy()


def momentum_feature(horizon: int) -> str:
    """Return the feature name whose window shares 45 - horizon returns with the target."""
    return f"mom_{PAIR}__ret_{TARGET_WINDOW - horizon}"


def noise_features() -> list[str]:
    return [f"noise_{PAIR}__ar1_{i}" for i in range(NOISE_COLUMNS)]


def _ar1(n: int, phi: float, rng: np.random.Generator) -> np.ndarray:
    shocks = rng.normal(size=n)
    out = np.empty(n)
    out[0] = shocks[0] / np.sqrt(1 - phi * phi)
    for t in range(1, n):
        out[t] = phi * out[t - 1] + shocks[t]
    return out


def feature_tables(bars: pd.DataFrame, noise_seed: int) -> dict[str, pd.DataFrame]:
    """Return table name -> columns, each computed from rows at or before its own row."""
    close, high, low = bars["Close"], bars["High"], bars["Low"]
    log_close = np.log(close)
    one = log_close.diff()
    mom = {f"ret_{w}": log_close - log_close.shift(w) for w in RETURN_WINDOWS}
    reg = {f"zscore_{w}": (close - close.rolling(w).mean()) / close.rolling(w).std() for w in SCALE_WINDOWS}
    vol = {f"vol_{w}": one.rolling(w).std() for w in SCALE_WINDOWS}
    vol |= {f"range_{w}": (high.rolling(w).max() - low.rolling(w).min()) / close for w in RANGE_WINDOWS}
    vol["bar_range"] = (high - low) / close
    lag = {f"ret_1_lag_{k}": one.shift(k) for k in LAGS}
    rng = np.random.default_rng(noise_seed)
    noise = {name.split("__")[1]: _ar1(len(bars), NOISE_PHI, rng) for name in noise_features()}
    clock = {"hour_of_day": bars.index.hour.astype(np.int64)}
    return {
        f"{family}_{PAIR}": pd.DataFrame(columns, index=bars.index)
        for family, columns in (("mom", mom), ("reg", reg), ("vol", vol), ("lag", lag), ("noise", noise),
                                ("clock", clock))
    }  # fmt: skip


def targets_table(bars: pd.DataFrame) -> pd.DataFrame:
    """Return target_bqx45_hH = bqx_45 H rows ahead, bqx_45 the 45-row log return."""
    log_close = np.log(bars["Close"])
    bqx = log_close - log_close.shift(TARGET_WINDOW)
    return pd.DataFrame({target_column(h): bqx.shift(-h) for h in HORIZONS}, index=bars.index)


def build_real_price_export(folder: Path, noise_seed: int = 0) -> Path:
    """Write <folder>/bqx_features/<table>_eurusd.parquet and bqx_analytics/targets_eurusd.parquet
    (interval_time TIMESTAMP UTC), from the first row where every feature is defined; return folder."""
    bars = eurusd_bars()
    bars.index = pd.DatetimeIndex(bars.index).tz_localize("UTC").as_unit("us")
    tables = {("bqx_features", name): frame for name, frame in feature_tables(bars, noise_seed).items()}
    tables[("bqx_analytics", f"targets_{PAIR}")] = targets_table(bars)
    for (dataset, name), frame in tables.items():
        out = frame.iloc[WARM_UP:].rename_axis("interval_time").reset_index()
        (folder / dataset).mkdir(parents=True, exist_ok=True)
        out.to_parquet(folder / dataset / f"{name}.parquet", index=False)
    return folder
