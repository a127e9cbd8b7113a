"""SHAP importances of a horizon's final model, on rows it was not trained on."""

from __future__ import annotations

import warnings

import lightgbm as lgb
import numpy as np
import shap

# shap says on every call that its binary LightGBM output format changed; the list is handled
# below. A filter set once: catch_warnings is not thread-safe, and a pair's horizons run in threads.
warnings.filterwarnings("ignore", "LightGBM binary classifier with TreeExplainer", UserWarning)


def shap_importance(
    booster: lgb.Booster,
    held_out: np.ndarray,
    names: list[str],
    max_rows: int,
    seed: int | np.random.SeedSequence,
) -> list[tuple[str, float]]:
    """Return (feature, mean |SHAP|) for every feature, largest first.

    TreeSHAP with no background data (path-dependent, exact for trees); the additivity check
    stays on so a disagreement with the model's own output fails loudly.
    """
    rng = np.random.default_rng(seed)
    if len(held_out) > max_rows:
        held_out = held_out[np.sort(rng.choice(len(held_out), max_rows, replace=False))]
    values = shap.TreeExplainer(booster).shap_values(held_out, check_additivity=True)
    if isinstance(values, list):  # one array per class: keep the positive class
        values = values[-1]
    importance = np.abs(np.asarray(values)).mean(axis=0)
    order = np.argsort(-importance, kind="stable")
    return [(names[i], float(importance[i])) for i in order]
