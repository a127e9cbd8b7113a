"""The product beside tree-based all-relevant selectors, on the same frames (issue 17, part 6).

    ../peers-venv/bin/python bench/peers.py --quick     # every tool on small frames, a few minutes
    ../peers-venv/bin/python bench/peers.py             # the three frames, about an hour at one thread
    ../peers-venv/bin/python bench/peers.py --frames nonlinear --tools bqx,grootcv

The peers are bench dependencies, not the product's: they live in their own venvs outside the repo
(the commands are printed at start); a peer that does not import is skipped with one line.
boruta-quant needs Python 3.12, so it runs in its own venv through a subprocess of this file
(`--boruta-quant-worker`), reading the frame from a Parquet file.

Frames (`--frames`, default all three):
- nonlinear: generated here (numpy, own seeds): one pair, ~150 features of which 7 are planted:
  a linear control and 6 that move the drift only through |x| > 1 (a threshold), x^2, a product
  x*y (x and y planted) and a gate x*sign(y) (x and y planted); every other column is persistent
  AR(1) noise (phi 0.95-0.999). 60 weekdays of 1-minute returns; the targets follow the product's
  definition (target_bqx45_hH = the 45-row percent change of the close read H rows ahead, as
  `_targets` in bqx_queue/warehouse/synthetic.py computes it). Every third row is kept.
- linear: the product's own synthetic warehouse (`build_warehouse`, one pair, 60 days), read with
  `query_pair_all_horizons`, every third row kept; the truth is its manifest (planted features
  informative at the horizon; noise = every column the manifest does not name). A warehouse that
  plants nonlinear kinds as well names each feature's shape, and those are counted as nonlinear.
- real: the Parquet export `tests/support/real_prices.py` builds from 5,000 hourly EUR/USD bars;
  the truth is that of tests/test_real_prices.py (ret_30 at h15, ret_15 at h30, nothing past 45
  rows; the noise columns are ar1_*; the other indicators count as "other").

What each tool sees: every frame is written as a Parquet export and read back through
`query_pair_all_horizons`, so all tools get the same rows, in time order. The peers fit on the
first 75% of them (label: target > 0; rows without a target dropped; non-numeric, constant,
all-NULL and duplicate columns dropped, NULLs filled with the column mean). The product gets the
whole frame: `run_stability_selection_local` selects on the first 75% less its purge gap (the
same rows as the peers, less the last horizon + 45 rows and 1%), and `process_pair_all_horizons`
on the export runs the whole pair at every horizon, as a run does (selection on the first 75% less
the longest horizon + 45 rows and 1%), and confirms on the held-out last 25%, rows no peer sees.
Everything runs on one thread.

`--quick` builds the two planted frames at 10 days x 40 features, runs h15 only and gives the peers
smaller budgets (about two minutes in all); the full run benches h15 on the planted frames and
h15, h30 and h60 on real prices. `--workdir` keeps the frames somewhere other than the temp folder.
"""

from __future__ import annotations

import os

# one core: set before numpy, LightGBM, numba or joblib start their pools (a subprocess inherits it)
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS", "LOKY_MAX_CPU_COUNT"):  # fmt: skip
    os.environ[_name] = "1"
os.environ["TQDM_DISABLE"] = "1"  # arfs wraps its folds in tqdm

import argparse  # noqa: E402
import contextlib  # noqa: E402
import importlib.metadata  # noqa: E402
import importlib.util  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PEERS_VENV = REPO.parent / "peers-venv"
PEERS_VENV_312 = REPO.parent / "peers-venv-py312"
PAIR = "eurusd"
HORIZONS = (15, 30, 45, 60, 75, 90, 105)  # the product's targets, target_bqx45_h{H}
TARGET_WINDOW = 45
SEPARATOR = "__"  # a frame's feature columns are <table>__<column>
TRAIN_FRACTION = 0.75  # the peers fit on the first 75% of the rows, as the product selects on them
TOOLS = ("bqx", "borutapy", "grootcv", "leshy", "boruta-quant", "knockpy")


def setup_commands() -> list[str]:
    """Return the commands that create the peers' venvs (printed at start)."""
    return [
        f"PYENV_VERSION=3.11.7 python3.11 -m venv {PEERS_VENV}",
        f"{PEERS_VENV}/bin/pip install -e {REPO} 'pandas<3' Boruta==0.4.3 arfs==3.0.0 knockpy==1.3.5 cvxpy backtesting",
        f"PYENV_VERSION=3.12.1 python3.12 -m venv {PEERS_VENV_312}",
        f"{PEERS_VENV_312}/bin/pip install boruta-quant==0.1.1 lightgbm pyarrow",
        f"{PEERS_VENV}/bin/python {REPO}/bench/peers.py --quick",
    ]


# ----------------------------------------------------------------------------------------------
# budgets: the peers' iterations, cut to fit an hour at one thread (the cut is printed per tool)


@dataclass(frozen=True)
class Budget:
    boruta_trees: int
    boruta_iter: int
    leshy_trees: int
    leshy_iter: int
    groot_splits: int
    quant_trials: int
    quant_splits: int
    quant_repeats: int
    quant_trees: int


FULL = Budget(boruta_trees=100, boruta_iter=30, leshy_trees=100, leshy_iter=15, groot_splits=5,
              quant_trials=4, quant_splits=3, quant_repeats=3, quant_trees=100)  # fmt: skip
