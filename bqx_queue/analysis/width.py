"""How wide a pair may be: its predicted peak memory, and which features enter selection.

A pair's resident memory is the prepared matrix (rows x width float32) plus the packed block
Grams of the features that enter selection (blocks x p^2 / 2 float32) plus a fixed overhead.
The matrix is fixed by the data; the Grams are not: when every feature's Gram would not fit the
pair's memory budget, the features with the weakest marginal correlation with every target are
screened out before selection, each with its reason in the ledger, and the error bound is
stated over the features that entered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bqx_queue.analysis.grams import FLOAT32_BYTES, packed_bytes

# Interpreter, numpy/pandas/LightGBM/SHAP/DuckDB, the fetch's Arrow batches, preparation
# temporaries and LightGBM's Datasets: measured with bench/pair.py at 2,000 to 17,000 features.
OVERHEAD_BYTES = 700 * 1024**2
# Selection should leave this share of the budget free: RSS sampling and allocator slack.
HEADROOM = 0.92
MIN_SELECTION_FEATURES = 500


@dataclass(frozen=True)
class PeakEstimate:
    """Predicted resident memory of one pair and what it is made of."""

    rows: int
    width: int
    selection_features: int
    blocks: int

    @property
    def matrix_bytes(self) -> int:
        return self.rows * self.width * FLOAT32_BYTES

    @property
    def gram_bytes(self) -> int:
        p = self.selection_features
        # the packed Grams, plus one full p x p buffer and one block's rows while they are built
        return packed_bytes(p, self.blocks) + p * p * FLOAT32_BYTES + self.rows // self.blocks * p * FLOAT32_BYTES

    @property
    def peak_bytes(self) -> int:
        return OVERHEAD_BYTES + self.matrix_bytes + self.gram_bytes


def selection_width(rows: int, width: int, blocks: int, budget_bytes: int, max_features: int | None) -> int:
    """Return how many features enter selection: all of them, `max_features` if set, or the most
    whose block Grams fit the budget beside the matrix (at least MIN_SELECTION_FEATURES)."""
    if max_features is not None:
        return min(width, max_features)
    target = HEADROOM * budget_bytes
    low, high = min(width, MIN_SELECTION_FEATURES), width
    if PeakEstimate(rows, width, high, blocks).peak_bytes <= target:
        return high
    while high - low > 1:  # the peak grows with p: bisect for the widest that fits
        middle = (low + high) // 2
        if PeakEstimate(rows, width, middle, blocks).peak_bytes <= target:
            low = middle
        else:
            high = middle
    return low


def predict_peak(rows: int, width: int, blocks: int, budget_bytes: int, max_features: int | None) -> PeakEstimate:
    """Return the predicted peak of a pair of this many rows and features under these settings."""
    return PeakEstimate(rows, width, selection_width(rows, width, blocks, budget_bytes, max_features), blocks)


def screen(strength: np.ndarray, keep: int) -> np.ndarray:
    """Return the indices of the `keep` features with the largest strength, in column order."""
    if keep >= len(strength):
        return np.arange(len(strength))
    order = np.argsort(-strength, kind="stable")
    return np.sort(order[:keep])


def marginal_strength(crosses: list[np.ndarray], ysum: list[float], yss: list[float], n: float) -> np.ndarray:
    """Return each feature's largest |correlation| with any target over the selection rows.

    `crosses` are X'y per target over those rows; features are standardised on the pair's rows,
    so each feature's spread is taken as 1 and only the target's is measured (`ysum`, `yss`:
    sum and sum of squares of each target)."""
    strength = np.zeros(len(crosses[0]))
    for cross, total, squares in zip(crosses, ysum, yss, strict=True):
        spread = np.sqrt(max(squares / n - (total / n) ** 2, 1e-300))
        np.maximum(strength, np.abs(cross) / (n * spread), out=strength)
    return strength
