"""Each fold's LightGBM stops where its purged training tail stops improving: few rounds on
noise, more on signal, and the settings' rounds without patience."""

from __future__ import annotations

import numpy as np
import pytest

from bqx_queue.analysis.training import TrainParams, boosting_rounds, evaluate_horizon, walk_forward_folds
from bqx_queue.config import load_settings

pytestmark = pytest.mark.unit


def _frame(signal: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(6000, 4)).astype(np.float32)
    target = signal * features[:, 0] + rng.normal(size=6000)
    return features, target


def _booster_params(params: TrainParams) -> dict:
    return {"objective": "binary", "learning_rate": params.learning_rate, "num_leaves": params.num_leaves,
            "min_data_in_leaf": params.min_data_in_leaf, "num_threads": 1, "seed": 0, "verbose": -1}  # fmt: skip


def test_early_stopping_spends_few_rounds_on_noise_and_more_on_signal():
    params = TrainParams.from_settings(load_settings(), "eurusd")
    rounds = {}
    for signal in (0.0, 0.5):
        features, target = _frame(signal)
        rounds[signal] = boosting_rounds(features, (target > 0).astype(np.float32), 60, params, _booster_params(params))
    print(f"rounds chosen: {rounds[0.0]} on noise, {rounds[0.5]} on signal (of {params.rounds})")
    assert rounds[0.0] < 10 < rounds[0.5] < params.rounds


def test_without_patience_every_fold_trains_the_settings_rounds():
    params = TrainParams.from_settings(load_settings(lgbm_patience=0, lgbm_rounds=37), "eurusd")
    features, target = _frame(0.0)
    assert boosting_rounds(features, (target > 0).astype(np.float32), 60, params, _booster_params(params)) == 37
    model = evaluate_horizon(features, target, walk_forward_folds(len(target), 4500, 2, 60), params, gap=60)
    assert [booster.num_trees() for booster in model.fold_boosters] == [37, 37]