QUICK = Budget(boruta_trees=50, boruta_iter=15, leshy_trees=50, leshy_iter=10, groot_splits=3,
               quant_trials=3, quant_splits=2, quant_repeats=2, quant_trees=50)  # fmt: skip


# ----------------------------------------------------------------------------------------------
# frames


@dataclass
class Truth:
    """What is true at one horizon: planted linear and nonlinear features (name -> kind), noise."""

    linear: list[str]
    nonlinear: dict[str, str]
    noise: set[str]


@dataclass
class Frame:
    name: str
    description: str
    export: Path  # the Parquet export the product reads
    max_rows: int  # the product's max_rows: above the export's rows, so it reads every day
    horizons: list[int]
    truth: dict[int, Truth]
    minutes_per_row: float  # of the original series, before any sub-sampling
    step: int  # every step-th row was kept
    df: pd.DataFrame = field(default_factory=pd.DataFrame)  # the frame as the product reads it


def _ar1(rng: np.random.Generator, phi: float, n: int) -> np.ndarray:
    """Return a unit-variance AR(1) series of length n."""
    from scipy.signal import lfilter

    shocks = rng.standard_normal(n)
    series = lfilter([math.sqrt(1 - phi * phi)], [1, -phi], shocks)
    series[0] = shocks[0]
    return series


def _targets(close: np.ndarray) -> dict[str, np.ndarray]:
    """Return target_bqx45_hH = LEAD(bqx_45, H), bqx_45 = the 45-row percent change of the close."""
    bqx = np.full(len(close), np.nan)
    bqx[TARGET_WINDOW:] = (close[TARGET_WINDOW:] - close[:-TARGET_WINDOW]) / close[:-TARGET_WINDOW] * 100
    out = {}
    for h in HORIZONS:
        lead = np.full(len(close), np.nan)
        lead[:-h] = bqx[h:]
        out[f"target_bqx45_h{h}"] = lead
    return out


def write_export(df: pd.DataFrame, folder: Path, pair: str = PAIR) -> Path:
    """Write a frame (interval_time, <table>__<column> features, target_* columns) as a Parquet
    export the product reads: <folder>/bqx_features/<table>.parquet, bqx_analytics/targets_<pair>."""
    key = pd.DatetimeIndex(df["interval_time"]).tz_convert("UTC").as_unit("us")
    tables: dict[tuple[str, str], dict[str, Any]] = {}
    for column in df.columns:
        if column == "interval_time":
            continue
        if column.startswith("target_"):
            tables.setdefault(("bqx_analytics", f"targets_{pair}"), {})[column] = df[column].to_numpy()
        else:
            table, name = column.split(SEPARATOR, 1)
            tables.setdefault(("bqx_features", table), {})[name] = df[column].to_numpy()
    for (dataset, table), columns in tables.items():
        (folder / dataset).mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame({"interval_time": key, **columns})
        frame.to_parquet(folder / dataset / f"{table}.parquet", index=False)
    return folder


NONLINEAR_KINDS = {  # name -> kind as printed: threshold |x| > 1, x^2, product x*y, gate x*sign(y)
    "linear": "linear",
    "threshold": "threshold",
    "square": "square",
    "product_x": "product x",
    "product_y": "product y",
    "gate_x": "gate x",
    "gate_y": "gate y",
}
# drift loadings of the five terms (linear, threshold, square, product, gate): the interactions
# are given more weight, since a tree needs two splits to see them
LOADINGS = (1.0, 1.0, 1.0, 1.4, 2.0)
SIGNAL_R2 = 0.5  # share of the 45-row window sum's variance that the drift explains
MINUTE_VOL = 1e-4
PLANTED_PHI = 0.99


def nonlinear_frame(folder: Path, days: int, features: int, seed: int, horizons: list[int]) -> Frame:
    """Return the nonlinear planted frame: 7 planted features, features - 7 AR(1) noise columns."""
    n = days * 1440
    rng = np.random.default_rng([seed, 2017])
    x = {name: _ar1(rng, PLANTED_PHI, n) for name in NONLINEAR_KINDS}
    p_tail = math.erfc(1 / math.sqrt(2))  # P(|x| > 1)
    terms = (
        x["linear"],
        ((np.abs(x["threshold"]) > 1) - p_tail) / math.sqrt(p_tail * (1 - p_tail)),
        (x["square"] ** 2 - 1) / math.sqrt(2),
        x["product_x"] * x["product_y"],
        x["gate_x"] * np.sign(x["gate_y"]),
    )  # each mean 0, variance 1, and no linear correlation with any feature but the first
    drift = sum(w * t for w, t in zip(LOADINGS, terms, strict=True))
    window = np.convolve(drift, np.ones(TARGET_WINDOW), "valid")
    scale = math.sqrt(SIGNAL_R2 / (1 - SIGNAL_R2) * TARGET_WINDOW * MINUTE_VOL**2 / window.var())
    returns = MINUTE_VOL * rng.standard_normal(n)
    returns[1:] += scale * drift[:-1]  # the drift at t moves the return from t to t+1
    close = 1.2 * np.exp(np.cumsum(returns))
    noise_count = features - len(NONLINEAR_KINDS)
    noise = [_ar1(rng, phi, n) for phi in rng.uniform(0.95, 0.999, noise_count)]
    # neutral names at random places: 10 tables f00_eurusd..f09_eurusd, columns x000..
    order = rng.permutation(features)
    tables = 10
    aliases = [f"f{i % tables:02d}_{PAIR}{SEPARATOR}x{i:03d}" for i in range(features)]
    values = list(x.values()) + noise
    kinds = list(NONLINEAR_KINDS) + ["noise"] * noise_count
    days_index = pd.bdate_range("2021-01-04", periods=days)
    times = pd.DatetimeIndex((days_index.values[:, None] + np.arange(1440) * np.timedelta64(1, "m")).ravel(), tz="UTC")
    columns: dict[str, Any] = {"interval_time": times}
    named: dict[str, str] = {}
    for slot, series, kind in zip(order, values, kinds, strict=True):
        columns[aliases[slot]] = series.astype(np.float32)
        named[aliases[slot]] = kind
    columns |= _targets(close)
    full = pd.DataFrame(columns)
    step = 3
    export = write_export(full.iloc[::step].reset_index(drop=True), folder / "nonlinear-export")
    linear = [a for a, k in named.items() if k == "linear"]
    nonlinear = {a: NONLINEAR_KINDS[k] for a, k in named.items() if k not in ("linear", "noise")}
    noise_names = {a for a, k in named.items() if k == "noise"}
    truth = {h: Truth(linear, nonlinear, noise_names) for h in horizons}
    description = (
        f"nonlinear planted (generated here, seed {seed}): {days} weekdays of 1-minute rows, every third kept; "
        f"{features} features: 1 linear, 6 nonlinear (threshold, square, product x*y, gate x*sign(y)), "
        f"{noise_count} AR(1) noise (phi 0.95-0.999); drift R^2 {SIGNAL_R2} of the 45-row sum"
    )
    return Frame("nonlinear", description, export, len(full) + 1, horizons, truth, 1.0, step)


