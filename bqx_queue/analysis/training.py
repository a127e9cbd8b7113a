"""LightGBM per horizon on the stable features, scored by purged walk-forward CV.

Folds cut the held-out end of the history (rows selection never saw) into consecutive test
windows; each trains on every row before its window minus a purge of horizon + target window
rows (their labels overlap the test window) and an embargo of about 1% of rows, or of the stable
features' dependence where that is longer (analysis/pair.py says why).

Each fold's number of boosting rounds is chosen on its own training rows: early stopping on the
last `validation_fraction` of them (purged from the rows it fits on as the test window is), then
a refit on all of them for that many rounds. A fixed 200 rounds overfit the weak signal of the
long horizons, and a model worse than the constant on held-out rows confirms nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
from pydantic import Field
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from bqx_queue.analysis.params import AnalysisParams, Stream, lightgbm_seed, seed_sequence
from bqx_queue.config import Settings
from bqx_queue.domain import DataError

MIN_TRAIN_ROWS = 100
FEATURES_PER_THREAD = 32


def model_threads(threads: int, features: int) -> int:
    """Return the threads a model on `features` columns should use: LightGBM splits its work by
    feature, so on a handful of stable features extra OpenMP threads only spin, and on a busy
    host that spinning made a 200-round fit 20x slower (bench: 0.8 s on 1 thread, 18 s on 2)."""
    return max(1, min(threads, features // FEATURES_PER_THREAD))


class TrainParams(AnalysisParams):
    """How a horizon's LightGBM models are trained (Settings' lgbm_* fields)."""

    rounds: int = Field(ge=1)
    learning_rate: float = Field(gt=0, le=1)
    num_leaves: int = Field(ge=2)
    min_data_in_leaf: int = Field(ge=1)
    patience: int = Field(ge=0)  # rounds without improvement before early stopping; 0: always `rounds`
    validation_fraction: float = Field(gt=0, lt=1)  # the training tail early stopping scores on
    threads: int = Field(ge=1)
    seed: np.random.SeedSequence

    @classmethod
    def from_settings(cls, settings: Settings, pair: str, threads: int = 1) -> TrainParams:
        """Return the training parameters of `settings`, seeded for `pair`, on `threads` threads."""
        return cls(
            rounds=settings.lgbm_rounds,
            learning_rate=settings.lgbm_learning_rate,
            num_leaves=settings.lgbm_num_leaves,
            min_data_in_leaf=settings.lgbm_min_data_in_leaf,
            patience=settings.lgbm_patience,
            validation_fraction=settings.lgbm_validation_fraction,
            threads=threads,
            seed=seed_sequence(settings.seed, pair, Stream.MODELS),
        )


@dataclass
class HorizonModel:
    folds: list[dict[str, float]]
    mean: dict[str, float]
    baseline: dict[str, float]
    booster: lgb.Booster | None  # the last fold's model: trained on the most history
    test_rows: np.ndarray  # positions of the last fold's test rows
    fold_boosters: list[lgb.Booster] = field(default_factory=list)  # one per fold (held-out verdicts)
    fold_up_rates: list[float] = field(default_factory=list)  # each fold's constant baseline probability


def walk_forward_folds(n_rows: int, holdout_start: int, folds: int, gap: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return (train, test) row positions: consecutive test windows over [holdout_start, n_rows),
    each trained on rows before its window minus `gap` rows."""
    edges = np.linspace(holdout_start, n_rows, folds + 1).round().astype(int)
    out = []
    for start, stop in zip(edges[:-1], edges[1:], strict=True):
        train_end = start - gap
        if train_end < MIN_TRAIN_ROWS or stop - start < 10:
            raise DataError(
                f"too few rows for {folds} CV folds: fold at row {start} would train on {max(train_end, 0)} rows"
            )
        out.append((np.arange(train_end), np.arange(start, stop)))
    return out


def fold_metrics(target: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """Return AUC, accuracy, directional accuracy and log loss of up-move probabilities."""
    up = target > 0
    moved = target != 0
    clipped = np.clip(probability, 1e-6, 1 - 1e-6)
    return {
        "auc": float(roc_auc_score(up, probability)) if 0 < up.sum() < len(up) else 0.5,
        "accuracy": float(accuracy_score(up, probability > 0.5)),
        "directional_accuracy": float(np.mean((probability[moved] > 0.5) == up[moved])) if moved.any() else 0.5,
        "log_loss": float(log_loss(up, clipped, labels=[False, True])),
    }


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}


def boosting_rounds(
    features: np.ndarray, up: np.ndarray, gap: int, params: TrainParams, booster_params: dict[str, Any]
) -> int:
    """Return the rounds at which log loss on the last `validation_fraction` of the rows stopped
    improving for `patience` rounds, fitting on the rows before them minus a purge of `gap`;
    `rounds` when there is no patience or too few rows to spare."""
    validation = round(len(up) * params.validation_fraction)
    fit_end = len(up) - validation - gap
    if params.patience == 0 or fit_end < MIN_TRAIN_ROWS or validation < MIN_TRAIN_ROWS:
        return params.rounds
    fit = lgb.Dataset(features[:fit_end], label=up[:fit_end], free_raw_data=True)
    scored = lgb.Dataset(features[-validation:], label=up[-validation:], reference=fit, free_raw_data=True)
    booster = lgb.train(
        booster_params | {"metric": "binary_logloss"},
        fit,
        num_boost_round=params.rounds,
        valid_sets=[scored],
        callbacks=[lgb.early_stopping(params.patience, verbose=False)],
    )
    return max(1, booster.best_iteration)


def evaluate_horizon(
    features: np.ndarray,
    target: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    params: TrainParams,
    gap: int = 0,
) -> HorizonModel:
    """Return per-fold and mean metrics of LightGBM and of the naive baseline (the training
    up-rate as a constant probability). With no features, the model is the baseline. `gap`
    purges the rows between a fold's early-stopping fit and its validation tail."""
    model_rows, baseline_rows = [], []
    booster = None
    boosters, up_rates = [], []
    booster_params = {
        "objective": "binary",
        "learning_rate": params.learning_rate,
        "num_leaves": params.num_leaves,
        "min_data_in_leaf": params.min_data_in_leaf,
        "feature_fraction": 0.9,
        "num_threads": model_threads(params.threads, features.shape[1]),
        "seed": lightgbm_seed(params.seed),
        "deterministic": True,
        "verbose": -1,
    }
    for train, test in folds:
        up_rate = float(np.mean(target[train] > 0))
        up_rates.append(up_rate)
        baseline = np.full(len(test), up_rate)
        baseline_rows.append(fold_metrics(target[test], baseline))
        if features.shape[1] == 0:
            model_rows.append(baseline_rows[-1])
            continue
        up = (target[train] > 0).astype(np.float32)
        rounds = boosting_rounds(features[train], up, gap, params, booster_params)
        dataset = lgb.Dataset(features[train], label=up, free_raw_data=True)
        booster = lgb.train(booster_params, dataset, num_boost_round=rounds)
        boosters.append(booster)
        model_rows.append(fold_metrics(target[test], np.asarray(booster.predict(features[test]))))
    return HorizonModel(model_rows, _mean(model_rows), _mean(baseline_rows), booster, folds[-1][1], boosters, up_rates)
