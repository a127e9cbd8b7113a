"""A pair-horizon's stable features beyond their verdicts: which are substitutes for each other
(analysis/substitutes.py) and whether the confirmed ones held in every era (analysis/eras.py).
Both read the pair's prepared matrix, so they run where the pair runs."""

from __future__ import annotations

from typing import Any

import numpy as np

from bqx_queue.analysis.eras import EraParams, era_frequencies
from bqx_queue.analysis.prepare import PreparedPair
from bqx_queue.analysis.substitutes import substitute_clusters
from bqx_queue.config import Settings
from bqx_queue.domain import target_column


def stable_structure(
    prepared: PreparedPair,
    selection_rows: np.ndarray,
    stable_names: list[str],
    confirmed: list[str],
    horizon: int,
    settings: Settings,
) -> dict[str, Any]:
    """Return the horizon's `substitutes` (clusters of its stable features on the selection rows,
    at |corr| >= substitute_correlation) and `eras` (per-era selection frequency of its confirmed
    features; None when nothing was confirmed)."""
    index = {name: j for j, name in enumerate(prepared.features)}
    stable = [index[name] for name in stable_names]
    values = prepared.matrix[np.ix_(selection_rows, np.asarray(stable, dtype=np.int64))] if stable else np.empty((0, 0))
    clusters = substitute_clusters(values, stable_names, settings.substitute_correlation)
    eras = None
    if confirmed:
        params = EraParams.from_settings(settings, prepared.pair, horizon)
        target = prepared.targets[target_column(horizon)].to_numpy()
        eras = era_frequencies(
            prepared.matrix, prepared.rows, prepared.times[prepared.rows], target, stable, stable_names, horizon, params
        )
        eras["features"] = [f | {"confirmed": f["feature"] in confirmed} for f in eras["features"]]
    return {"substitutes": {"level": settings.substitute_correlation, "clusters": clusters}, "eras": eras}