def _strings_in(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_strings_in(k) | _strings_in(v) for k, v in value.items())) if value else set()
    if isinstance(value, list | tuple):
        return set().union(*(_strings_in(v) for v in value)) if value else set()
    return set()


def linear_frame(folder: Path, days: int, features: int, seed: int, horizons: list[int]) -> Frame:
    """Return a frame from the product's synthetic warehouse, every third row, with its manifest's truth."""
    from bqx_queue.config import load_settings
    from bqx_queue.warehouse.source import open_source, query_pair_all_horizons
    from bqx_queue.warehouse.synthetic import WarehouseSpec, build_warehouse

    path = folder / "linear.duckdb"
    manifest = build_warehouse(path, WarehouseSpec(pairs=(PAIR,), days=days, features_per_pair=features, seed=seed))
    settings = load_settings(warehouse=path, runs_dir=folder / "runs", max_rows=days * 1440 + 1, extract_cache=False)
    df = query_pair_all_horizons(PAIR, settings, source=open_source(settings, threads=1))
    step = 3
    export = write_export(df.iloc[::step].reset_index(drop=True), folder / "linear-export")
    entry = manifest["pairs"][PAIR]
    named = _strings_in(entry)  # every alias the manifest names is planted (or leaky), never noise
    features_in_frame = [c for c in df.columns if SEPARATOR in c]
    noise = {c for c in features_in_frame if c not in named}
    # a warehouse that plants nonlinear kinds too names each planted feature's shape; one that
    # does not plants linear signal only
    shapes = entry.get("shapes", {})
    truth = {}
    for h in horizons:
        informative = entry["horizons"][str(h)]["informative"]
        linear = [a for a in informative if shapes.get(a, "linear") == "linear"]
        truth[h] = Truth(linear, {a: shapes[a] for a in informative if a not in linear}, noise)
    planted = entry["planted"]
    nonlinear = [a for a in planted if shapes.get(a, "linear") != "linear"]
    kinds = ", ".join(sorted({shapes[a] for a in nonlinear}))
    also = f" and {len(nonlinear)} nonlinear (this warehouse plants those too: {kinds})" if nonlinear else ""
    description = (
        f"linear planted (the product's synthetic warehouse, seed {seed}): {days} days of 1-minute rows, every "
        f"third kept; {len(features_in_frame)} feature columns, {len(planted) - len(nonlinear)} planted linear"
        f"{also} (manifest: {', '.join(planted)})"
    )
    return Frame("linear", description, export, days * 1440 + 1, horizons, truth, 1.0, step)


def real_frame(folder: Path, horizons: list[int]) -> Frame:
    """Return the real-price export of tests/support/real_prices.py (noise seed 0) and its truth."""
    sys.path.insert(0, str(REPO / "tests"))
    from support.real_prices import build_real_price_export, momentum_feature, noise_features

    export = build_real_price_export(folder / "real-export", noise_seed=0)
    noise = set(noise_features())
    truth = {h: Truth([momentum_feature(h)] if h < TARGET_WINDOW else [], {}, noise) for h in horizons}
    description = (
        "real prices (tests/support/real_prices.py, noise seed 0): ~5,000 hourly EUR/USD bars, 40 features: "
        "34 past-only indicators, hour of day, 6 AR(1) noise (phi 0.99); true: ret_{45-H} for H < 45, else none"
    )
    return Frame("real", description, export, 10_000, horizons, truth, 60.0, 1)


def read_back(frame: Frame, folder: Path, seed: int) -> Frame:
    """Return the frame with the rows the product reads from its export (query_pair_all_horizons)."""
    from bqx_queue.warehouse.source import open_source, query_pair_all_horizons

    settings = product_settings(frame, folder, seed)
    frame.df = query_pair_all_horizons(PAIR, settings, source=open_source(settings, threads=1))
    return frame


