"""What a confirmed nonlinear feature does: the target's mean across its values, on held-out rows.

A dependence curve bins the feature's held-out values at their deciles and gives the mean target
(the 45-row return, in percent) of each bin; for a product or gate it draws one curve per side of
the partner (partner above its median, and at or below it), so a regime gate shows as two lines
of opposite slope. The curves describe the held-out rows; they are a picture, not a test.

>>> rng = np.random.default_rng(0)
>>> x, v = rng.standard_normal(5000), rng.standard_normal(5000)
>>> curve = dependence_curve(x, x * np.sign(v), partner=v)
>>> above, below = curve["series"]["partner above median"], curve["series"]["partner at or below"]
>>> above[-1] > 1, below[-1] < -1  # x pushes up where v > 0 and down where v < 0
(True, True)
>>> few = dependence_curve(np.r_[np.zeros(900), np.ones(100)], np.ones(1000))  # 90% of the rows at 0
>>> few["x"], few["series"]["all held-out rows"]
([0.0, 1.0], [1.0, 1.0])
"""

from __future__ import annotations

from typing import Any

import numpy as np

DEPENDENCE_BINS = 10
MIN_BIN_ROWS = 20  # a bin with fewer rows on one side of the partner is left blank


def _bin_means(values: np.ndarray, target: np.ndarray, edges: np.ndarray) -> list[float | None]:
    codes = np.searchsorted(edges, values, side="right")
    counts = np.bincount(codes, minlength=len(edges) + 1)
    sums = np.bincount(codes, weights=target, minlength=len(edges) + 1)
    return [round(float(s / c), 6) if c >= MIN_BIN_ROWS else None for s, c in zip(sums, counts, strict=True)]


def dependence_curve(values: np.ndarray, target: np.ndarray, partner: np.ndarray | None = None) -> dict[str, Any]:
    """Return the bins' centres (the feature's held-out median per decile) and the mean target
    per bin: one series, or one per side of the partner's median for a pair."""
    edges = np.unique(np.quantile(values, np.arange(1, DEPENDENCE_BINS) / DEPENDENCE_BINS))
    codes = np.searchsorted(edges, values, side="right")
    # a feature with few distinct values can leave a bin empty (an edge at its minimum): no point there
    kept = np.flatnonzero(np.bincount(codes, minlength=len(edges) + 1) > 0)
    centres = [round(float(np.median(values[codes == k])), 4) for k in kept]
    if partner is None:
        series = {"all held-out rows": _bin_means(values, target, edges)}
    else:
        above = partner > np.median(partner)
        series = {
            "partner above median": _bin_means(values[above], target[above], edges),
            "partner at or below": _bin_means(values[~above], target[~above], edges),
        }
    return {"x": centres, "series": {name: [means[k] for k in kept] for name, means in series.items()}}
