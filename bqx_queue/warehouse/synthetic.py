"""A BQX-shaped warehouse of simulated FX data with a planted, documented signal.

Eight currencies follow correlated random walks whose drift is driven by a few slowly decaying
signals per currency. A pair's return drift is the difference of its two currencies' drifts, so
triangles stay consistent. Each pair has one feature per signal that observes it with noise
(the planted features); every other feature is drawn from market-wide latent factors that share
their autocorrelation but carry no information about future prices. Targets are computed from
the simulated prices exactly as in production: target_bqx{w}_h{h} = LEAD(bqx_w, h).

Beside the linear signals, every pair's price also moves with planted **nonlinear** signals, one
per kind (NONLINEAR_KINDS), each read by own features that observe its latent series: a
threshold (the drift jumps when |u| is large, either way), a square (u^2), a product (u v: both
u and v are planted features) and a gate (u sign(v): u pushes the price up in one regime of v
and down in the other; both planted). None of them has a linear correlation with the target.
The nonlinear drift is the pair's own (the linear drift is its currencies'), so a cross's close
equals the ratio of its legs only in its linear part.

The manifest (table bqx_meta.manifest) records, per pair and horizon, each planted feature's
expected correlation with the target (for a nonlinear kind: of the best predictor built from
its features), and which ones carry signal at that horizon; `nonlinear` lists each kind's
features.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.signal import lfilter

from bqx_queue.domain import (
    BQX_WINDOWS,
    CURRENCIES,
    HORIZONS,
    PAIRS,
    TARGET_WINDOW,
    WarehouseError,
    pair_currencies,
    target_column,
)
from bqx_queue.warehouse.catalog import KEY_COLUMN
from bqx_queue.warehouse.duckdb_source import META_SCHEMA
from bqx_queue.warehouse.sql import FEATURE_SEPARATOR

ROWS_PER_DAY = 1440
SIGNAL_PHIS = (0.99, 0.98, 0.95, 0.9)  # half-lives of about 69, 34, 14 and 7 minutes
MINUTE_VOL = 1e-4  # sd of a currency's 1-minute log return
CURRENCY_CORRELATION = 0.3
OBSERVATION_NOISE = 0.5  # planted feature = signal + noise of this sd (relative)
MARKET_FACTORS = 24
# the nonlinear kinds, and the features each plants: its latent u, and v where the kind has two
NONLINEAR_KINDS: dict[str, int] = {"threshold": 1, "square": 1, "product": 2, "gate": 2}
NONLINEAR_PHIS = (0.99, 0.995)  # u (half-life ~69 minutes) and v (the slower regime, ~138)
NONLINEAR_NOISE = 0.3  # planted nonlinear feature = latent + noise of this sd
THRESHOLD = 1.0  # the threshold kind's drift is on while |u| > this
OWN_FAMILIES: dict[str, tuple[str, ...]] = {
    "reg": ("slope", "intercept", "r2", "resid_std"),
    "agg": ("mean", "std", "cv", "min", "max"),
    "mom": ("dir", "roc", "accel"),
    "vol": ("zscore", "atr", "range"),
    "lag": ("ret", "diff"),
    "align": ("score",),
    "der": ("v1", "v2"),
    "mrt": ("tension", "halflife"),
    "rev": ("signal", "strength"),
    "div": ("gap",),
    "ext": ("upper", "lower"),
    "cyc": ("phase", "amp"),
}
SHARED_FAMILIES: dict[str, tuple[str, ...]] = {
    "tri": ("synthetic_val", "error_zscore", "spread"),
    "mkt": ("breadth", "dispersion"),
    "var": ("ratio", "level"),
    "csi": ("strength", "ext_percentile", "trend"),
}


@dataclass(frozen=True)
class WarehouseSpec:
    """Size and character of a synthetic warehouse."""

    pairs: tuple[str, ...] = PAIRS
    days: int = 20
    features_per_pair: int = 120
    shared_fraction: float = 0.6
    signals: int = 4
    # AR(1) coefficient of each planted linear signal (the first `signals` of them)
    signal_phis: tuple[float, ...] = SIGNAL_PHIS
    signal_r2: float = 0.5
    min_signal_corr: float = 0.12
    null_fraction: float = 0.0
    decoy_correlation: float | None = None
    cov_partners: int = 2
    seed: int = 7
    start: date = date(2020, 1, 2)
    features_dataset: str = "bqx_features"
    analytics_dataset: str = "bqx_analytics"
    with_signal: bool = True
    # share of the h=45 target's variance (without them) each nonlinear kind's drift adds; 0: none planted
    nonlinear_r2: float = 0.08
    # share of the pairs whose planted features sit in the same families (the same table family
    # and column in every one of them, as a feature that matters in many markets would); None:
    # each pair's planted features are drawn at random from its own columns
    planted_share: float | None = None
    # each planted linear feature's R^2 of the h=45 target (its squared expected correlation, before
    # null_fraction's missing cells), the same for every signal whatever its persistence; when set
    # it replaces signal_r2's equal split of the drift's variance
    feature_r2: float | None = None

    def __post_init__(self) -> None:
        unknown = [p for p in self.pairs if p not in PAIRS]
        if unknown:
            raise WarehouseError(f"unknown pairs {unknown}")
        if self.days < 2 or self.features_per_pair < 10 or not 1 <= self.signals <= len(self.signal_phis):
            raise WarehouseError("warehouse needs days >= 2, features_per_pair >= 10, 1..len(signal_phis) signals")
        if not all(0 <= phi < 1 for phi in self.signal_phis):
            raise WarehouseError(f"signal_phis must be in [0, 1), got {self.signal_phis}")
        if not 0 < self.signal_r2 < 1:
            raise WarehouseError(f"signal_r2 must be in (0, 1), got {self.signal_r2}")
        if self.feature_r2 is not None and not 0 < self.feature_r2 < 1:
            raise WarehouseError(f"feature_r2 must be in (0, 1), got {self.feature_r2}")
        if not 0 <= self.nonlinear_r2 < 1:
            raise WarehouseError(f"nonlinear_r2 must be in [0, 1), got {self.nonlinear_r2}")
        if self.planted_share is not None and not 0 < self.planted_share <= 1:
            raise WarehouseError(f"planted_share must be in (0, 1], got {self.planted_share}")


@dataclass(frozen=True)
class NonlinearSignal:
    """One pair's planted nonlinear signal of one kind: its latents, the drift it drives, and
    what a model reading its features could know of the target."""

    kind: str
    latents: tuple[np.ndarray, ...]  # u, and v for a pair kind
    observed: tuple[np.ndarray, ...]  # the planted features: each latent + noise
    drift: np.ndarray  # the pair's drift from this kind, per row
    autocorrelation: np.ndarray  # of the drift, lags 0 .. max horizon
    attenuation: float  # corr(kind's function of the observed features, of the latents)


def nonlinear_function(kind: str, u: np.ndarray, v: np.ndarray | None) -> np.ndarray:
    """Return the kind's function of its latents (not yet standardised)."""
    if kind == "threshold":
        return (np.abs(u) > THRESHOLD).astype(np.float64)
    if kind == "square":
        return u**2
    assert v is not None, f"{kind} reads two latents"
    return u * v if kind == "product" else u * np.sign(v)