# ----------------------------------------------------------------------------------------------
# what the peers get


@dataclass
class PeerData:
    X: pd.DataFrame  # float64, no NULL
    y: pd.Series  # 1 when the target is above 0
    times: pd.DatetimeIndex
    dropped: dict[str, str]  # column -> why the peers do not get it


def peer_data(frame: Frame, horizon: int) -> PeerData:
    """Return the first 75% of the frame's rows as the peers get them, for one horizon."""
    df = frame.df
    train = df.iloc[: int(len(df) * TRAIN_FRACTION)]
    target = train[f"target_bqx45_h{horizon}"]
    train = train[target.notna().to_numpy()]
    dropped: dict[str, str] = {}
    kept: dict[str, np.ndarray] = {}
    seen: dict[bytes, str] = {}
    for column in df.columns:
        if column == "interval_time" or "target_" in column.lower():  # forward-looking, as the product rules
            continue
        if not pd.api.types.is_numeric_dtype(df[column]):
            dropped[column] = "not numeric"
            continue
        values = train[column].to_numpy(dtype=np.float64, na_value=np.nan)
        if np.isnan(values).all():
            dropped[column] = "all NULL"
            continue
        values = np.where(np.isnan(values), np.nanmean(values), values)
        if values.std() == 0:
            dropped[column] = "constant"
            continue
        digest = values.tobytes()
        if digest in seen:
            dropped[column] = f"duplicate of {seen[digest]}"
            continue
        seen[digest] = column
        kept[column] = values
    X = pd.DataFrame(kept, index=train.index)
    y = (train[f"target_bqx45_h{horizon}"] > 0).astype(np.int64).rename("up")
    return PeerData(X, y, pd.DatetimeIndex(train["interval_time"]), dropped)


# ----------------------------------------------------------------------------------------------
# tools


@dataclass
class Outcome:
    tool: str
    seconds: float | None  # the fit alone; None when skipped or failed
    selected: list[str] | None
    settings: str
    note: str = ""
    patches: list[str] = field(default_factory=list)  # what was patched at run time for this fit


def product_settings(frame: Frame, folder: Path, seed: int) -> Any:
    """Return the product's settings for a frame: its defaults (every horizon, as a run does and as
    tests/test_real_prices.py runs the real export), with max_rows above the frame's rows."""
    from bqx_queue.config import load_settings

    return load_settings(
        warehouse=frame.export, runs_dir=folder / f"runs-{frame.name}", max_rows=frame.max_rows, seed=seed,
        extract_cache=False,
    )  # fmt: skip


def _product_settings_text(settings: Any) -> str:
    method = getattr(settings, "selection_method", "?")
    return (
        f"defaults: selection_method {method}, B {settings.selection_pairs} complementary pairs on "
        f"{settings.selection_blocks} time blocks, threshold {settings.selection_threshold}, "
        f"expected_false_max {settings.expected_false_max}, seed {settings.seed}"
    )


def run_product_stable(frame: Frame, horizon: int, folder: Path, seed: int) -> Outcome:
    """Return the product's stable features at one horizon (run_stability_selection_local)."""
    from bqx_queue.analysis.pair import run_stability_selection_local

    settings = product_settings(frame, folder, seed)
    started = time.perf_counter()
    selection = run_stability_selection_local(frame.df, horizon, settings)
    seconds = time.perf_counter() - started
    text = f"{_product_settings_text(settings)}; q {selection.q}, bound {selection.error_bound:.2f} falsely stable"
    return Outcome("bqx stable", seconds, list(selection.stable_features), text)


def run_product_pair(frame: Frame, folder: Path, seed: int) -> tuple[float, dict[str, Any], str]:
    """Return the whole pair's wall seconds, its summary and settings (process_pair_all_horizons)."""
    from bqx_queue.runner.pair import process_pair_all_horizons
    from bqx_queue.warehouse.source import open_source

    settings = product_settings(frame, folder, seed)
    started = time.perf_counter()
    result = process_pair_all_horizons(PAIR, settings, source=open_source(settings, threads=1), threads=1)
    seconds = time.perf_counter() - started
    text = (
        f"{_product_settings_text(settings)}; LightGBM up to {settings.lgbm_rounds} rounds (early stopping after "
        f"{settings.lgbm_patience}), {settings.cv_folds} walk-forward folds on the last "
        f"{settings.holdout_fraction:.0%}, confirmation alpha {settings.confirmation_alpha} (Holm); the whole pair: "
        f"{len(settings.horizons)} horizons, query, models, SHAP, substitutes, eras"
    )
    return seconds, result.summary.model_dump(mode="json"), text


def product_confirmed(summary: dict[str, Any], horizon: int, seconds: float, text: str) -> Outcome:
    entry = summary.get("horizons", {}).get(str(horizon), {})
    verdict = entry.get("confirmation", {})
    note = f"s: the whole pair, {len(summary.get('horizons', {}))} horizons"
    if entry.get("status") == "failed" or not verdict:
        note += f"; horizon not evaluated: {entry.get('reason') or entry.get('status') or 'no confirmation'}"
    elif verdict.get("flagged"):
        note += f"; flagged: {verdict.get('flag_reason')}"
    return Outcome("bqx confirmed", seconds, list(verdict.get("confirmed", [])), text, note)


