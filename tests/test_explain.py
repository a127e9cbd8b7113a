"""The model's partner: on a frame where the target moves with x1 * x2 and with x3 alone, the final
model's SHAP interaction values name x2 as x1's partner and x1 as x2's, and x3 acts mostly alone."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from bqx_queue.analysis.explain import explained_rows, interaction_partners
from bqx_queue.analysis.training import TrainParams, evaluate_horizon, walk_forward_folds
from bqx_queue.config import load_settings

pytestmark = pytest.mark.unit

NAMES = ["x1", "x2", "x3", *(f"noise_{i}" for i in range(7))]


@pytest.fixture(scope="module")
def final_model() -> tuple[lgb.Booster, np.ndarray]:
    """The horizon's final model as pair.py trains it (walk-forward folds, the settings' LightGBM),
    and its held-out rows."""
    rng = np.random.default_rng(7)
    n = 12_000
    features = rng.standard_normal((n, len(NAMES))).astype(np.float32)
    target = 0.8 * features[:, 0] * features[:, 1] + 0.4 * features[:, 2] + rng.standard_normal(n)
    params = TrainParams.from_settings(load_settings(), "eurusd")
    folds = walk_forward_folds(n, 9000, 2, 60)
    model = evaluate_horizon(features, target, folds, params, gap=60)
    assert model.booster is not None
    return model.booster, features[model.test_rows]


def test_the_members_of_a_product_name_each_other_as_model_partners(final_model):
    booster, held_out = final_model
    found = interaction_partners(booster, held_out, NAMES, ["x1", "x2", "x3"], 10_000, 300, seed=3)
    partners = {p.feature: p for p in found}
    assert [p.feature for p in found] == ["x1", "x2", "x3"]
    assert (partners["x1"].partner, partners["x2"].partner) == ("x2", "x1")
    # the partner holds most of a member's interaction mass, far above an even split over 9 others
    assert partners["x1"].share > 0.4 and partners["x2"].share > 0.4
    # a product acts through its partner; the line x3 mostly alone
    assert min(partners["x1"].interaction, partners["x2"].interaction) > partners["x3"].interaction
    assert all(0 < p.share <= 1 and 0 < p.interaction < 1 for p in found)


def test_the_interaction_pass_thins_the_rows_shap_importance_explains(final_model):
    booster, held_out = final_model
    subsample = explained_rows(len(held_out), 500, 3)  # shap_importance's rows for max_rows 500, seed 3
    assert np.array_equal(subsample, explained_rows(len(held_out), 500, 3)) and len(subsample) == 500
    assert len(explained_rows(len(held_out), 10**6, 3)) == len(held_out)
    found = interaction_partners(booster, held_out, NAMES, ["x2"], 500, 100, seed=3)
    # the same partners from those 500 rows handed over as the whole held-out set
    assert found == interaction_partners(booster, held_out[subsample], NAMES, ["x2"], 10**6, 100, seed=99)
    assert [(p.feature, p.partner) for p in found] == [("x2", "x1")]
    assert interaction_partners(booster, held_out, NAMES, [], 500, 100, seed=3) == []  # nothing asked, no pass