def _standardised(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / values.std()


def _autocorrelation(values: np.ndarray, lags: int) -> np.ndarray:
    centred = values - values.mean()
    variance = float(centred @ centred)
    return np.array([float(centred[: len(centred) - k] @ centred[k:]) / variance for k in range(lags + 1)])


def _nonlinear_signals(spec: WarehouseSpec, pair: str, n: int, linear_target_var: float) -> dict[str, NonlinearSignal]:
    """Return the pair's nonlinear signals, each scaled to add `nonlinear_r2` of the h=45
    target's variance without them (the 45-row sums of its drift measured on the series)."""
    if not spec.with_signal or spec.nonlinear_r2 == 0:
        return {}
    rng = np.random.default_rng([spec.seed, 3000, PAIRS.index(pair)])
    signals = {}
    for kind, latent_count in NONLINEAR_KINDS.items():
        latents = tuple(ar1(rng, NONLINEAR_PHIS[i], (n,)) for i in range(latent_count))
        observed = tuple(x + NONLINEAR_NOISE * rng.standard_normal(n) for x in latents)
        shape = _standardised(nonlinear_function(kind, latents[0], latents[1] if latent_count == 2 else None))
        seen = nonlinear_function(kind, observed[0], observed[1] if latent_count == 2 else None)
        windows = np.convolve(shape, np.ones(TARGET_WINDOW), mode="valid")
        drift = shape * math.sqrt(spec.nonlinear_r2 * linear_target_var / windows.var())
        signals[kind] = NonlinearSignal(
            kind,
            latents,
            observed,
            drift,
            _autocorrelation(shape, max(HORIZONS) + 1),
            abs(float(np.corrcoef(seen, shape)[0, 1])),
        )
    return signals


def nonlinear_correlations(signal: NonlinearSignal, target_var: float) -> np.ndarray:
    """Return per horizon the correlation of the target with the kind's function of its planted
    features: the drift it drives over the target's 45 rows, as much as the function at t still
    predicts (its autocorrelation), attenuated by the features' noise."""
    scale = float(signal.drift.std())
    table = np.zeros(len(HORIZONS))
    for i, h in enumerate(HORIZONS):
        lags = np.abs(np.arange(h - TARGET_WINDOW + 1, h + 1) - 1)
        table[i] = scale * signal.autocorrelation[lags].sum() / math.sqrt(target_var) * signal.attenuation
    return table


@dataclass
class _Simulation:
    times: pd.DatetimeIndex
    pair_signals: dict[str, np.ndarray]  # pair -> (signals, n) signal of the pair
    closes: dict[str, np.ndarray]
    coefficients: np.ndarray  # drift loading per signal
    pair_noise_var: float
    factors: np.ndarray  # (n, MARKET_FACTORS) latent market factors
    nonlinear: dict[str, dict[str, NonlinearSignal]]  # pair -> kind -> its latents and strength


def ar1(rng: np.random.Generator, phi: float, shape: tuple[int, ...]) -> np.ndarray:
    """Return unit-variance AR(1) series along the last axis, stationary from their first row.

    The first value is drawn from the stationary law: a series started at zero takes about
    1 / (1 - phi) rows to reach its spread (a day of minute bars at phi 0.999), a start-up stretch
    unlike the rest of the history that only the first training rows hold."""
    shocks = rng.standard_normal(shape)
    shocks[..., 0] /= math.sqrt(1 - phi**2)  # the filter scales it back to unit variance
    return lfilter([math.sqrt(1 - phi**2)], [1, -phi], shocks, axis=-1)


def _window_sum(phi: float, lags: range) -> float:
    return float(sum(phi ** abs(j - 1) for j in lags))


def _window_variance(phi: float, width: int = TARGET_WINDOW) -> float:
    """Return Var(sum of a unit AR(1) over `width` consecutive steps)."""
    return float(sum(phi ** abs(i - j) for i in range(width) for j in range(width)))


def _coefficients(spec: WarehouseSpec, pair_noise_var: float) -> np.ndarray:
    """Return drift loadings giving the signals `signal_r2` of the h=45 target variance, equally."""
    if not spec.with_signal:
        return np.zeros(spec.signals)
    if spec.feature_r2 is not None:
        return _feature_coefficients(spec, pair_noise_var, spec.feature_r2)
    drift_var = spec.signal_r2 / (1 - spec.signal_r2) * TARGET_WINDOW * pair_noise_var
    phis = spec.signal_phis[: spec.signals]
    return np.array([math.sqrt(drift_var / spec.signals / (2 * _window_variance(phi))) for phi in phis])


def _feature_coefficients(spec: WarehouseSpec, pair_noise_var: float, r2: float) -> np.ndarray:
    """Return drift loadings giving each planted linear feature `r2` of the h=45 target's variance.

    With S_k the window sum of signal k's autocorrelation over the target's rows, V_k its window
    variance, F the feature's variance and m the nonlinear kinds' share, corr_k^2 = 4 b_k^2 S_k^2 /
    (F T (1 + m)) with T = N + sum 2 b_k^2 V_k; setting it to r2 gives T = N / (1 - c), c = r2 F
    (1 + m) sum V_k / (2 S_k^2), and b_k = sqrt(r2 F T (1 + m)) / (2 S_k)."""
    phis = spec.signal_phis[: spec.signals]
    noise = TARGET_WINDOW * pair_noise_var
    feature_var = 2 * (1 + OBSERVATION_NOISE**2)
    nonlinear = 1 + len(NONLINEAR_KINDS) * spec.nonlinear_r2
    sums = np.array([_window_sum(phi, range(1, TARGET_WINDOW + 1)) for phi in phis])
    variances = np.array([_window_variance(phi) for phi in phis])
    c = r2 * feature_var * nonlinear * float(np.sum(variances / (2 * sums**2)))
    if c >= 1:
        raise WarehouseError(f"feature_r2 {r2} is too large for {spec.signals} signals: they would explain it all")
    target_var = noise / (1 - c)
    return np.sqrt(r2 * feature_var * target_var * nonlinear) / (2 * sums)


def linear_target_variance(spec: WarehouseSpec, coefficients: np.ndarray, pair_noise_var: float) -> float:
    """Return the variance of the h=45 target from the pair's noise and linear signals."""
    phis = spec.signal_phis[: spec.signals]
    drift_var = sum(2 * b**2 * _window_variance(phi) for b, phi in zip(coefficients, phis, strict=True))
    return TARGET_WINDOW * pair_noise_var + drift_var


def target_variance(spec: WarehouseSpec, coefficients: np.ndarray, pair_noise_var: float) -> float:
    """Return the variance of a target: noise, linear signals and every nonlinear kind's share."""
    planted = len(NONLINEAR_KINDS) if spec.with_signal else 0
    return linear_target_variance(spec, coefficients, pair_noise_var) * (1 + planted * spec.nonlinear_r2)


def expected_correlations(spec: WarehouseSpec, coefficients: np.ndarray, pair_noise_var: float) -> np.ndarray:
    """Return (signals, horizons) correlations of each planted linear feature with each target."""
    phis = spec.signal_phis[: spec.signals]
    target_var = target_variance(spec, coefficients, pair_noise_var)
    feature_var = 2 * (1 + OBSERVATION_NOISE**2)
    attenuation = math.sqrt(1 - spec.null_fraction)  # missing cells are imputed at the mean
    table = np.zeros((spec.signals, len(HORIZONS)))
    for k, (b, phi) in enumerate(zip(coefficients, phis, strict=True)):
        for i, h in enumerate(HORIZONS):
            cov = 2 * b * _window_sum(phi, range(h - TARGET_WINDOW + 1, h + 1))
            table[k, i] = cov / math.sqrt(feature_var * target_var) * attenuation
    return table


def _simulate(spec: WarehouseSpec) -> _Simulation:
    rng = np.random.default_rng(spec.seed)
    days = pd.bdate_range(spec.start, periods=spec.days)
    times = pd.DatetimeIndex(
        (days.values[:, None] + np.arange(ROWS_PER_DAY) * np.timedelta64(1, "m")).ravel(), tz="UTC"
    )
    n = len(times)
    n_ccy = len(CURRENCIES)
    correlation = np.full((n_ccy, n_ccy), CURRENCY_CORRELATION) + np.eye(n_ccy) * (1 - CURRENCY_CORRELATION)
    noise = rng.standard_normal((n, n_ccy)) @ np.linalg.cholesky(correlation).T * MINUTE_VOL
    pair_noise_var = 2 * MINUTE_VOL**2 * (1 - CURRENCY_CORRELATION)
    coefficients = _coefficients(spec, pair_noise_var)
    signals = np.stack([ar1(rng, phi, (n_ccy, n)) for phi in spec.signal_phis[: spec.signals]], axis=1)
    # drift at t acts on the return from t to t+1: a signal observed at t predicts the future
    drift = np.einsum("k,ckn->nc", coefficients, signals)
    returns = noise.copy()
    returns[1:] += drift[:-1]
    log_levels = np.cumsum(returns, axis=0)
    currency_index = {c: i for i, c in enumerate(CURRENCIES)}
    closes, pair_signals, nonlinear = {}, {}, {}
    linear_target_var = linear_target_variance(spec, coefficients, pair_noise_var)
    for pair in spec.pairs:
        base, quote = (currency_index[c] for c in pair_currencies(pair))
        nonlinear[pair] = _nonlinear_signals(spec, pair, n, linear_target_var)
        own_levels = np.zeros(n)  # the pair's own drift at t acts on its return from t to t+1
        if nonlinear[pair]:
            drift = np.sum([signal.drift for signal in nonlinear[pair].values()], axis=0)
            own_levels[1:] = np.cumsum(drift[:-1])
        closes[pair] = 1.2 * np.exp(log_levels[:, base] - log_levels[:, quote] + own_levels)
        pair_signals[pair] = signals[base] - signals[quote]
    phis = rng.uniform(0.95, 0.999, MARKET_FACTORS)
    factors = np.stack([ar1(rng, phi, (n,)) for phi in phis], axis=1)
    return _Simulation(times, pair_signals, closes, coefficients, pair_noise_var, factors, nonlinear)


def _targets(close: np.ndarray) -> dict[str, np.ndarray]:
    """Return every target_bqx{w}_h{h} = LEAD(bqx_w, h), NULL (NaN) where undefined."""
    out = {}
    for w in BQX_WINDOWS:
        bqx = np.full(len(close), np.nan)
        bqx[w:] = (close[w:] - close[:-w]) / close[:-w] * 100
        for h in HORIZONS:
            lead = np.full(len(close), np.nan)
            lead[:-h] = bqx[h:]
            out[target_column(h, w)] = lead
    return out


class _Writer:
    def __init__(self, con: duckdb.DuckDBPyConnection, times: pd.DatetimeIndex) -> None:
        self.con = con
        self.key = pa.array(
            times.tz_convert(None).to_numpy().astype("datetime64[us]"), type=pa.timestamp("us", tz="UTC")
        )

    def write(self, dataset: str, table: str, columns: dict[str, Any]) -> None:
        data = pa.table({KEY_COLUMN: self.key, **columns})
        self.con.register("staging", data)
        self.con.execute(f'CREATE TABLE "{dataset}"."{table}" AS SELECT * FROM staging')
        self.con.unregister("staging")


def _decoys(sim: _Simulation, rng: np.random.Generator, count: int) -> np.ndarray:
    """Return (n, count) features that mix market factors with their own noise: autocorrelated
    and correlated with each other like real indicators, but unrelated to future prices."""
    loadings = np.zeros((MARKET_FACTORS, count))
    for j in range(count):
        chosen = rng.choice(MARKET_FACTORS, 3, replace=False)
        loadings[chosen, j] = rng.normal(0, 1, 3)
    own_noise = rng.standard_normal((len(sim.times), count))
    return sim.factors @ loadings + own_noise * rng.uniform(0.3, 1.5, count)


def _column_names(families: dict[str, tuple[str, ...]], family: str, count: int) -> list[str]:
    stats = families[family]
    names = [
        f"{family}_{stats[i % len(stats)]}_{BQX_WINDOWS[(i // len(stats)) % len(BQX_WINDOWS)]}" for i in range(count)
    ]
    # beyond stats x windows, number the repeats so names stay unique within the table
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}_v{seen[name]}")
    return unique