def _lgbm(trees: int | None, seed: int) -> Any:
    from lightgbm import LGBMClassifier

    params: dict[str, Any] = {"n_jobs": 1, "verbose": -1, "random_state": seed}
    if trees is not None:
        params["n_estimators"] = trees
    return LGBMClassifier(**params)


def run_borutapy(data: PeerData, budget: Budget, seed: int) -> Outcome:
    from boruta import BorutaPy

    selector = BorutaPy(
        _lgbm(None, seed), n_estimators=budget.boruta_trees, max_iter=budget.boruta_iter, random_state=seed
    )
    started = time.perf_counter()
    selector.fit(data.X.to_numpy(), data.y.to_numpy())
    seconds = time.perf_counter() - started
    text = (
        f"Boruta {importlib.metadata.version('Boruta')}, LGBMClassifier (LightGBM defaults, 1 thread), "
        f"n_estimators {budget.boruta_trees} (cut from 1000), max_iter {budget.boruta_iter} (cut from 100), "
        "perc 100, alpha 0.05, two_step; split importance in sample, shadows by row shuffling; counted: confirmed"
    )
    selected, note = _confirmed(data, selector)
    return Outcome("BorutaPy", seconds, selected, text, note)


def _confirmed(data: PeerData, selector: Any) -> tuple[list[str], str]:
    """Return the confirmed columns (ranking_ 1) of a Boruta-style selector, and a note on the
    tentative ones. BorutaPy 0.4.3 and Leshy set support_ to every column when none is rejected,
    tentative ones included, so support_ is not read."""
    ranking = np.asarray(selector.ranking_)
    selected = list(data.X.columns[ranking == 1])
    note = f"{int((ranking == 2).sum())} tentative not counted"
    if int(np.asarray(selector.support_).sum()) != len(selected):
        note += f"; support_ holds {int(np.asarray(selector.support_).sum())} (every column when none is rejected)"
    return selected, note


def run_grootcv(data: PeerData, budget: Budget, seed: int) -> Outcome:
    from arfs.feature_selection.allrelevant import GrootCV
    from sklearn.model_selection import TimeSeriesSplit

    np.random.seed(seed)  # GrootCV shuffles its shadows with numpy's global generator
    selector = GrootCV(objective="binary", cutoff=1, folds=TimeSeriesSplit(n_splits=budget.groot_splits), n_jobs=1)
    started = time.perf_counter()
    selector.fit(data.X.copy(), data.y.copy())
    seconds = time.perf_counter() - started
    text = (
        f"arfs {importlib.metadata.version('arfs')} GrootCV, objective binary, cutoff 1, "
        f"folds=TimeSeriesSplit({budget.groot_splits}) (time-ordered; n_iter does not apply with folds), "
        "LightGBM defaults with early stopping 20, 1 thread; SHAP importance on the training rows"
    )
    return Outcome("arfs GrootCV", seconds, list(selector.selected_features_), text)


def run_leshy(data: PeerData, budget: Budget, seed: int) -> Outcome:
    from arfs.feature_selection.allrelevant import Leshy

    np.random.seed(seed)
    selector = Leshy(
        _lgbm(None, seed), n_estimators=budget.leshy_trees, max_iter=budget.leshy_iter, random_state=seed,
        importance="shap", verbose=0,
    )  # fmt: skip
    started = time.perf_counter()
    selector.fit(data.X.copy(), data.y.copy())
    seconds = time.perf_counter() - started
    text = (
        f"arfs {importlib.metadata.version('arfs')} Leshy, LGBMClassifier (1 thread), n_estimators "
        f"{budget.leshy_trees} (cut from 1000), max_iter {budget.leshy_iter} (cut from 100), perc 90, alpha 0.05, "
        "importance shap (on a shuffled 25% split of the rows); counted: confirmed"
    )
    selected, note = _confirmed(data, selector)
    return Outcome("arfs Leshy", seconds, selected, text, note)


def run_knockpy(data: PeerData, budget: Budget, seed: int) -> Outcome:
    from knockpy import KnockoffFilter

    np.random.seed(seed)
    kfilter = KnockoffFilter(
        ksampler="gaussian", fstat="randomforest", knockoff_kwargs={"method": "sdp"},
        fstat_kwargs={"n_jobs": 1, "random_state": seed},
    )  # fmt: skip
    started = time.perf_counter()
    rejections = kfilter.forward(X=data.X.to_numpy(), y=data.y.to_numpy(), fdr=0.1)
    seconds = time.perf_counter() - started
    selected = list(data.X.columns[np.asarray(rejections, dtype=bool)])
    text = (
        f"knockpy {importlib.metadata.version('knockpy')}, Gaussian model-X knockoffs, S by SDP (cvxpy "
        f"{importlib.metadata.version('cvxpy')}), Ledoit-Wolf covariance, random-forest statistic "
        "(knockpy's default 10 trees, swap importance, 1 thread), FDR 0.1; no cut"
    )
    return Outcome("knockpy", seconds, selected, text)


def _purge_days(frame: Frame, horizon: int) -> int:
    """Return whole days covering the longest calendar span of one label (horizon + 45 rows of the
    original series, weekends included), boruta-quant's unit for purge and embargo."""
    times = pd.DatetimeIndex(frame.df["interval_time"])
    rows = math.ceil((horizon + TARGET_WINDOW) / frame.step)
    span = (times[rows:] - times[:-rows]).max()
    return max(1, math.ceil(span / pd.Timedelta(days=1)))


