"""Complementary-pairs stability selection on contiguous time blocks, with its error bound.

The rows are cut into contiguous time blocks; each subsample is a union of half of the blocks
and its complement is the other half (Shah & Samworth 2013). The base selector is randomized
LARS stopped after q steps. Its columns are every feature's linear column and the nonlinear basis
columns the half chose from its own blocks (analysis/basis.py: |x|, products, gates); the unit of
selection is a feature's linear column, its |x| or a pair of features. LAR reads the Gram only through
the rows of the columns it enters, so each half's Gram is formed one row at a time from per-block
Grams (grams.py): the blocks' X'X are computed once per pair, every horizon reuses them, and a
horizon only changes X'y. Selection frequency >= threshold makes a feature stable; the
Meinshausen-Buehlmann bound E[false selections] <= q^2 / ((2 threshold - 1) p), p the units in
selection, is reported with the result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
from pydantic import Field

from bqx_queue.analysis.basis import GramColumns
from bqx_queue.analysis.clusters import MIN_MEMBER_FREQUENCY, StableCluster, stable_clusters
from bqx_queue.analysis.grams import BlockGrams, HalfGram
from bqx_queue.analysis.params import AnalysisParams, Stream, seed_sequence
from bqx_queue.config import Settings
from bqx_queue.config.settings import SelectionBlocks, SelectionPairs
from bqx_queue.domain import DataError


class SelectionParams(AnalysisParams):
    """How a pair's features are selected: B complementary pairs of halves of `blocks` time
    blocks, q features per fit, stable at `threshold` (Settings' selection_* fields)."""

    pairs: SelectionPairs
    threshold: float = Field(gt=0.5, le=1)  # the MB bound divides by 2 threshold - 1
    q: int | None = Field(ge=1)  # features per fit; None derives it from expected_false_max
    expected_false_max: float = Field(gt=0)
    blocks: SelectionBlocks
    weakness: float = Field(gt=0, le=1)  # randomized-lasso feature weights drawn from [weakness, 1]
    cluster_level: float = Field(gt=0, lt=1)  # |corr| joining substitutes into a cluster (analysis/clusters.py)
    seed: np.random.SeedSequence

    @classmethod
    def from_settings(cls, settings: Settings, pair: str) -> SelectionParams:
        """Return the selection parameters of `settings`, seeded for `pair`.

        >>> params = SelectionParams.from_settings(Settings(), "eurusd")
        >>> params.pairs, params.threshold, params.blocks
        (50, 0.8, 12)
        """
        return cls(
            pairs=settings.selection_pairs,
            threshold=settings.selection_threshold,
            q=settings.selection_q,
            expected_false_max=settings.expected_false_max,
            blocks=settings.selection_blocks,
            weakness=settings.selection_weakness,
            cluster_level=settings.substitute_correlation,
            seed=seed_sequence(settings.seed, pair, Stream.SELECTION),
        )


@dataclass(frozen=True)
class SelectionResult:
    horizon: int
    frequencies: np.ndarray  # per feature, over 2B fits
    stable: list[int]  # feature indices with frequency >= threshold, most frequent first
    q: int
    threshold: float
    fits: int
    error_bound: float  # expected number of falsely selected units (MB bound: GramColumns.units)
    column_frequencies: np.ndarray | None = None  # per Gram column (linear and basis), when they differ from features
    clusters: dict[int, StableCluster] = field(default_factory=dict)  # representative -> its stable cluster


def choose_q(p: int, threshold: float, expected_false_max: float) -> int:
    """Return the largest q whose MB bound stays within expected_false_max (at least 1)."""
    q = int(math.floor(math.sqrt(expected_false_max * (2 * threshold - 1) * p)))
    return max(1, min(q, p // 2 if p > 1 else 1))


def error_bound(q: int, p: int, threshold: float) -> float:
    """Return the Meinshausen-Buehlmann bound on expected false selections."""
    return q * q / ((2 * threshold - 1) * p)


def time_blocks(rows: np.ndarray, n_blocks: int, gap: int) -> list[np.ndarray]:
    """Return n_blocks contiguous slices of `rows`, each without its last `gap` rows, so no
    block's labels reach into the next block's time."""
    if len(rows) < n_blocks * (gap + 10):
        raise DataError(f"only {len(rows)} rows for {n_blocks} selection blocks with a gap of {gap}")
    return [part[: len(part) - gap] for part in np.array_split(rows, n_blocks)]


def lar_paths(
    gram_row: Callable[[int], np.ndarray], diagonal: np.ndarray, crosses: np.ndarray, q: int
) -> list[list[int]]:
    """Return, for each row of `crosses`, the first q features least angle regression enters.

    `gram_row(j)` gives row j of X'X; each row of `crosses` (targets, p) is an X'y of the same
    standardised (and reweighted) features; `diagonal` is X'X's diagonal (0 marks a feature that
    cannot enter). LAR adds exactly one feature per step and never drops one, so q steps give q
    features (fewer if the remaining correlations vanish or the active set becomes collinear).
    The targets' paths run in lockstep, so each step's arithmetic over p features is one array
    operation for all of them (700 fits per pair spent most of their time in per-call overhead).
    """
    correlations = np.array(crosses, dtype=np.float64, ndmin=2)
    targets, p = correlations.shape
    usable = diagonal > 1e-12
    steps_wanted = min(q, int(usable.sum()))
    rows = np.zeros((targets, steps_wanted, p))  # Gram rows of each path's active features
    active: list[list[int]] = [[] for _ in range(targets)]
    signs = np.zeros((targets, steps_wanted))
    inactive = np.repeat(usable[None, :], targets, axis=0)
    running = np.ones(targets, dtype=bool)
    everyone = np.arange(targets)
    for step in range(steps_wanted):
        candidates = np.where(inactive, np.abs(correlations), -1.0)
        best = candidates.argmax(axis=1)
        running &= candidates[everyone, best] > 1e-12
        directions = np.zeros((targets, step + 1))
        scales = np.ones(targets)
        for t in np.flatnonzero(running):
            feature = int(best[t])
            rows[t, step] = gram_row(feature)
            active[t].append(feature)
            inactive[t, feature] = False
            signs[t, step] = np.sign(correlations[t, feature])
            try:
                weights = np.linalg.solve(rows[t, : step + 1, active[t]].T, signs[t, : step + 1])
            except np.linalg.LinAlgError:
                running[t] = False
                continue
            normaliser = float(signs[t, : step + 1] @ weights)
            if normaliser <= 1e-12:
                running[t] = False
                continue
            scales[t] = 1.0 / np.sqrt(normaliser)
            directions[t] = weights * scales[t]
        if not running.any():
            break
        # how each correlation moves per unit step (one BLAS gemv per target)
        along = np.matmul(directions[:, None, :], rows[:, : step + 1])[:, 0, :]
        largest = np.abs(correlations[everyone, best])[:, None]
        scale = scales[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            down = (largest - correlations) / (scale - along)
            up = (largest + correlations) / (scale + along)
        down[~(inactive & np.isfinite(down) & (down > 1e-12))] = np.inf
        up[~(inactive & np.isfinite(up) & (up > 1e-12))] = np.inf
        steps = np.minimum(down.min(axis=1), up.min(axis=1))
        steps = np.where(np.isfinite(steps), steps, largest[:, 0] / scales)
        correlations -= np.where(running, steps, 0.0)[:, None] * along
    return active


def select_stable(
    grams: BlockGrams,
    crosses: dict[int, tuple[np.ndarray, np.ndarray]],
    params: SelectionParams,
    columns: GramColumns | None = None,
    allowed: list[np.ndarray] | None = None,
) -> dict[int, SelectionResult]:
    """Return, per horizon, selection frequencies and the stable features.

    `crosses` maps horizon -> per-block X'y of the Grams' columns and per-block target sums
    (`grams.cross(y)`). `columns` says which features each Gram column reads (a nonlinear basis
    column reads one or two); without it column j is feature j. `allowed` gives, per half of
    `complementary_halves`, which basis columns (after the linear ones) that half's LAR may enter.
    The unit of selection is a feature's linear column, its |x|, or a pair of features (its
    product or gate column, `GramColumns.units`): each fit enters at most q units, and the
    Meinshausen-Buehlmann bound counts every unit in the Grams. A feature's frequency is that of
    its most frequent unit, and it is stable when one of its units is (both features of a pair).
    """
    width = grams.features
    columns = columns or GramColumns(np.arange(width), [])
    q = min(params.q or choose_q(columns.entered, params.threshold, params.expected_false_max), width)
    rng = np.random.default_rng(params.seed)
    units = columns.units
    counts = {h: np.zeros(columns.unit_count) for h in crosses}
    column_counts = {h: np.zeros(width) for h in crosses}
    fit_sets: dict[int, list[np.ndarray]] = {h: [] for h in crosses}
    halves = complementary_halves(params, len(grams.blocks))
    for index, in_half in enumerate(halves):
        half = HalfGram(grams, in_half, rng.uniform(params.weakness, 1.0, width))
        diagonal = half.diagonal
        if allowed is not None:
            diagonal = np.where(np.r_[np.ones(columns.entered, dtype=bool), allowed[index]], diagonal, 0.0)
        half_crosses = np.stack([half.cross(xy, ysum) for xy, ysum in crosses.values()])
        for h, path in zip(crosses, lar_paths(half.row, diagonal, half_crosses, q), strict=True):
            column_counts[h][path] += 1
            counts[h][np.unique(units[path])] += 1
            fit_sets[h].append(columns.features_read(path))
    fits = len(halves)
    everything = HalfGram(grams, np.ones(len(grams.blocks), dtype=bool), np.ones(width))  # correlations
    results = {}
    for h, count in counts.items():
        frequencies = columns.feature_frequencies(count / fits)
        stable = [int(i) for i in np.argsort(-frequencies, kind="stable") if frequencies[i] >= params.threshold]
        bound = error_bound(q, columns.unit_count, params.threshold)
        result = SelectionResult(h, frequencies, stable, q, params.threshold, fits, bound, column_counts[h] / fits)
        results[h] = with_clusters(result, fit_sets[h], everything, columns, params)
    return results


def with_clusters(
    result: SelectionResult,
    fit_sets: list[np.ndarray],
    correlation: HalfGram,
    columns: GramColumns,
    params: SelectionParams,
) -> SelectionResult:
    """Return the result with its stable clusters (analysis/clusters.py): each one's most frequent
    member joins the stable features, and the bound counts the cluster as one feature."""
    position = {int(feature): k for k, feature in enumerate(columns.linear)}
    candidates = np.array(
        [j for j in np.flatnonzero(result.frequencies >= MIN_MEMBER_FREQUENCY) if int(j) in position], dtype=np.int64
    )
    if len(candidates) < 2:
        return result
    rows = np.stack([correlation.row(position[int(j)]) for j in candidates])
    correlations = rows[:, [position[int(j)] for j in candidates]]
    found = stable_clusters(
        fit_sets, result.frequencies, correlations, candidates, params.threshold, params.cluster_level
    )
    if not found:
        return result
    merged = sum(len(c.members) - 1 for c in found)
    return replace(
        result,
        stable=result.stable + [c.representative for c in found],
        clusters={c.representative: c for c in found},
        error_bound=error_bound(result.q, max(1, columns.unit_count - merged), params.threshold),
    )


def complementary_halves(params: SelectionParams, n_blocks: int) -> list[np.ndarray]:
    """Return the 2B half-samples of the selection (block masks: a first half, then its
    complement), drawn from their own stream of the selection seed, so that the nonlinear basis
    (analysis/basis.py) and LAR see the same halves."""
    seed = np.random.SeedSequence(params.seed.entropy, spawn_key=(*params.seed.spawn_key, 0))
    firsts = first_halves(np.random.default_rng(seed), n_blocks, params.pairs)
    return [half for first in firsts for half in (first, ~first)]


def first_halves(rng: np.random.Generator, n_blocks: int, pairs: int) -> Iterator[np.ndarray]:
    """Yield, per complementary pair, a mask of the blocks in its first half (the complement
    is the second half)."""
    if n_blocks < 2:
        raise DataError("stability selection needs at least 2 time blocks")
    for _ in range(pairs):
        first = np.zeros(n_blocks, dtype=bool)
        first[rng.permutation(n_blocks)[: n_blocks // 2]] = True
        yield first


def selection_results(
    counts: dict[int, np.ndarray], fits: int, q: int, p: int, threshold: float
) -> dict[int, SelectionResult]:
    """Return per-horizon results from how often each feature was selected in `fits` fits."""
    results = {}
    for h, count in counts.items():
        frequencies = count / fits
        stable = [int(i) for i in np.argsort(-frequencies, kind="stable") if frequencies[i] >= threshold]
        results[h] = SelectionResult(h, frequencies, stable, q, threshold, fits, error_bound(q, p, threshold))
    return results