def _with_nulls(values: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    if fraction > 0:
        values = values.copy()
        values[rng.random(values.shape) < fraction] = np.nan
    return values


def nonlinear_planted(spec: WarehouseSpec) -> int:
    """Return how many features each pair's nonlinear kinds plant."""
    return sum(NONLINEAR_KINDS.values()) if spec.with_signal and spec.nonlinear_r2 > 0 else 0


def _own_layout(spec: WarehouseSpec, partners: int) -> list[tuple[str, list[str]]]:
    """Return the table families and column names of every pair's own tables (the same in each)."""
    asked = max(spec.signals + 4, round(spec.features_per_pair * (1 - spec.shared_fraction)))
    per_table = max(2, math.ceil(asked / (len(OWN_FAMILIES) + partners)))
    tables = min(len(OWN_FAMILIES), math.ceil(asked / per_table))
    # room for every planted feature: a narrow warehouse gets wider tables, never more of them
    # (its table count is what the billing and plan tests count)
    own_count = max(spec.signals + nonlinear_planted(spec) + 4, asked)
    per_table = max(per_table, math.ceil(own_count / tables))
    layout = []
    remaining = own_count
    for family in OWN_FAMILIES:
        if remaining <= 0:
            break
        count = min(per_table, remaining)
        layout.append((family, _column_names(OWN_FAMILIES, family, count)))
        remaining -= count
    return layout


def shared_planted_columns(spec: WarehouseSpec, partners: int) -> list[tuple[str, str]]:
    """Return (table family, column) of each signal's planted feature in the pairs that share
    planted families: drawn once per warehouse, so those pairs carry signal k in one family."""
    slots = [(family, column) for family, columns in _own_layout(spec, partners) for column in columns]
    chosen = np.random.default_rng([spec.seed, 4242]).choice(len(slots), spec.signals, replace=False)
    return [slots[i] for i in chosen]


def shared_nonlinear_columns(spec: WarehouseSpec, partners: int) -> list[tuple[str, str]]:
    """Return (table family, column) of each nonlinear planted feature (NONLINEAR_KINDS' order)
    in the pairs that share planted families, drawn once per warehouse beside the linear ones."""
    linear = set(shared_planted_columns(spec, partners))
    slots = [(f, c) for f, columns in _own_layout(spec, partners) for c in columns if (f, c) not in linear]
    chosen = np.random.default_rng([spec.seed, 4244]).choice(len(slots), nonlinear_planted(spec), replace=False)
    return [slots[i] for i in chosen]


def _kind_features(aliases: list[str]) -> dict[str, list[str]]:
    """Return each nonlinear kind's planted features from their aliases in NONLINEAR_KINDS' order."""
    features: dict[str, list[str]] = {}
    position = 0
    for kind, count in NONLINEAR_KINDS.items() if aliases else ():
        features[kind] = aliases[position : position + count]
        position += count
    return features


def pairs_sharing_families(spec: WarehouseSpec) -> list[str]:
    """Return the pairs (round(planted_share x pairs), drawn once) whose planted features share families."""
    if spec.planted_share is None or not spec.with_signal:
        return []
    count = max(1, round(spec.planted_share * len(spec.pairs)))
    order = np.random.default_rng([spec.seed, 4243]).permutation(len(spec.pairs))
    return [spec.pairs[i] for i in sorted(order[:count])]


def _own_tables(
    spec: WarehouseSpec,
    pair: str,
    sim: _Simulation,
    partners: list[str],
    planted_columns: list[tuple[str, str]] | None = None,
    nonlinear_columns: list[tuple[str, str]] | None = None,
) -> tuple[dict[str, dict[str, np.ndarray]], list[str], dict[str, list[str]]]:
    """Return the pair's own numeric feature tables, the aliases of its planted linear features
    (at `planted_columns` when given, else drawn at random) and of each nonlinear kind's features
    (at `nonlinear_columns` when given, else drawn at random from the other columns)."""
    rng = np.random.default_rng([spec.seed, PAIRS.index(pair)])
    tables: dict[str, dict[str, np.ndarray]] = {}
    for family, names in _own_layout(spec, len(partners)):
        tables[f"{family}_{pair}"] = dict(zip(names, _decoys(sim, rng, len(names)).T, strict=True))
    aliases = [f"{t}{FEATURE_SEPARATOR}{c}" for t, cols in tables.items() for c in cols]
    planted_aliases = [aliases[i] for i in sorted(rng.choice(len(aliases), spec.signals, replace=False))]
    if planted_columns is not None:  # the draw above still happens: other pairs' data stay the same
        planted_aliases = [f"{family}_{pair}{FEATURE_SEPARATOR}{column}" for family, column in planted_columns]
    others = [a for a in aliases if a not in planted_aliases]
    nonlinear_rng = np.random.default_rng([spec.seed, 3001, PAIRS.index(pair)])
    nonlinear_aliases = [others[i] for i in nonlinear_rng.choice(len(others), nonlinear_planted(spec), replace=False)]
    if nonlinear_columns is not None:
        nonlinear_aliases = [f"{family}_{pair}{FEATURE_SEPARATOR}{column}" for family, column in nonlinear_columns]
    for k, alias in enumerate(planted_aliases):
        table, column = alias.split(FEATURE_SEPARATOR)
        signal = sim.pair_signals[pair][k]
        tables[table][column] = signal + OBSERVATION_NOISE * math.sqrt(2) * rng.standard_normal(len(signal))
    kind_features = _kind_features(nonlinear_aliases)
    for kind, features in kind_features.items():
        for alias, observed in zip(features, sim.nonlinear[pair][kind].observed, strict=True):
            table, column = alias.split(FEATURE_SEPARATOR)
            tables[table][column] = observed
    if spec.decoy_correlation is not None:
        decoy_pool = [a for a in aliases if a not in planted_aliases and a not in nonlinear_aliases]
        decoys = rng.choice(decoy_pool, min(len(decoy_pool), spec.signals), replace=False)
        rho = spec.decoy_correlation
        for planted, decoy in zip(planted_aliases, decoys, strict=False):
            source = tables[planted.split(FEATURE_SEPARATOR)[0]][planted.split(FEATURE_SEPARATOR)[1]]
            z = (source - source.mean()) / source.std()
            table, column = decoy.split(FEATURE_SEPARATOR)
            # a strongly correlated decoy: it predicts the target too, but only through the
            # planted feature, so a sound selection keeps the planted one and drops this
            tables[table][column] = rho * z + math.sqrt(1 - rho**2) * rng.standard_normal(len(z))
    for table in tables.values():
        for column, values in table.items():
            table[column] = _with_nulls(values, spec.null_fraction, rng)
    # hazards seen in the production warehouse: an all-NULL column, a constant, a duplicate
    first_table = next(iter(tables.values()))
    hazard_table = tables[f"ext_{pair}"] if f"ext_{pair}" in tables else first_table
    hazard_table["ext_missing_2880"] = np.full(len(sim.times), np.nan)
    hazard_table["ext_const_45"] = np.full(len(sim.times), 1.0)
    planted_anywhere = set(planted_aliases) | set(nonlinear_aliases)
    duplicated = next(
        values
        for table, columns in tables.items()
        for column, values in columns.items()
        if f"{table}{FEATURE_SEPARATOR}{column}" not in planted_anywhere and not column.startswith("ext_")
    )
    hazard_table["ext_copy_45"] = duplicated.copy()
    return tables, planted_aliases, kind_features


def build_warehouse(path: Path | str, spec: WarehouseSpec = WarehouseSpec()) -> dict[str, Any]:
    """Write a synthetic warehouse to a new DuckDB file and return its manifest.

    The file is written under a temporary name and renamed when complete, so a failed build
    leaves nothing behind that looks like a warehouse.
    """
    path = Path(path)
    if path.exists():
        raise WarehouseError(f"{path} already exists; remove it or choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    sim = _simulate(spec)
    fd, ad = spec.features_dataset, spec.analytics_dataset
    correlations = expected_correlations(spec, sim.coefficients, sim.pair_noise_var)
    manifest: dict[str, Any] = {
        "spec": asdict(spec) | {"start": spec.start.isoformat()},
        "rows": len(sim.times),
        "pairs": {},
    }
    con = duckdb.connect(str(partial))
    try:
        con.execute("SET TimeZone='UTC'")
        for schema in (fd, ad, META_SCHEMA):
            con.execute(f'CREATE SCHEMA "{schema}"')
        writer = _Writer(con, sim.times)
        shared_rng = np.random.default_rng([spec.seed, 999])
        shared_count = max(4, round(spec.features_per_pair * spec.shared_fraction))
        per_family = math.ceil(shared_count / len(SHARED_FAMILIES))
        for family in SHARED_FAMILIES:
            tables = max(1, math.ceil(per_family / 12))
            for t in range(tables):
                count = math.ceil(per_family / tables)
                values = _decoys(sim, shared_rng, count)
                columns = {
                    n: _with_nulls(values[:, j], spec.null_fraction, shared_rng)
                    for j, n in enumerate(_column_names(SHARED_FAMILIES, family, count))
                }
                writer.write(fd, f"{family}_g{t:03d}", columns)
        cov_rng = np.random.default_rng([spec.seed, 1001])
        nonlinear_horizons: dict[str, list[int]] = {}
        sharing = pairs_sharing_families(spec)
        partner_count = min(spec.cov_partners, len(spec.pairs) - 1)
        shared_columns = shared_planted_columns(spec, partner_count) if sharing else None
        shared_nonlinear = shared_nonlinear_columns(spec, partner_count) if sharing else None
        for i, pair in enumerate(spec.pairs):
            # the next pairs in the run's order, never the pair itself
            count = min(spec.cov_partners, len(spec.pairs) - 1)
            partners = [spec.pairs[(i + j) % len(spec.pairs)] for j in range(1, count + 1)]
            for partner in partners:
                values = _decoys(sim, cov_rng, 3)
                writer.write(
                    fd,
                    f"cov_{pair}_{partner}",
                    {n: values[:, j] for j, n in enumerate(("spread_zscore", "cov_45", "corr_90"))},
                )
            shares = pair in sharing
            own, planted, kind_features = _own_tables(
                spec, pair, sim, partners, shared_columns if shares else None, shared_nonlinear if shares else None
            )
            for table, columns in own.items():
                writer.write(fd, table, columns)
            targets = _targets(sim.closes[pair])
            regime_rng = np.random.default_rng([spec.seed, 2000 + i])
            state = np.where(
                sim.factors[:, 0] > 0.5, "trend_up", np.where(sim.factors[:, 0] < -0.5, "trend_down", "range")
            )
            writer.write(
                fd, f"regime_{pair}", {"regime_state": pa.array(state), "regime_prob": regime_rng.random(len(state))}
            )
            leaky = {target_column(h): targets[target_column(h)] for h in HORIZONS[:2]}
            writer.write(fd, f"base_{pair}", {"pair": pa.array([pair] * len(state)), **leaky})
            writer.write(ad, f"targets_{pair}", targets)
            target_var = target_variance(spec, sim.coefficients, sim.pair_noise_var)
            kind_corr = {k: nonlinear_correlations(sim.nonlinear[pair][k], target_var) for k in kind_features}
            horizons = {}
            for hi, h in enumerate(HORIZONS):
                linear = [a for k, a in enumerate(planted) if correlations[k, hi] >= spec.min_signal_corr]
                shaped = [a for k, f in kind_features.items() if kind_corr[k][hi] >= spec.min_signal_corr for a in f]
                horizons[str(h)] = {
                    "informative": linear + shaped if spec.with_signal else [],
                    "expected_corr": {a: round(float(correlations[k, hi]), 4) for k, a in enumerate(planted)}
                    | {a: round(float(kind_corr[k][hi]), 4) for k, f in kind_features.items() for a in f}
                    if spec.with_signal
                    else {},
                }
            manifest["pairs"][pair] = {
                "planted": planted + [a for f in kind_features.values() for a in f] if spec.with_signal else [],
                "horizons": horizons,
                "leaky": [f"base_{pair}{FEATURE_SEPARATOR}{c}" for c in leaky],
                # each planted feature's shape: linear, or the nonlinear kind it is a feature of
                "shapes": {a: "linear" for a in planted} | {a: k for k, f in kind_features.items() for a in f}
                if spec.with_signal
                else {},
            }
            if shares:
                nonlinear_horizons |= {
                    kind: [h for i, h in enumerate(HORIZONS) if kind_corr[kind][i] >= spec.min_signal_corr]
                    for kind in kind_features
                }
        manifest["planted_families"] = {
            f"{family}{FEATURE_SEPARATOR}{column}": {
                "signal": k,
                "phi": spec.signal_phis[k],
                "kind": "linear",
                "pairs": sharing,
                "informative_horizons": [
                    h for i, h in enumerate(HORIZONS) if correlations[k, i] >= spec.min_signal_corr
                ],
            }
            for k, (family, column) in enumerate(shared_columns or [])
        }
        # a nonlinear kind's informative horizons vary a little between pairs (its series are
        # each pair's own): those of the last sharing pair are recorded
        kinds = [k for k, count in NONLINEAR_KINDS.items() for _ in range(count)]
        manifest["planted_families"] |= {
            f"{family}{FEATURE_SEPARATOR}{column}": {
                "kind": kind,
                "pairs": sharing,
                "informative_horizons": nonlinear_horizons.get(kind, []),
            }
            for kind, (family, column) in zip(kinds, shared_nonlinear or [], strict=bool(shared_nonlinear))
        }
        con.execute(f"CREATE TABLE {META_SCHEMA}.manifest AS SELECT ? AS body", [json.dumps(manifest)])
        con.close()
        partial.rename(path)
    except BaseException:
        con.close()
        partial.unlink(missing_ok=True)
        raise
    return manifest
