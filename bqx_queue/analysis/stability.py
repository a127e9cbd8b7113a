"""Complementary-pairs stability selection on contiguous time blocks, with its error bound.

The rows are cut into contiguous time blocks; each subsample is a union of half of the blocks
and its complement is the other half (Shah & Samworth 2013). The base selector is randomized
LARS stopped after q steps, run on Gram matrices: X'X is computed once per block, so every
subsample of every horizon is a sum of block matrices, and a horizon only changes X'y.
Selection frequency >= threshold makes a feature stable; the Meinshausen-Buehlmann bound
E[false selections] <= q^2 / ((2 threshold - 1) p) is reported with the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import lars_path_gram

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


class BlockGrams:
    """Per-block sufficient statistics of the standardised matrix, shared by all horizons."""

    def __init__(self, matrix: np.ndarray, blocks: list[np.ndarray]) -> None:
        self.matrix = matrix
        self.blocks = blocks
        self.counts = np.array([len(b) for b in blocks], dtype=np.float64)
        self.sums = np.stack([matrix[b].sum(axis=0, dtype=np.float64) for b in blocks])
        self.grams = np.stack([_gram(matrix, b) for b in blocks])

    def cross(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return per-block X'y (blocks, p) and y sums (blocks,) for a target on all rows."""
        xy = np.stack([_cross(self.matrix, b, y[b]) for b in self.blocks])
        return xy, np.array([y[b].sum() for b in self.blocks])


def _block_rows(matrix: np.ndarray, block: np.ndarray) -> np.ndarray:
    """Return the block's rows: a view when they are contiguous (the usual case), else a copy."""
    if len(block) and block[-1] - block[0] + 1 == len(block):
        return matrix[block[0] : block[-1] + 1]
    return matrix[block]


def _gram(matrix: np.ndarray, block: np.ndarray) -> np.ndarray:
    part = _block_rows(matrix, block)
    return part.T @ part


def _cross(matrix: np.ndarray, block: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (_block_rows(matrix, block).T @ y.astype(matrix.dtype)).astype(np.float64)


def select_stable(
    grams: BlockGrams,
    targets: dict[int, np.ndarray],
    params: SelectionParams,
) -> dict[int, SelectionResult]:
    """Return, per horizon, selection frequencies and the stable features.

    `targets` maps horizon -> target values on every row of the matrix (only block rows are read).
    """
    n_blocks, p = grams.sums.shape
    if n_blocks < 2:
        raise DataError("stability selection needs at least 2 time blocks")
    q = params.q or choose_q(p, params.threshold, params.expected_false_max)
    q = min(q, p)
    rng = np.random.default_rng(params.seed)
    crosses = {h: grams.cross(y) for h, y in targets.items()}
    counts = {h: np.zeros(p) for h in targets}
    total_gram = grams.grams.sum(axis=0, dtype=np.float64)
    total_sums = grams.sums.sum(axis=0)
    half = n_blocks // 2
    for _ in range(params.pairs):
        chosen = rng.permutation(n_blocks)
        first = np.zeros(n_blocks, dtype=bool)
        first[chosen[:half]] = True
        # complementary halves: the second is the total minus the first, one sum per pair
        gram_a = grams.grams[first].sum(axis=0, dtype=np.float64)
        sums_a, n_a = grams.sums[first].sum(axis=0), grams.counts[first].sum()
        halves = (
            (first, gram_a, sums_a, n_a),
            (~first, total_gram - gram_a, total_sums - sums_a, grams.counts.sum() - n_a),
        )
        for in_half, gram, sums, n in halves:
            weights = rng.uniform(params.weakness, 1.0, p)
            centred = gram - np.outer(sums, sums) / n
            variance = np.clip(np.diag(centred).copy(), 0, None)
            scale = np.divide(weights, np.sqrt(variance), out=np.zeros(p), where=variance > 1e-12)
            centred *= scale[:, None]
            centred *= scale[None, :]
            for h, (xy, ysum) in crosses.items():
                cross = (xy[in_half].sum(axis=0) - sums * ysum[in_half].sum() / n) * scale
                _, active, _ = lars_path_gram(cross, centred, n_samples=int(n), max_iter=q, method="lar")
                counts[h][np.asarray(active, dtype=int)] += 1
    fits = 2 * params.pairs
    results = {}
    for h, count in counts.items():
        frequencies = count / fits
        stable = [int(i) for i in np.argsort(-frequencies, kind="stable") if frequencies[i] >= params.threshold]
        results[h] = SelectionResult(h, frequencies, stable, q, params.threshold, fits, error_bound(q, p, params.threshold))
    return results