def run_boruta_quant(data: PeerData, budget: Budget, seed: int, frame: Frame, horizon: int, python: Path) -> Outcome:
    """Run boruta-quant in its Python 3.12 venv through a subprocess of this file."""
    purge = _purge_days(frame, horizon)
    config = {
        "seed": seed, "trials": budget.quant_trials, "splits": budget.quant_splits,
        "repeats": budget.quant_repeats, "trees": budget.quant_trees, "purge_days": purge,
    }  # fmt: skip
    text = (
        f"boruta-quant (Python 3.12 subprocess), LGBMClassifier n_estimators {budget.quant_trees} (1 thread), "
        f"n_trials {budget.quant_trials} (README example 20), PurgedTemporalCV {budget.quant_splits} splits "
        f"(README 5), purge = embargo = {purge} day(s) (one label's span), test_size_ratio 0.2, permutation "
        f"importance on the validation rows, n_repeats {budget.quant_repeats} (README 10), AUC, percentile 100, "
        "alpha 0.05, two_step, shadows RANDOM"
    )
    with tempfile.TemporaryDirectory(prefix="bqx-peers-") as scratch:
        frame_file, out_file = Path(scratch) / "frame.parquet", Path(scratch) / "out.json"
        table = data.X.copy()
        table["__label__"] = data.y.to_numpy()
        table["__time__"] = data.times
        table.reset_index(drop=True).to_parquet(frame_file, index=False)
        command = [str(python), str(Path(__file__).resolve()), "--boruta-quant-worker", str(frame_file),
                   str(out_file), json.dumps(config)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=3 * 3600)
        if done.returncode != 0 or not out_file.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return Outcome("boruta-quant", None, None, text, f"failed (exit {done.returncode}): {tail[0]}")
        result = json.loads(out_file.read_text())
    text = text.replace("boruta-quant (", f"boruta-quant {result['version']} (")
    patches = [f"boruta-quant {result['version']}: {patch}" for patch in result["patches"]]
    note = f"{result['tentative']} tentative not counted"
    return Outcome("boruta-quant", result["seconds"], result["accepted"], text, note, patches)


def boruta_quant_worker(frame_file: str, out_file: str, config_json: str) -> int:
    """Fit boruta-quant on the Parquet frame and write what it accepted (runs under Python 3.12)."""
    try:
        import boruta_quant
        import boruta_quant.oracle.permutation as permutation_module
        from boruta_quant import BorutaSelector, BorutaSelectorConfig
        from boruta_quant.metrics import auc_score
        from boruta_quant.oracle import PermutationImportanceOracle
        from boruta_quant.temporal import PurgedCVConfig, PurgedTemporalCV
    except ImportError as exc:
        print(f"boruta-quant is not importable here ({sys.executable}): {exc}", file=sys.stderr)
        return 3
    config = json.loads(config_json)
    patches = []
    original = permutation_module.permutation_importance

    def one_core(*args: Any, **kwargs: Any) -> Any:
        kwargs["n_jobs"] = 1
        return original(*args, **kwargs)

    # its oracle asks sklearn's permutation_importance for n_jobs=-1 (every core)
    permutation_module.permutation_importance = one_core
    patches.append("PermutationImportanceOracle: permutation_importance(n_jobs=-1) -> n_jobs=1 (one core)")

    def auc_scorer(estimator: Any, X: Any, y: Any) -> float:
        return auc_score(np.asarray(y), np.asarray(estimator.predict_proba(X)[:, 1]))

    # its auc_scorer is beartype-checked for ndarrays, and permutation_importance hands a scorer the
    # validation rows as a DataFrame and a Series (the README example's failure): convert the arguments
    patches.append(
        "scorer: boruta_quant.metrics.auc_score(np.asarray(y), predict_proba(X)[:, 1]) in place of its auc_scorer, "
        "whose beartype check refuses the DataFrame and Series that permutation_importance passes"
    )
    table = pd.read_parquet(frame_file)
    times = pd.DatetimeIndex(table.pop("__time__"))
    y = table.pop("__label__").astype(np.int64)
    X = table
    from lightgbm import LGBMClassifier

    model = LGBMClassifier(n_estimators=config["trees"], n_jobs=1, verbose=-1, random_state=config["seed"])
    selector = BorutaSelector(
        config=BorutaSelectorConfig(
            n_trials=config["trials"], percentile=100, alpha=0.05, two_step=True, random_state=config["seed"]
        ),
        oracle=PermutationImportanceOracle(
            scoring=auc_scorer, n_repeats=config["repeats"], random_state=config["seed"]
        ),
        cv=PurgedTemporalCV(
            PurgedCVConfig(
                n_splits=config["splits"], purge_window_days=config["purge_days"],
                embargo_window_days=config["purge_days"], min_train_size=100, test_size_ratio=0.2,
            )
        ),
    )  # fmt: skip
    warnings.simplefilter("ignore")
    started = time.perf_counter()
    result = selector.fit(X, y, times, model)
    seconds = time.perf_counter() - started
    out = {
        "version": boruta_quant.__version__, "seconds": seconds, "accepted": list(result.accepted_features),
        "tentative": len(result.tentative_features), "patches": patches,
    }  # fmt: skip
    Path(out_file).write_text(json.dumps(out))
    return 0


# ----------------------------------------------------------------------------------------------
# availability, runtime patches


