"""Held-out verdicts: does each stable feature help on rows selection never saw?

Stability selection reads only the first part of the history, and a persistent series with no
information can be stable there by chance (spurious regression between persistent series). The
held-out rows of the purged walk-forward folds decide:

- a feature's effect is the mean increase in held-out log loss when its column is permuted
  within each fold's test window (a few repeats), over every fold's test rows: > 0 means the
  model needs it;
- intervals come from a circular block bootstrap of the held-out rows, with blocks at least as
  long as the target's autocorrelation (horizon + 45 rows), so overlapping labels stay together;
- a feature is confirmed when the one-sided lower bound of its effect is above zero at its level
  in Holm's step-down over the k stable features tested in the horizon: the most significant at
  alpha / k, the next at alpha / (k - 1), and so on until one fails (Holm 1979: the same
  family-wise error rate as Bonferroni's alpha / k for all, and never fewer confirmed);
- and when the model beats the constant baseline on held-out rows: the one-sided lower bound at
  alpha of its log-loss gain, resampled in blocks as long as that feature's own, is above zero;
- the horizon's pooled AUC and log-loss gain over the constant baseline get 95% intervals (in
  blocks as long as its most persistent feature's); a horizon whose AUC interval lies below 0.5
  (the constant's AUC) or whose gain interval lies below zero is flagged: its model does worse
  than the baseline on held-out rows.

Bounds and intervals use the bootstrap standard error (estimate +/- t * SE): tail percentiles of
a few thousand draws at level 0.05 / k would be mostly noise. A feature's Student t has its
held-out rows' independent stretches less one as degrees of freedom: rows / block, or rows / the
feature's dependence where that is longer than its block (a block is capped at a quarter of the
rows). A persistent noise column correlated over most of the held-out rows has one or two
stretches, and four capped blocks would understate its spread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field
from scipy.stats import t as student_t

from bqx_queue.analysis.params import AnalysisParams, Stream, seed_sequence
from bqx_queue.config import Settings
from bqx_queue.domain import DataError

PROBABILITY_FLOOR = 1e-6
WEIGHT_CHUNK = 100  # bootstrap draws whose row weights are held at once
# the clock blocks the target-driven part is also summed in, for the pooled test's blocks: longer
# than the longest label (105 + 45 minutes), eight to a day
POOLING_BLOCK_MINUTES = 180


class ConfirmParams(AnalysisParams):
    """How a horizon's held-out verdicts are reached (Settings' confirmation_* fields)."""

    alpha: float = Field(gt=0, lt=1)  # family-wise error rate over a horizon's stable features
    repeats: int = Field(ge=1)  # permutations of each column per fold
    draws: int = Field(ge=2)  # block-bootstrap resamples: a standard error needs two
    seed: np.random.SeedSequence

    @classmethod
    def from_settings(cls, settings: Settings, pair: str, horizon: int) -> ConfirmParams:
        """Return the confirmation parameters of `settings`, seeded for `pair` at `horizon`."""
        return cls(
            alpha=settings.confirmation_alpha,
            repeats=settings.confirmation_repeats,
            draws=settings.confirmation_draws,
            seed=seed_sequence(settings.seed, pair, Stream.CONFIRMATION, horizon),
        )


@dataclass(frozen=True)
class HeldOutFold:
    """One walk-forward fold as the verdicts need it: its model and test window."""

    booster: Any | None  # lightgbm.Booster; None when the horizon has no stable feature
    features: np.ndarray  # (test rows, stable features) in the model's column order
    up: np.ndarray  # bool: did the target move up on each test row
    baseline_probability: float  # the training up-rate, the constant baseline's prediction


def block_bootstrap_weights(n: int, block: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Return (draws, n) row multiplicities of circular block-bootstrap resamples.

    Each resample joins ceil(n / block) blocks of `block` consecutive rows, starts drawn
    uniformly and wrapping past the end, so every row is equally likely to be drawn.
    """
    block = max(1, min(block, n))
    starts = rng.integers(0, n, size=(draws, math.ceil(n / block)))
    flat = (starts + n * np.arange(draws)[:, None]).ravel()
    start_counts = np.bincount(flat, minlength=draws * n).reshape(draws, n).astype(np.float64)
    # row i is covered by every block starting at i - block + 1 ... i (mod n)
    wrapped = np.concatenate([start_counts[:, n - block + 1 :], start_counts], axis=1)
    cumulative = np.concatenate([np.zeros((draws, 1)), np.cumsum(wrapped, axis=1)], axis=1)
    return cumulative[:, block:] - cumulative[:, :-block]


