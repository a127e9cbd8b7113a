"""SHAP importances of a horizon's final model, and each feature's strongest interaction partner,
on rows it was not trained on."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import shap

# shap says on every call that its binary LightGBM output format changed; the list is handled
# below. A filter set once: catch_warnings is not thread-safe, and a pair's horizons run in threads.
warnings.filterwarnings("ignore", "LightGBM binary classifier with TreeExplainer", UserWarning)

# Interaction values are explained this many rows at a time: one call holds rows x (k + 1)^2
# float64, 36 MB at k = 150 stable features, whatever `interaction_rows` is.
INTERACTION_CHUNK_ROWS = 200


@dataclass(frozen=True)
class InteractionPartner:
    """A feature's strongest interaction partner in a model's SHAP interaction values."""

    feature: str
    partner: str
    share: float  # the partner's share of the feature's off-diagonal mean |interaction| mass
    interaction: float  # that off-diagonal mass over the feature's whole row (its main effect included)


def explained_rows(rows: int, max_rows: int, seed: int | np.random.SeedSequence) -> np.ndarray:
    """Return the positions, in time order, of the held-out rows SHAP explains: every one of
    `rows`, or `max_rows` of them drawn without replacement (the same draw for the same seed)."""
    if rows <= max_rows:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, max_rows, replace=False))


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
    held_out = held_out[explained_rows(len(held_out), max_rows, seed)]
    values = shap.TreeExplainer(booster).shap_values(held_out, check_additivity=True)
    if isinstance(values, list):  # one array per class: keep the positive class
        values = values[-1]
    importance = np.abs(np.asarray(values)).mean(axis=0)
    order = np.argsort(-importance, kind="stable")
    return [(names[i], float(importance[i])) for i in order]


def interaction_partners(
    booster: lgb.Booster,
    held_out: np.ndarray,
    names: list[str],
    features: Sequence[str],
    max_rows: int,
    interaction_rows: int,
    seed: int | np.random.SeedSequence,
) -> list[InteractionPartner]:
    """Return, for each of `features` (in their order), its strongest interaction partner in the
    model: the other feature with the largest mean |SHAP interaction value| on held-out rows, and
    that partner's share of the feature's off-diagonal mass.

    The rows are those `shap_importance` explains with the same `max_rows` and seed, thinned to
    `interaction_rows` evenly spaced in time: path-dependent TreeSHAP interaction values cost
    about (model features) times a SHAP pass per row (tens of milliseconds per row at 150
    features and 200 trees; figures in the README's "The report"). A feature
    with no interaction in the model (a model of one feature, or one whose trees never split
    on it beside another) has no entry.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((4000, 4))
    >>> up = (x[:, 0] * x[:, 1] + 0.5 * x[:, 2] + rng.standard_normal(4000) > 0).astype(float)
    >>> params = {"objective": "binary", "num_leaves": 7, "verbose": -1, "seed": 0}
    >>> booster = lgb.train(params, lgb.Dataset(x[:3000], up[:3000]), num_boost_round=60)
    >>> names = ["x1", "x2", "x3", "noise"]
    >>> found = interaction_partners(booster, x[3000:], names, ["x1", "x2"], 1000, 300, seed=0)
    >>> [(p.feature, p.partner) for p in found], found[0].share > 0.5
    ([('x1', 'x2'), ('x2', 'x1')], True)
    """
    wanted = [names.index(feature) for feature in features]
    if not wanted or len(names) < 2:
        return []
    rows = explained_rows(len(held_out), max_rows, seed)
    if len(rows) > interaction_rows:  # evenly spaced: the thinned rows still span the held-out window
        rows = rows[np.unique(np.linspace(0, len(rows) - 1, interaction_rows).round().astype(np.int64))]
    explainer = shap.TreeExplainer(booster)
    mass = np.zeros((len(names), len(names)))
    for chunk in np.array_split(rows, math.ceil(len(rows) / INTERACTION_CHUNK_ROWS)):
        values = explainer.shap_interaction_values(held_out[chunk])
        if isinstance(values, list):  # one array per class (older shap): keep the positive class
            values = values[-1]
        values = np.asarray(values)
        if values.ndim == 4:  # (rows, features, features, outputs): keep the positive class
            values = values[..., -1]
        mass += np.abs(values).sum(axis=0)
    mass /= len(rows)
    partners = []
    for i in wanted:
        off_diagonal = mass[i].copy()
        off_diagonal[i] = 0.0
        total = off_diagonal.sum()
        if total <= 0:
            continue
        j = int(np.argmax(off_diagonal))
        partners.append(
            InteractionPartner(names[i], names[j], float(off_diagonal[j] / total), float(total / mass[i].sum()))
        )
    return partners