PEER_MODULES = {
    "borutapy": ("BorutaPy", ("boruta", "lightgbm")),
    "grootcv": ("arfs GrootCV", ("arfs", "lightgbm", "shap")),
    "leshy": ("arfs Leshy", ("arfs", "lightgbm", "shap")),
    "knockpy": ("knockpy", ("knockpy", "cvxpy")),
}


def available_tools(tools: list[str], python312: Path) -> dict[str, str | None]:
    """Return tool -> None when it can run, else the reason it is skipped."""
    reasons: dict[str, str | None] = {}
    for tool in tools:
        if tool == "bqx":
            reasons[tool] = None if importlib.util.find_spec("bqx_queue") else "bqx_queue is not importable"
        elif tool == "boruta-quant":
            if not python312.exists():
                reasons[tool] = f"no Python 3.12 venv at {python312} (see the setup commands)"
                continue
            probe = subprocess.run(
                [str(python312), "-c", "import boruta_quant, lightgbm, pyarrow"], capture_output=True, text=True
            )
            last = (probe.stderr.strip().splitlines() or [""])[-1]
            reasons[tool] = None if probe.returncode == 0 else f"not importable in {python312}: {last}"
        else:
            missing = [m for m in PEER_MODULES[tool][1] if importlib.util.find_spec(m) is None]
            reasons[tool] = f"not importable here ({sys.executable}): no {', '.join(missing)}" if missing else None
    return reasons


