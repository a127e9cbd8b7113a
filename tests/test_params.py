"""Analysis parameter objects: built from Settings (its fields hold the only defaults), refusing
values their arithmetic cannot take, and seeded from one SeedSequence tree."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from bqx_queue.analysis.confirmation import ConfirmParams
from bqx_queue.analysis.eras import EraParams
from bqx_queue.analysis.params import Stream, lightgbm_seed, seed_sequence
from bqx_queue.analysis.stability import SelectionParams, error_bound
from bqx_queue.analysis.training import TrainParams
from bqx_queue.config import load_settings
from bqx_queue.domain.errors import ConfigError

pytestmark = pytest.mark.unit


def _valid(params: type) -> Any:
    """Return valid parameters of this class, from the default settings."""
    settings = load_settings()
    if params in (ConfirmParams, EraParams):
        return params.from_settings(settings, "eurusd", 15)
    return params.from_settings(settings, "eurusd")


def _draws(sequence: np.random.SeedSequence) -> np.ndarray:
    return np.random.default_rng(sequence).random(4)


def test_params_take_their_values_from_settings():
    settings = load_settings(
        selection_pairs=7, selection_threshold=0.9, selection_q=5, expected_false_max=1.5, selection_blocks=6,
        selection_weakness=0.4, lgbm_rounds=11, lgbm_learning_rate=0.2, lgbm_num_leaves=7, lgbm_min_data_in_leaf=9,
        confirmation_alpha=0.1, confirmation_repeats=2, confirmation_draws=300, era_count=3,
        era_reference_features=20, era_collapse_frequency=0.25,
    )  # fmt: skip
    selection = SelectionParams.from_settings(settings, "eurusd")
    assert (selection.pairs, selection.threshold, selection.q, selection.expected_false_max) == (7, 0.9, 5, 1.5)
    assert (selection.blocks, selection.weakness) == (6, 0.4)
    train = TrainParams.from_settings(settings, "eurusd", threads=3)
    assert (train.rounds, train.learning_rate, train.num_leaves, train.min_data_in_leaf, train.threads) == (
        11, 0.2, 7, 9, 3
    )  # fmt: skip
    confirm = ConfirmParams.from_settings(settings, "eurusd", 60)
    assert (confirm.alpha, confirm.repeats, confirm.draws) == (0.1, 2, 300)
    eras = EraParams.from_settings(settings, "eurusd", 60)
    assert (eras.era_count, eras.reference_features, eras.collapse_frequency) == (3, 20, 0.25)
    assert (eras.pairs, eras.threshold, eras.expected_false_max, eras.weakness) == (7, 0.9, 1.5, 0.4)


def test_params_have_no_defaults_of_their_own():
    for params in (SelectionParams, TrainParams, ConfirmParams, EraParams):
        assert all(field.is_required() for field in params.model_fields.values()), params.__name__
    with pytest.raises(ValidationError, match="Field required"):
        SelectionParams()  # type: ignore[call-arg]


@pytest.mark.parametrize("threshold", [0.5, 0.3, 1.01])
def test_a_threshold_outside_half_to_one_is_refused(threshold):
    # at 0.5 the error bound q^2 / ((2 threshold - 1) p) would divide by zero
    for params in (SelectionParams, EraParams):
        with pytest.raises(ValidationError, match="threshold"):
            params(**(dict(_valid(params)) | {"threshold": threshold}))
    with pytest.raises(ConfigError, match="selection_threshold"):
        load_settings(selection_threshold=threshold)
    assert error_bound(8, 120, 1.0) == pytest.approx(64 / 120)  # the top of the range still works


@pytest.mark.parametrize(
    ("params", "field", "value"),
    [
        (SelectionParams, "pairs", 0),
        (SelectionParams, "q", 0),
        (SelectionParams, "blocks", 1),
        (SelectionParams, "weakness", 0.0),
        (SelectionParams, "expected_false_max", 0.0),
        (TrainParams, "rounds", 0),
        (TrainParams, "learning_rate", 0.0),
        (TrainParams, "threads", 0),
        (ConfirmParams, "alpha", 1.0),
        (ConfirmParams, "draws", 1),
        (EraParams, "collapse_frequency", 1.0),
        (EraParams, "era_count", 1),
    ],
)
def test_out_of_range_params_are_refused(params, field, value):
    with pytest.raises(ValidationError, match=field):
        params(**(dict(_valid(params)) | {field: value}))


def test_params_are_frozen():
    params = SelectionParams.from_settings(load_settings(), "eurusd")
    with pytest.raises(ValidationError, match="frozen"):
        params.threshold = 0.6  # type: ignore[misc]


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("selection_pairs", 0),
        ("selection_q", 0),
        ("selection_blocks", 2),
        ("selection_weakness", 0),
        ("expected_false_max", 0),
        ("holdout_fraction", 1.0),
        ("lgbm_learning_rate", 0),
        ("confirmation_alpha", 0),
        ("confirmation_repeats", 0),
        ("confirmation_draws", 1),
        ("era_collapse_frequency", 1.0),
        ("pooled_unit", "hours"),
        ("seed", -1),  # SeedSequence entropy is a non-negative integer
    ],
)
def test_a_bad_setting_is_refused_with_its_name(setting, value):
    with pytest.raises(ConfigError, match=setting):
        load_settings(**{setting: value})


def test_the_same_seed_gives_the_same_streams_and_streams_differ():
    a = seed_sequence(42, "eurusd", Stream.SELECTION)
    assert np.array_equal(_draws(a), _draws(seed_sequence(42, "eurusd", Stream.SELECTION)))
    others = [
        seed_sequence(43, "eurusd", Stream.SELECTION),
        seed_sequence(42, "gbpusd", Stream.SELECTION),
        seed_sequence(42, "eurusd", Stream.MODELS),
        seed_sequence(42, "eurusd", Stream.SELECTION, horizon=15),
    ]
    assert all(not np.array_equal(_draws(a), _draws(other)) for other in others)
    # the spawn tree: the path (pair, stream, horizon) below the run's SeedSequence
    assert a.entropy == 42 and a.spawn_key[1:] == (Stream.SELECTION, 0)


def test_seeds_follow_the_settings_seed():
    first = SelectionParams.from_settings(load_settings(seed=7), "eurusd").seed
    again = SelectionParams.from_settings(load_settings(seed=7), "eurusd").seed
    other = SelectionParams.from_settings(load_settings(seed=8), "eurusd").seed
    assert np.array_equal(_draws(first), _draws(again)) and not np.array_equal(_draws(first), _draws(other))
    model_seed = lightgbm_seed(TrainParams.from_settings(load_settings(seed=7), "eurusd").seed)
    assert 0 <= model_seed < 2**31
    assert model_seed == lightgbm_seed(TrainParams.from_settings(load_settings(seed=7), "eurusd").seed)


@pytest.mark.parametrize(
    ("setting", "params", "field", "value"),
    [
        ("selection_blocks", SelectionParams, "blocks", 3),
        ("selection_pairs", SelectionParams, "pairs", 1001),
        ("era_count", EraParams, "era_count", 21),
        ("era_reference_features", EraParams, "reference_features", 9),
        ("selection_pairs", EraParams, "pairs", 0),
    ],
)
def test_a_limit_is_declared_once_for_the_settings_and_the_parameters(setting, params, field, value):
    """The settings and the analysis parameters built from them refuse the same values."""
    with pytest.raises(ConfigError, match=setting):
        load_settings(**{setting: value})
    with pytest.raises(ValidationError, match=field):
        params(**(dict(_valid(params)) | {field: value}))