def block_bootstrap_means(per_row: np.ndarray, block: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Return the column means of (n, m) `per_row` under `draws` circular block-bootstrap
    resamples: the same resamples as block_bootstrap_weights from the same generator state,
    summed block by block from prefix sums (draws x blocks work instead of draws x rows)."""
    n = len(per_row)
    block = max(1, min(block, n))
    blocks = math.ceil(n / block)
    starts = rng.integers(0, n, size=(draws, blocks))
    wrapped = np.concatenate([per_row, per_row[: block - 1]])  # a block starting near the end wraps
    prefix = np.concatenate([np.zeros((1, per_row.shape[1])), np.cumsum(wrapped, axis=0)])
    return (prefix[starts + block] - prefix[starts]).sum(axis=1) / (blocks * block)


def weighted_auc(scores: np.ndarray, up: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Return the AUC of `scores` for labels `up` under each row of (draws, n) `weights`
    (ties count one half), without re-sorting per draw."""
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    group_starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    w = weights[:, order]
    positives = np.add.reduceat(w * up[order], group_starts, axis=1)
    negatives = np.add.reduceat(w * ~up[order], group_starts, axis=1)
    below = np.cumsum(negatives, axis=1) - negatives
    pairs = positives.sum(axis=1) * negatives.sum(axis=1)
    wins = (positives * (below + 0.5 * negatives)).sum(axis=1)
    return np.divide(wins, pairs, out=np.full(len(w), 0.5), where=pairs > 0)


def bootstrap_replicates(
    per_row: np.ndarray,
    block: int,
    draws: int,
    rng: np.random.Generator,
    scores: np.ndarray | None = None,
    up: np.ndarray | None = None,
    fold_sizes: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Return the column means of (n, m) `per_row` under `draws` circular block-bootstrap
    resamples and, when `scores` are given, the AUC of `scores` for `up` under the same
    resamples: within each fold (a constant baseline scores exactly 0.5), then averaged with
    the fold's resampled row count as its weight."""
    means, aucs = [], []
    edges = np.cumsum([0, *(fold_sizes or [len(per_row)])])
    for start in range(0, draws, WEIGHT_CHUNK):
        chunk = min(WEIGHT_CHUNK, draws - start)
        if scores is None or up is None:  # means only: no row weights needed
            means.append(block_bootstrap_means(per_row, block, chunk, rng))
            continue
        weights = block_bootstrap_weights(len(per_row), block, chunk, rng)
        means.append(weights @ per_row / weights.sum(axis=1, keepdims=True))
        aucs.append(fold_auc(scores, up, weights, edges))
    return np.concatenate(means), (np.concatenate(aucs) if aucs else None)


def fold_auc(scores: np.ndarray, up: np.ndarray, weights: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Return per draw the row-weighted mean over folds of each fold's weighted AUC."""
    total = np.zeros(len(weights))
    mass = np.zeros(len(weights))
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        fold_mass = weights[:, a:b].sum(axis=1)
        total += fold_mass * weighted_auc(scores[a:b], up[a:b], weights[:, a:b])
        mass += fold_mass
    return total / mass


def dependence_rows(per_row: np.ndarray) -> np.ndarray:
    """Return per column twice the lag after which its autocorrelation stays insignificant
    (Politis and White 2004: the first m whose next K_n lags are all below 2 sqrt(log10 n / n));
    1 for a constant column."""
    n = len(per_row)
    centred = per_row - per_row.mean(axis=0)
    spectrum = np.fft.rfft(centred, n=2 * n, axis=0)
    covariance = np.fft.irfft(spectrum * np.conj(spectrum), axis=0)[:n]
    variance = covariance[0]
    acf = np.abs(np.divide(covariance, variance, out=np.zeros_like(covariance), where=variance > 0))
    window = min(max(5, math.ceil(math.sqrt(math.log10(n)))), n - 1)
    significant = acf >= 2 * math.sqrt(math.log10(n) / n)
    # the first lag m whose next `window` lags are all insignificant
    quiet = np.lib.stride_tricks.sliding_window_view(~significant[1:], window, axis=0).all(axis=-1)
    first = np.where(quiet.any(axis=0), quiet.argmax(axis=0), n)
    return np.where(variance > 0, 2 * np.maximum(first, 1), 1)


def block_length(dependence: int, floor: int, cap: int) -> int:
    """Return the shortest of floor, 1.5 floor, 2.25 floor, ... covering `dependence`, at most
    `cap`: a few lengths shared by many features keep the resamples few."""
    length = floor
    while length < min(dependence, cap):
        length = math.ceil(length * 1.5)
    return max(1, min(length, cap))


def row_log_loss(probability: np.ndarray, up: np.ndarray) -> np.ndarray:
    p = np.clip(probability, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    return -np.where(up, np.log(p), np.log1p(-p))


def permutation_effects(
    fold: HeldOutFold, repeats: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the model's probabilities on the fold's test rows and, per row and feature, the
    mean increase in log loss when that feature's column is permuted within the test window, and
    that increase's part driven by the target given the features (`target_noise`).

    A row's increase is up * A + (1 - up) * B, with A and B (the changes in -log p and in
    -log(1 - p)) set by the features alone; given them, only `up` is random, so the increase
    minus its expectation is (up - q) (A - B), q the chance of an up move. With the model's
    probability for q, `target_noise` is (up - p) (A - B): it varies with the target's memory
    (the labels' overlap), not with a persistent feature's, which a resampling of the effect
    itself has to span."""
    n, k = fold.features.shape
    booster = fold.booster
    assert booster is not None, "a fold with stable features has a model"
    probability = booster.predict(fold.features)
    clipped = np.clip(probability, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    effects, target_noise = np.empty((n, k)), np.empty((n, k))
    copies = np.empty((repeats, n, k), dtype=fold.features.dtype)
    for j in range(k):
        copies[:] = fold.features
        for r in range(repeats):
            copies[r, :, j] = fold.features[rng.permutation(n), j]
        permuted = np.clip(
            booster.predict(copies.reshape(repeats * n, k)).reshape(repeats, n),
            PROBABILITY_FLOOR,
            1 - PROBABILITY_FLOOR,
        )
        if_up = np.log(clipped) - np.log(permuted).mean(axis=0)  # A
        if_down = np.log1p(-clipped) - np.log1p(-permuted).mean(axis=0)  # B
        effects[:, j] = np.where(fold.up, if_up, if_down)
        target_noise[:, j] = (fold.up - probability) * (if_up - if_down)
    return probability, effects, target_noise


def unit_sums(per_row: np.ndarray, units: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the distinct units in order, the rows in each, and the (units, m) column sums of
    (n, m) `per_row` per unit, for `units` the unit of each row (its day, or its block's start).

    >>> days = np.array(["2024-01-02", "2024-01-02", "2024-01-03"], dtype="datetime64[D]")
    >>> labels, rows, sums = unit_sums(np.array([[1.0], [2.0], [4.0]]), days)
    >>> [str(d) for d in labels], rows.tolist(), sums.tolist()
    (['2024-01-02', '2024-01-03'], [2, 1], [[3.0], [4.0]])
    """
    labels, unit_of_row = np.unique(units, return_inverse=True)
    sums = np.zeros((len(labels), per_row.shape[1]))
    np.add.at(sums, unit_of_row, per_row)
    return labels, np.bincount(unit_of_row, minlength=len(labels)), sums


def block_starts(times: np.ndarray, minutes: int) -> np.ndarray:
    """Return the start of each row's clock block of `minutes` (counted from the epoch, so a
    block that divides a day starts at midnight).

    >>> times = np.array(["2024-01-02T02:59", "2024-01-02T03:00"], dtype="datetime64[m]")
    >>> [str(t) for t in block_starts(times, 180)]
    ['2024-01-02T00:00', '2024-01-02T03:00']
    """
    since_epoch = times.astype("datetime64[m]").astype(np.int64)
    return (since_epoch - since_epoch % minutes).astype("datetime64[m]")


def label_lag(times: np.ndarray, block: int, minutes: int) -> int:
    """Return how many clock blocks of `minutes` apart two rows' labels can still share rows: the
    labels' overlap of `block` rows at the held-out rows' usual spacing (1-minute bars: horizon +
    45 minutes, one 3-hour block; hourly bars: as many hours)."""
    steps = np.diff(times.astype("datetime64[m]").astype(np.int64))
    spacing = float(np.median(steps[steps > 0])) if (steps > 0).any() else 1.0
    return max(1, math.ceil(block * spacing / minutes))


def holm_levels(p_values: np.ndarray, alpha: float) -> np.ndarray:
    """Return the level each test is judged at in Holm's step-down procedure: the i-th smallest
    p-value at alpha / (m - i), until the first that is not below its level; that one and every
    later one at the level of that step (none of them is rejected).

    >>> holm_levels(np.array([0.04, 0.001, 0.5]), 0.05).round(4).tolist()
    [0.025, 0.0167, 0.025]
    """
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    levels = np.empty(m)
    for step, j in enumerate(order):
        levels[j] = alpha / (m - step)
        if p_values[j] > levels[j]:
            levels[order[step:]] = levels[j]
            break
    return levels


def feature_gates(
    gain: np.ndarray,
    gain_block: int,
    feature_blocks: np.ndarray,
    dependence: np.ndarray,
    params: ConfirmParams,
    rng: np.random.Generator,
) -> np.ndarray:
    """Return per feature the one-sided lower bound at alpha of the model's held-out log-loss gain
    over the baseline, resampled in blocks as long as the longer of the gain's and the feature's
    own (its dependence sets the Student t's degrees of freedom, as for its effect).

    The gate guards a feature's verdict against a persistent column lining up with a persistent
    stretch of the target: that column's own persistence is what the gain's resampling must span.
    A block as long as the horizon's most persistent feature for every feature would let one
    persistent column (planted or noise) take the power of every other's verdict."""
    n = len(gain)
    gate_blocks = np.maximum(feature_blocks, gain_block)
    bounds = np.empty(len(feature_blocks))
    for length in np.unique(gate_blocks):
        columns = np.flatnonzero(gate_blocks == length)
        draws, _ = bootstrap_replicates(gain[:, None], int(length), params.draws, rng)
        se = float(draws.std(ddof=1))
        dofs = np.maximum(1, np.ceil(n / np.maximum(length, dependence[columns])) - 1)
        bounds[columns] = gain.mean() - student_t.ppf(1 - params.alpha, dofs) * se
    return bounds


def confirm_horizon(
    folds: list[HeldOutFold], names: list[str], block: int, params: ConfirmParams, times: np.ndarray | None = None
) -> dict[str, Any]:
    """Return the horizon's held-out verdicts (JSON-serialisable): per stable feature its
    permutation effect, 95% interval, Holm level, lower bound at it and whether it is confirmed; the
    AUC and log-loss gain over the baseline with 95% intervals, and whether the horizon is
    flagged. With `times` (each held-out row's time, in fold order) each feature's effect is also
    given summed per calendar day (`day_effects`, over `heldout_days` and their
    `heldout_day_rows`), and so is its target-driven part (`day_target_noise`, see
    permutation_effects), and that part again per clock block of POOLING_BLOCK_MINUTES
    (`block_target_noise`, over `pooling_blocks`), for the pooled test across pairs.

    A feature is confirmed when held-out rows show both that the model needs it (the one-sided
    lower bound of its effect at its Holm level is above zero) and that the model beats the
    baseline (the gain's one-sided lower bound at alpha, in the feature's blocks, is above zero:
    `feature_gates`): an intersection of tests, so the family-wise level stays alpha. A
    persistent noise column can line up with a persistent target over a short held-out stretch,
    and its permutation effect then looks real while the model it drives does no better than
    the constant."""
    if not folds:
        raise DataError("held-out confirmation needs at least one walk-forward fold")
    rng = np.random.default_rng(params.seed)
    k = len(names)
    up = np.concatenate([f.up for f in folds])
    n = len(up)
    baseline_loss = np.concatenate([row_log_loss(np.full(len(f.up), f.baseline_probability), f.up) for f in folds])
    if k:
        parts = [permutation_effects(f, params.repeats, rng) for f in folds]
        probability = np.concatenate([p for p, _, _ in parts])
        effects = np.concatenate([e for _, e, _ in parts])
        target_noise = np.concatenate([t for _, _, t in parts])
    else:  # the model is the baseline
        probability = np.concatenate([np.full(len(f.up), f.baseline_probability) for f in folds])
        effects = target_noise = np.empty((n, 0))
    gain = baseline_loss - row_log_loss(probability, up)  # > 0: the model beats the baseline
    fold_sizes = [len(f.up) for f in folds]
    # blocks at least as long as the labels' overlap, longer where a feature or its loss
    # differences stay correlated longer (persistent series), and at least 4 per resample
    cap = max(1, n // 4)
    floor = max(1, min(block, cap))
    if k:
        values = np.concatenate([f.features for f in folds]).astype(np.float64)
        dependence = np.maximum(dependence_rows(values), dependence_rows(effects))
    else:
        dependence = np.empty(0, dtype=np.int64)
    feature_blocks = np.array([block_length(int(d), floor, cap) for d in dependence], dtype=np.int64)
    # independent stretches: a block is capped at a quarter of the rows, a series' dependence is not;
    # a feature correlated over more rows than its block has fewer independent stretches than blocks
    feature_stretches = np.maximum(feature_blocks, dependence)
    gain_block = block_length(int(dependence_rows(gain[:, None])[0]), floor, cap)
    model_block = max([gain_block, *feature_blocks])
    effect_se = np.empty(k)
    for length in np.unique(feature_blocks):
        columns = np.flatnonzero(feature_blocks == length)
        draws, _ = bootstrap_replicates(effects[:, columns], int(length), params.draws, rng)
        effect_se[columns] = draws.std(axis=0, ddof=1)
    auc = float(fold_auc(probability, up, np.ones((1, n)), np.cumsum([0, *fold_sizes]))[0])
    gain_draws, auc_draws = bootstrap_replicates(
        gain[:, None], model_block, params.draws, rng, probability, up, fold_sizes
    )
    assert auc_draws is not None  # scores were given
    gain_estimate, gain_se = float(gain.mean()), float(gain_draws.std(ddof=1))
    auc_se = float(auc_draws.std(ddof=1))
    level = params.alpha / k if k else params.alpha
    # a standard error from few independent blocks: Student t with (blocks per resample - 1) dof
    model_dof = max(1, math.ceil(n / model_block) - 1)
    t95 = float(student_t.ppf(0.975, model_dof))
    gain_lower_bound = gain_estimate - float(student_t.ppf(1 - params.alpha, model_dof)) * gain_se
    beats_baseline = k > 0 and gain_lower_bound > 0
    auc_low, auc_high = auc - t95 * auc_se, auc + t95 * auc_se
    gain_low, gain_high = gain_estimate - t95 * gain_se, gain_estimate + t95 * gain_se
    reasons = []
    if auc_high < 0.5:
        reasons.append(f"held-out AUC {auc:.3f} (95% CI {auc_low:.3f} to {auc_high:.3f}) is below the baseline's 0.5")
    if gain_high < 0:
        reasons.append(
            f"held-out log loss is worse than the baseline's by {-gain_estimate:.4f} (95% CI of the gain "
            f"{gain_low:.4f} to {gain_high:.4f})"
        )
    # each day's effect and target-driven part summed in one grouping of the rows by day; the
    # target-driven part again per clock block
    by_day = by_block = pooling_blocks = None
    if times is not None:
        by_day = unit_sums(np.hstack([effects, target_noise]), times.astype("datetime64[D]"))
        by_block = unit_sums(target_noise, block_starts(times, POOLING_BLOCK_MINUTES))
        pooling_blocks = {
            "minutes": POOLING_BLOCK_MINUTES,
            "lag": label_lag(times, block, POOLING_BLOCK_MINUTES),
            "starts": np.datetime_as_string(by_block[0], unit="s", timezone="UTC").tolist(),
            "rows": by_block[1].tolist(),
        }
    estimates = effects.mean(axis=0)
    dofs = np.maximum(1, np.ceil(n / feature_stretches) - 1)
    # one-sided p-values of "no effect"; an effect with no spread at all is certain either way
    unspread = np.where(estimates > 0, np.inf, -np.inf)
    statistic = np.divide(estimates, effect_se, out=unspread, where=effect_se > 0)
    levels = holm_levels(student_t.sf(statistic, dofs), params.alpha)
    gate_bounds = feature_gates(gain, gain_block, feature_blocks, dependence, params, rng)
    features = []
    for j, name in enumerate(names):
        effect, se, length = float(estimates[j]), float(effect_se[j]), int(feature_blocks[j])
        t_interval, t_family = float(student_t.ppf(0.975, dofs[j])), float(student_t.ppf(1 - levels[j], dofs[j]))
        lower_bound = effect - t_family * se
        features.append(
            {
                "feature": name,
                "effect": effect,
                "effect_low": effect - t_interval * se,
                "effect_high": effect + t_interval * se,
                "lower_bound": lower_bound,
                "level": float(levels[j]),
                "block_rows": length,
                "dof": int(dofs[j]),
                "gate_lower_bound": float(gate_bounds[j]),
                "confirmed": bool(lower_bound > 0 and gate_bounds[j] > 0),
            }
        )
        if by_day is not None:
            features[-1]["day_effects"] = by_day[2][:, j].tolist()
            features[-1]["day_target_noise"] = by_day[2][:, k + j].tolist()
        if by_block is not None:
            features[-1]["block_target_noise"] = by_block[2][:, j].tolist()
    verdicts = {
        "k": k,
        "alpha": params.alpha,
        "level": level,
        "min_block_rows": floor,
        "block_rows": int(model_block),
        "heldout_rows": n,
        "repeats": params.repeats,
        "draws": params.draws,
        "features": features,
        "confirmed": [f["feature"] for f in features if f["confirmed"]],
        "auc": {"estimate": auc, "low": max(0.0, auc_low), "high": min(1.0, auc_high)},
        "log_loss_gain": {"estimate": gain_estimate, "low": gain_low, "high": gain_high},
        "gain_lower_bound": gain_lower_bound,
        "model_beats_baseline": bool(beats_baseline),
        "flagged": bool(reasons),
        "flag_reason": "; ".join(reasons) or None,
    }
    if by_day is not None:
        verdicts |= {"heldout_days": [str(d) for d in by_day[0]], "heldout_day_rows": by_day[1].tolist()}
    if pooling_blocks is not None:
        verdicts["pooling_blocks"] = pooling_blocks
    return verdicts
