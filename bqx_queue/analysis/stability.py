"""Complementary-pairs stability selection on contiguous time blocks, with its error bound.

The rows are cut into contiguous time blocks; each subsample is a union of half of the blocks
and its complement is the other half (Shah & Samworth 2013). The base selector is randomized
LARS stopped after q steps. LAR reads the Gram only through the rows of the features it enters,
so each half's Gram is formed one row at a time from per-block Grams (grams.py): the blocks'
X'X are computed once per pair, every horizon reuses them, and a horizon only changes X'y.
Selection frequency >= threshold makes a feature stable; the Meinshausen-Buehlmann bound
E[false selections] <= q^2 / ((2 threshold - 1) p) is reported with the result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from bqx_queue.analysis.grams import BlockGrams, HalfGram
from bqx_queue.errors import DataError


@dataclass(frozen=True)
class SelectionParams:
    pairs: int = 50  # B complementary pairs: 2B fits per horizon
    threshold: float = 0.8
    q: int | None = None  # features per fit; None derives it from expected_false_max
    expected_false_max: float = 2.0
    blocks: int = 12
    weakness: float = 0.5  # randomized-lasso feature weights drawn from [weakness, 1]
    seed: int = 0


@dataclass(frozen=True)
class SelectionResult:
    horizon: int
    frequencies: np.ndarray  # per feature, over 2B fits
    stable: list[int]  # feature indices with frequency >= threshold, most frequent first
    q: int
    threshold: float
    fits: int
    error_bound: float  # expected number of falsely selected features (MB bound)


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


def lar_first_q(gram_row: Callable[[int], np.ndarray], diagonal: np.ndarray, cross: np.ndarray, q: int) -> list[int]:
    """Return the first q features least angle regression enters, in order.

    `gram_row(j)` gives row j of X'X and `cross` is X'y, both of standardised (and reweighted)
    features; `diagonal` is X'X's diagonal (0 marks a feature that cannot enter). LAR adds
    exactly one feature per step and never drops one, so q steps give q features (fewer if the
    remaining correlations vanish or the active set becomes collinear).
    """
    correlations = cross.astype(np.float64, copy=True)
    usable = diagonal > 1e-12
    steps_wanted = min(q, int(usable.sum()))
    rows = np.empty((steps_wanted, len(correlations)))  # Gram rows of the active features
    active: list[int] = []
    signs: list[float] = []
    inactive = usable.copy()
    for _ in range(steps_wanted):
        candidates = np.where(inactive, np.abs(correlations), -1.0)
        best = int(np.argmax(candidates))
        if candidates[best] <= 1e-12:
            break
        rows[len(active)] = gram_row(best)
        active.append(best)
        inactive[best] = False
        signs.append(float(np.sign(correlations[best])))
        block = rows[: len(active), active]
        sign_vector = np.array(signs)
        try:
            weights = np.linalg.solve(block, sign_vector)
        except np.linalg.LinAlgError:
            break
        normaliser = float(sign_vector @ weights)
        if normaliser <= 1e-12:
            break
        scale = 1.0 / np.sqrt(normaliser)
        direction = weights * scale
        along = direction @ rows[: len(active)]  # how each correlation moves per unit step
        largest = abs(correlations[best])
        free_correlations, free_along = correlations[inactive], along[inactive]
        with np.errstate(divide="ignore", invalid="ignore"):
            steps = np.concatenate(
                [
                    (largest - free_correlations) / (scale - free_along),
                    (largest + free_correlations) / (scale + free_along),
                ]
            )
        steps = steps[np.isfinite(steps) & (steps > 1e-12)]
        step = float(steps.min()) if steps.size else largest / scale
        correlations -= step * along
    return active


def select_stable(
    grams: BlockGrams,
    crosses: dict[int, tuple[np.ndarray, np.ndarray]],
    params: SelectionParams,
) -> dict[int, SelectionResult]:
    """Return, per horizon, selection frequencies and the stable features (indices into
    `grams.columns`).

    `crosses` maps horizon -> per-block X'y of the Grams' columns and per-block target sums
    (`grams.cross(y)`).
    """
    n_blocks, p = len(grams.blocks), grams.features
    q = min(params.q or choose_q(p, params.threshold, params.expected_false_max), p)
    rng = np.random.default_rng(params.seed)
    counts = {h: np.zeros(p) for h in crosses}
    for first in first_halves(rng, n_blocks, params.pairs):
        for in_half in (first, ~first):
            half = HalfGram(grams, in_half, rng.uniform(params.weakness, 1.0, p))
            for h, (xy, ysum) in crosses.items():
                counts[h][lar_first_q(half.row, half.diagonal, half.cross(xy, ysum), q)] += 1
    return selection_results(counts, 2 * params.pairs, q, p, params.threshold)


def first_halves(rng: np.random.Generator, n_blocks: int, pairs: int) -> Iterator[np.ndarray]:
    """Yield, per complementary pair, a mask of the blocks in its first half (the complement
    is the second half)."""
    if n_blocks < 2:
        raise DataError("stability selection needs at least 2 time blocks")
    for _ in range(pairs):
        first = np.zeros(n_blocks, dtype=bool)
        first[rng.permutation(n_blocks)[: n_blocks // 2]] = True
        yield first


def selection_results(counts: dict[int, np.ndarray], fits: int, q: int, p: int, threshold: float) -> dict[int, SelectionResult]:
    """Return per-horizon results from how often each feature was selected in `fits` fits."""
    results = {}
    for h, count in counts.items():
        frequencies = count / fits
        stable = [int(i) for i in np.argsort(-frequencies, kind="stable") if frequencies[i] >= threshold]
        results[h] = SelectionResult(h, frequencies, stable, q, threshold, fits, error_bound(q, p, threshold))
    return results
