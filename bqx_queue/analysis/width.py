"""How wide a pair may be: its predicted peak memory, and which features enter selection.

A pair's resident memory has two phases. While it is fetched and prepared, it holds the matrix
(rows x width float32). Then the matrix goes to a scratch file (spill.py) and selection holds the
block Grams of the features that enter it: full symmetric matrices when they fit the budget
(fastest), else packed triangles (half the memory). When even packed Grams of every feature do
not fit, the features with the weakest binned association with every target (analysis/basis.py: it sees
thresholds, squares and U shapes as well as lines) are screened out before selection, except those
in a candidate product or gate, each with its reason in the ledger, and the error bound is stated over the
features that entered. So the peak is the overhead plus the larger of the two phases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bqx_queue.analysis.grams import FLOAT32_BYTES, PANEL_COLUMNS, gram_bytes

# The interpreter with numpy, pandas, LightGBM, SHAP and DuckDB loaded, and the targets and
# crosses (0.45 GiB measured after the spill at 6,500 features), and the transients of building
# the Grams and of the models (0.15 GiB more seen at 5,000 features).
OVERHEAD_BYTES = 640 * 1024**2
# While the matrix fills: the warehouse's own buffers and result batches. The embedded source
# caps DuckDB at DUCKDB_MEMORY_LIMIT (1 GB); with its later statements unordered (faster), about
# 1.1 GiB above the matrix and the interpreter was measured at 2,000 and at 6,500 features.
FETCH_BYTES = 1280 * 1024**2
# The plan leaves this share of the budget free: RSS sampling and allocator slack.
HEADROOM = 0.9
MIN_SELECTION_FEATURES = 500
HORIZONS_AT_ONCE = 7


@dataclass(frozen=True)
class PeakEstimate:
    """Predicted resident memory of one pair and what it is made of."""

    rows: int
    width: int
    selection_features: int  # linear columns in the Grams: the features that enter selection
    blocks: int
    packed: bool
    extra_columns: int = 0  # nonlinear basis columns beside them (analysis/basis.py)
    basis_bytes: int = 0  # the basis statistics' working memory, held beside the matrix

    @property
    def matrix_bytes(self) -> int:
        return self.rows * self.width * FLOAT32_BYTES

    @property
    def selection_bytes(self) -> int:
        p = self.selection_features + self.extra_columns
        building = self.rows // self.blocks * p * FLOAT32_BYTES  # one block's rows
        if self.packed:
            building += p * PANEL_COLUMNS * FLOAT32_BYTES
        # a half's Gram rows (float64), cached and in the LAR paths: about q per horizon, q ~ sqrt(2 p)
        cached_rows = 2 * HORIZONS_AT_ONCE * math.isqrt(2 * p) * p * 8
        return gram_bytes(p, self.blocks, self.packed) + building + cached_rows

    @property
    def peak_bytes(self) -> int:
        return OVERHEAD_BYTES + max(self.matrix_bytes + max(FETCH_BYTES, self.basis_bytes), self.selection_bytes)


def plan_memory(
    rows: int,
    width: int,
    blocks: int,
    budget_bytes: int,
    max_features: int | None,
    extra_columns: int = 0,
    basis_bytes: int = 0,
) -> PeakEstimate:
    """Return the pair's memory plan: every feature (or `max_features`) in full Grams beside the
    `extra_columns` of the nonlinear basis if they fit the budget, else packed, else the most
    features whose packed Grams fit (at least MIN_SELECTION_FEATURES). Its peak may still be above
    the budget when the matrix alone is."""
    target = HEADROOM * budget_bytes

    def estimate(features: int, packed: bool) -> PeakEstimate:
        return PeakEstimate(rows, width, features, blocks, packed, extra_columns, basis_bytes)

    def fits(plan: PeakEstimate) -> bool:  # selection's phase: the fetch's does not depend on p
        return OVERHEAD_BYTES + plan.selection_bytes <= target

    features = min(width, max_features or width)
    for packed in (False, True):
        if fits(plan := estimate(features, packed)):
            return plan
    low, high = min(features, MIN_SELECTION_FEATURES), features
    while high - low > 1:  # the peak grows with p: bisect for the widest that fits
        middle = (low + high) // 2
        if fits(estimate(middle, True)):
            low = middle
        else:
            high = middle
    return estimate(low, True)


def screen(strength: np.ndarray, keep: int, protected: set[int] | frozenset[int] = frozenset()) -> np.ndarray:
    """Return the indices of the `protected` features and of the strongest others, `keep` in
    all (or every protected one, if they are more), in column order."""
    if keep >= len(strength):
        return np.arange(len(strength))
    chosen = np.zeros(len(strength), dtype=bool)
    chosen[list(protected)] = True
    order = [j for j in np.argsort(-strength, kind="stable") if not chosen[j]]
    chosen[order[: max(0, keep - int(chosen.sum()))]] = True
    return np.flatnonzero(chosen)