def patch_peers() -> list[str]:
    """Patch the in-process peers where this environment needs it; return what was patched."""
    patches = []
    if int(pd.__version__.split(".")[0]) >= 3 and importlib.util.find_spec("arfs"):
        import arfs.feature_selection.allrelevant as allrelevant

        def create_shadow(X_train: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
            # arfs shuffles `X_shadow[c].values` in place: read-only under pandas 3's copy-on-write
            shadow = pd.DataFrame(
                {f"ShadowVar{i + 1}": np.random.permutation(X_train[c].to_numpy()) for i, c in enumerate(X_train)},
                index=X_train.index,
            )
            return pd.concat([X_train, shadow], axis=1), list(shadow.columns)

        allrelevant._create_shadow = create_shadow
        patches.append(
            "arfs: allrelevant._create_shadow shuffles copies (pandas 3 gives read-only arrays); arfs 3.0.0's "
            "dtype check may still fail under pandas 3: install 'pandas<3' in the peers venv"
        )
    return patches


# ----------------------------------------------------------------------------------------------
# scoring and printing


def score(selected: list[str] | None, truth: Truth) -> dict[str, str]:
    if selected is None:
        return {"linear": "-", "nonlinear": "-", "noise": "-", "other": "-"}
    chosen = set(selected)
    linear = f"{len(chosen & set(truth.linear))}/{len(truth.linear)}" if truth.linear else "n/a"
    nonlinear = "n/a"
    if truth.nonlinear:
        found = [name for name in truth.nonlinear if name in chosen]
        missed = Counter(truth.nonlinear[name] for name in truth.nonlinear if name not in chosen)
        listed = "; ".join(kind if count == 1 else f"{kind} x{count}" for kind, count in missed.items())
        nonlinear = f"{len(found)}/{len(truth.nonlinear)}" + (f" (missed: {listed})" if missed else "")
    noise = f"{len(chosen & truth.noise)}"
    other = len(chosen - set(truth.linear) - set(truth.nonlinear) - truth.noise)
    return {"linear": linear, "nonlinear": nonlinear, "noise": noise, "other": str(other)}


def table_lines(frame: Frame, horizon: int, outcomes: list[Outcome], noise_columns: int) -> list[str]:
    lines = [
        f"| tool | fit s | linear found | nonlinear found | noise selected (of {noise_columns}) | other | note |",
        "|---|---:|---|---|---:|---:|---|",
    ]
    for outcome in outcomes:
        s = score(outcome.selected, frame.truth[horizon])
        seconds = "-" if outcome.seconds is None else f"{outcome.seconds:.1f}"
        lines.append(
            f"| {outcome.tool} | {seconds} | {s['linear']} | {s['nonlinear']} | {s['noise']} | {s['other']} | "
            f"{outcome.note} |"
        )
    return lines


def run_peer(
    tool: str, data: PeerData, budget: Budget, seed: int, frame: Frame, horizon: int, python312: Path
) -> Outcome:
    if tool == "borutapy":
        return run_borutapy(data, budget, seed)
    if tool == "grootcv":
        return run_grootcv(data, budget, seed)
    if tool == "leshy":
        return run_leshy(data, budget, seed)
    if tool == "knockpy":
        return run_knockpy(data, budget, seed)
    return run_boruta_quant(data, budget, seed, frame, horizon, python312)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small frames and cut budgets: a few minutes in all")
    parser.add_argument("--frames", default="nonlinear,linear,real", help="comma list of nonlinear, linear, real")
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"comma list of {', '.join(TOOLS)}")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--python312", type=Path, default=PEERS_VENV_312 / "bin" / "python",
                        help="the Python 3.12 venv's interpreter that has boruta-quant")  # fmt: skip
    parser.add_argument("--workdir", type=Path, help="where the frames are written (default: a new temporary folder)")
    parser.add_argument("--boruta-quant-worker", nargs=3, metavar=("FRAME", "OUT", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.boruta_quant_worker:
        return boruta_quant_worker(*args.boruta_quant_worker)
    with contextlib.suppress(AttributeError):
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    frames = [f.strip() for f in args.frames.split(",") if f.strip()]
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [f for f in frames if f not in ("nonlinear", "linear", "real")] + [t for t in tools if t not in TOOLS]
    if unknown:
        parser.error(f"unknown frame or tool: {', '.join(unknown)}")
    budget = QUICK if args.quick else FULL

    print("Peers venvs (bench dependencies, outside the repo); create them with:")
    for command in setup_commands():
        print(f"    {command}")
    print(f"\nrunning under {sys.executable} (Python {sys.version.split()[0]}, pandas {pd.__version__}), one thread")
    reasons = available_tools(tools, args.python312)
    for tool, reason in reasons.items():
        if reason:
            print(f"SKIPPED {tool}: {reason}")
    with contextlib.suppress(ImportError):
        import bqx_queue

        print(f"product: {Path(bqx_queue.__file__).parent}")
    runnable = [t for t in tools if reasons[t] is None]
    patches = patch_peers() if any(t in ("grootcv", "leshy") for t in runnable) else []
    for patch in patches:
        print(f"patched at run time: {patch}")
    warnings.simplefilter("ignore")  # the peers' deprecation and feature-name warnings

    from threadpoolctl import threadpool_limits

    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bqx-peers-", dir=args.workdir))
    report: list[str] = []
    started_all = time.perf_counter()
    with threadpool_limits(1):
        for name in frames:
            if name == "real" and importlib.util.find_spec("backtesting") is None:
                print(f"\nSKIPPED frame real: `backtesting` (it ships the bars) is not importable in {sys.executable}")
                continue
            if name in ("linear", "real", "nonlinear") and importlib.util.find_spec("bqx_queue") is None:
                print(f"\nSKIPPED frame {name}: bqx_queue is not importable (pip install -e the repo)")
                continue
            built = time.perf_counter()
            if name == "nonlinear":
                days, width = (10, 40) if args.quick else (60, 150)
                frame = nonlinear_frame(folder, days, width, args.seed, [15])
            elif name == "linear":
                days, width = (10, 40) if args.quick else (60, 150)
                frame = linear_frame(folder, days, width, args.seed, [15])
            else:
                frame = real_frame(folder, [15] if args.quick else [15, 30, 60])
            frame = read_back(frame, folder, args.seed)
            print(f"\n=== frame {name}: {frame.description} (built in {time.perf_counter() - built:.0f} s)")
            shape = f"{len(frame.df):,} rows x {frame.df.shape[1] - 1} columns"
            print(f"    export {frame.export}: {shape} as the product reads them (interval_time aside)")
            pair_outcome = None
            if "bqx" in runnable:
                print("    bqx: process_pair_all_horizons on the export ...", flush=True)
                pair_outcome = run_product_pair(frame, folder, args.seed)
            for horizon in frame.horizons:
                data = peer_data(frame, horizon)
                truth = frame.truth[horizon]
                noise_columns = len(truth.noise & set(data.X.columns))
                header = (
                    f"frame {name}, h{horizon}: peers fit on the first {TRAIN_FRACTION:.0%} of the rows "
                    f"({len(data.X):,} rows, {data.times[0]:%Y-%m-%d} to {data.times[-1]:%Y-%m-%d}, label target > 0, "
                    f"up-rate {data.y.mean():.2f}) x {data.X.shape[1]} features ({len(truth.linear)} planted linear, "
                    f"{len(truth.nonlinear)} planted nonlinear, {noise_columns} noise); the product gets all "
                    f"{len(frame.df):,} rows and selects on the same first {TRAIN_FRACTION:.0%} less its purge gap, "
                    "confirms on the last 25%"
                )
                print(f"\n--- {header}")
                if data.dropped:
                    print(f"    peers do not get: {', '.join(f'{c} ({why})' for c, why in data.dropped.items())}")
                outcomes: list[Outcome] = []
                for tool in tools:
                    if reasons[tool] is not None:
                        outcomes.append(Outcome(tool, None, None, "", f"skipped: {reasons[tool]}"))
                        continue
                    print(f"    {tool} ...", flush=True)
                    try:
                        if tool == "bqx":
                            assert pair_outcome is not None
                            seconds, summary, text = pair_outcome
                            outcomes.append(run_product_stable(frame, horizon, folder, args.seed))
                            outcomes.append(product_confirmed(summary, horizon, seconds, text))
                        else:
                            with contextlib.redirect_stdout(io.StringIO()):  # LightGBM's and arfs' chatter
                                outcome = run_peer(tool, data, budget, args.seed, frame, horizon, args.python312)
                            for patch in outcome.patches:
                                if patch not in patches:
                                    print(f"patched at run time: {patch}")
                                    patches.append(patch)
                            outcomes.append(outcome)
                    except Exception as exc:  # a peer's failure is a row of the table, not the end of the run
                        outcomes.append(Outcome(tool, None, None, "", f"failed: {type(exc).__name__}: {exc}"[:300]))
                lines = table_lines(frame, horizon, outcomes, noise_columns)
                settings_lines = [f"- {o.tool}: {o.settings}" for o in outcomes if o.settings]
                block = [f"### {header}", "", *lines, "", "settings:", *settings_lines, ""]
                print("\n".join(block), flush=True)
                report.extend(block)
    print(f"\n================ all tables ({time.perf_counter() - started_all:.0f} s in all)\n")
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
