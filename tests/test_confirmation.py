"""Held-out verdicts: the block bootstrap keeps its promise, an informative feature is confirmed,
persistent noise is not, and a model worse than the baseline is flagged."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import lightgbm as lgb
import numpy as np
import pytest
from scipy.signal import lfilter
from scipy.stats import t as student_t
from sklearn.metrics import roc_auc_score

from bqx_queue.analysis.confirmation import (
    ConfirmParams,
    HeldOutFold,
    block_bootstrap_means,
    block_bootstrap_weights,
    bootstrap_replicates,
    confirm_horizon,
    dependence_rows,
    feature_gates,
    holm_levels,
    permutation_effects,
    weighted_auc,
)
from bqx_queue.analysis.pooled import BlockRecord, HeldOutEvidence, block_variance, day_bootstrap
from bqx_queue.config import load_settings

pytestmark = pytest.mark.unit


def _params(seed: int = 42) -> ConfirmParams:
    """The run's confirmation parameters, seeded as a pair's 60-minute horizon would be."""
    return ConfirmParams.from_settings(load_settings(seed=seed), "eurusd", 60)


def _ar1(n: int, phi: float, rng: np.random.Generator) -> np.ndarray:
    out = np.empty(n)
    out[0] = rng.normal() / math.sqrt(1 - phi * phi)
    for t in range(1, n):
        out[t] = phi * out[t - 1] + rng.normal()
    return out


def test_block_weights_resample_whole_blocks_and_every_row_equally_often():
    rng = np.random.default_rng(0)
    weights = block_bootstrap_weights(100, 30, 4000, rng)
    assert weights.shape == (4000, 100)
    assert np.all(weights.sum(axis=1) == 120)  # 4 blocks of 30
    assert np.abs(weights.mean(axis=0) - 1.2).max() < 0.1  # circular: no row is favoured
    one_block = block_bootstrap_weights(50, 50, 3, rng)
    assert np.all(one_block == 1)  # a block as long as the series is the series


def test_block_sums_give_the_weighted_means_of_the_same_resamples():
    values = np.random.default_rng(4).standard_normal((500, 3))
    for block in (1, 7, 60, 499, 500, 900):
        weights = block_bootstrap_weights(500, block, 50, np.random.default_rng(5))
        expected = weights @ values / weights.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(block_bootstrap_means(values, block, 50, np.random.default_rng(5)), expected)


def test_weighted_auc_equals_sklearn_on_the_resampled_rows_with_ties():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 20, 300) / 20  # many ties
    up = rng.random(300) < 0.3 + 0.4 * scores
    weights = block_bootstrap_weights(300, 7, 5, rng)
    for draw in weights:
        repeated = np.repeat(np.arange(300), draw.astype(int))
        assert weighted_auc(scores, up, draw[None])[0] == pytest.approx(roc_auc_score(up[repeated], scores[repeated]))


def _coverage(block: int, rng: np.random.Generator, simulations: int = 300, n: int = 600, mean: float = 0.3) -> float:
    covered = 0
    for _ in range(simulations):
        values = mean + _ar1(n, 0.8, rng)
        draws, _ = bootstrap_replicates(values[:, None], block, 300, rng)
        se = draws.std(ddof=1)
        half = student_t.ppf(0.975, max(1, math.ceil(n / block) - 1)) * se
        covered += abs(values.mean() - mean) <= half
    return covered / simulations


def test_block_bootstrap_interval_covers_a_known_mean_of_a_persistent_series():
    rng = np.random.default_rng(2)
    assert 0.88 <= _coverage(40, rng) <= 0.99
    assert _coverage(1, rng) < 0.75  # rows resampled one by one ignore the persistence


def test_dependence_rows_grows_with_persistence():
    rng = np.random.default_rng(3)
    white, persistent = (int(dependence_rows(_ar1(5000, phi, rng)[:, None])[0]) for phi in (0.0, 0.99))
    assert white <= 4 and persistent >= 200


def _folds(features: np.ndarray, up: np.ndarray, start: int, count: int, gap: int) -> list[HeldOutFold]:
    edges = np.linspace(start, len(up), count + 1).round().astype(int)
    folds = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        train = slice(0, a - gap)
        booster = lgb.train(
            {"objective": "binary", "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 50,
             "num_threads": 1, "seed": 0, "deterministic": True, "verbose": -1},
            lgb.Dataset(features[train], label=up[train].astype(np.float32)),
            num_boost_round=100,
        )  # fmt: skip
        folds.append(HeldOutFold(booster, features[a:b], up[a:b], float(up[train].mean())))
    return folds


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_an_informative_feature_is_confirmed_and_persistent_noise_is_not(seed):
    rng = np.random.default_rng(seed)
    n = 4000
    informative = rng.normal(size=n)
    persistent_noise = _ar1(n, 0.99, rng)
    white_noise = rng.normal(size=n)
    up = 0.5 * informative + rng.normal(size=n) > 0
    features = np.column_stack([informative, persistent_noise, white_noise]).astype(np.float32)
    names = ["informative", "persistent_noise", "white_noise"]
    verdict = confirm_horizon(_folds(features, up, 2500, 3, 60), names, 60, _params(seed))
    assert verdict["confirmed"] == ["informative"]
    assert verdict["k"] == 3 and verdict["level"] == pytest.approx(0.05 / 3)
    levels = [f["level"] for f in verdict["features"]]
    assert levels[0] == pytest.approx(0.05 / 3) and all(0.05 / 3 <= level <= 0.05 / 2 for level in levels[1:])
    assert verdict["heldout_rows"] == 1500 and verdict["block_rows"] >= 60
    effect = {f["feature"]: f for f in verdict["features"]}
    assert effect["informative"]["effect_low"] > 0 and effect["informative"]["lower_bound"] > 0
    assert effect["informative"]["gate_lower_bound"] > 0 and effect["informative"]["confirmed"]
    for name in ("persistent_noise", "white_noise"):
        assert effect[name]["lower_bound"] <= 0 and effect[name]["effect_low"] <= effect[name]["effect"]
    assert not verdict["flagged"] and verdict["auc"]["low"] > 0.5 and verdict["log_loss_gain"]["low"] > 0


def test_a_column_persistent_past_its_capped_block_counts_its_independent_stretches():
    """Blocks stop at a quarter of the held-out rows; a column correlated over most of them has
    fewer independent stretches, and its Student t has that many degrees of freedom less one."""
    rng = np.random.default_rng(3)
    n = 4000
    very_persistent = _ar1(n, 0.999, rng)
    up = 0.3 * very_persistent + rng.normal(size=n) > 0
    verdict = confirm_horizon(
        _folds(very_persistent[:, None].astype(np.float32), up, 2500, 3, 60), ["x"], 60, _params()
    )
    [feature] = verdict["features"]
    assert feature["block_rows"] == 1500 // 4  # capped
    assert feature["dof"] < math.ceil(1500 / feature["block_rows"]) - 1  # 3 blocks' worth of dof would overstate it


def test_each_features_gate_resamples_the_gain_in_that_features_own_blocks():
    """A gain with a slow component: the persistent column's gate spans it (long blocks, few
    degrees of freedom, a lower bound), a short-memory column's gate does not take that cost."""
    rng = np.random.default_rng(6)
    n = 6000
    gain = 0.01 + 0.06 * _ar1(n, 0.998, rng) / 15 + 0.3 * rng.normal(size=n)
    blocks, dependence = np.array([105, 1500]), np.array([60, 3000])
    short, persistent = feature_gates(gain, 105, blocks, dependence, _params(), rng)
    # the persistent column: blocks of 1,500 rows, n / 3,000 - 1 = 1 degree of freedom
    assert persistent < short
    se_long = (gain.mean() - persistent) / student_t.ppf(0.95, 1)
    se_short = (gain.mean() - short) / student_t.ppf(0.95, math.ceil(n / 105) - 1)
    assert se_long > se_short > 0
    # a gate never resamples in blocks shorter than the gain's own
    [floored] = feature_gates(gain, 1500, blocks[:1], dependence[:1], _params(), np.random.default_rng(6))
    assert floored < short


def test_holm_steps_down_from_alpha_over_k_and_stops_at_the_first_failure():
    p = np.array([0.001, 0.015, 0.012, 0.3, 0.04])
    levels = holm_levels(p, 0.05)
    # sorted: 0.001 at 0.05/5, 0.012 at 0.05/4, 0.015 at 0.05/3, 0.04 fails at 0.05/2; 0.3 at that step too
    assert levels.tolist() == pytest.approx([0.01, 0.05 / 3, 0.0125, 0.025, 0.025])
    rejected = p <= levels
    assert rejected.tolist() == [True, True, True, False, False]
    # never fewer than Bonferroni's alpha / k for all
    assert (rejected >= (p <= 0.05 / len(p))).all()
    assert holm_levels(np.array([0.2, 0.3]), 0.05).tolist() == [0.025, 0.025]


def test_a_model_worse_than_the_baseline_is_flagged_and_confirms_nothing():
    rng = np.random.default_rng(4)
    n = 4000
    x = rng.normal(size=n)
    up = x + 0.5 * rng.normal(size=n) > 0
    up[2500:] = ~up[2500:]  # the relation reverses on the held-out rows
    verdict = confirm_horizon(_folds(x[:, None].astype(np.float32), up, 2500, 3, 60), ["x"], 60, _params())
    assert verdict["flagged"] and verdict["auc"]["high"] < 0.5 and verdict["log_loss_gain"]["high"] < 0
    assert "below the baseline's 0.5" in verdict["flag_reason"]
    assert verdict["confirmed"] == [] and not verdict["features"][0]["confirmed"]


def test_without_stable_features_the_model_is_the_baseline():
    up = np.random.default_rng(5).random(900) < 0.5
    folds = [HeldOutFold(None, np.empty((300, 0), np.float32), up[i : i + 300], 0.5) for i in (0, 300, 600)]
    verdict = confirm_horizon(folds, [], 60, _params())
    assert verdict["k"] == 0 and verdict["features"] == [] and not verdict["flagged"]
    assert verdict["auc"] == {"estimate": 0.5, "low": 0.5, "high": 0.5}
    assert verdict["log_loss_gain"]["estimate"] == pytest.approx(0.0)


def test_confirmation_keeps_each_features_effect_per_held_out_day():
    rng = np.random.default_rng(5)
    x = rng.standard_normal(900)
    up = x + rng.standard_normal(900) > 0
    folds = _folds(x[:, None].astype(np.float32), up, 600, 2, 60)
    starts = np.array(["2024-03-05T01:00", "2024-03-04T02:00", "2024-03-06T01:00"], dtype="datetime64[m]")
    times = np.concatenate([start + np.arange(n) for start, n in zip(starts, [100, 120, 80], strict=True)])
    verdict = confirm_horizon(folds, ["x"], 60, _params(), times)
    assert verdict["heldout_days"] == ["2024-03-04", "2024-03-05", "2024-03-06"]
    assert verdict["heldout_day_rows"] == [120, 100, 80]
    [feature] = verdict["features"]
    assert sum(feature["day_effects"]) / 300 == pytest.approx(feature["effect"])
    # and its target-driven part per 3-hour block: 02:00-02:59 and 03:00-03:59 on the day of 120 rows
    blocks = verdict["pooling_blocks"]
    assert blocks["minutes"] == 180 and blocks["lag"] == 1  # 60 one-minute rows fit in one block
    assert blocks["starts"] == [f"2024-03-0{d}:00:00Z" for d in ("4T00", "4T03", "5T00", "6T00")]
    assert blocks["rows"] == [60, 60, 100, 80]
    assert sum(feature["block_target_noise"]) == pytest.approx(sum(feature["day_target_noise"]))
    assert "heldout_days" not in confirm_horizon(folds, ["x"], 60, _params())


def test_the_target_driven_part_is_what_changes_when_only_the_target_does():
    """Given the features (and the permutation), a row's effect is up A + (1 - up) B: redrawing
    `up` moves the effect by exactly the change in its target-driven part (up - p)(A - B)."""
    rng = np.random.default_rng(6)
    x = _ar1(3000, 0.999, rng)
    up = 0.3 * x + rng.standard_normal(3000) > 0
    [fold] = _folds(x[:, None].astype(np.float32), up, 2000, 1, 60)
    redrawn = HeldOutFold(fold.booster, fold.features, rng.random(len(fold.up)) < 0.5, fold.baseline_probability)
    _, effects, noise = permutation_effects(fold, 3, np.random.default_rng(0))
    _, effects_redrawn, noise_redrawn = permutation_effects(redrawn, 3, np.random.default_rng(0))
    np.testing.assert_allclose(effects - noise, effects_redrawn - noise_redrawn, atol=1e-9)
    assert not np.allclose(effects, effects_redrawn)


def test_the_pooled_spread_is_the_targets_given_a_persistent_feature():
    """A feature persistent over hours, held fixed, and the target redrawn 300 times from its true
    chance of an up move: the pooled standard error from the days' target-driven parts covers
    the spread of the effect over the redraws (a little wider: the model's p stands where the
    true chance belongs) and is narrower than the one from the days' effect sums, which also
    swing with the feature's values."""
    rng = np.random.default_rng(7)
    days, per_day = 20, 600
    x = _ar1(4000 + days * per_day, 0.999, rng)
    chance = 1 / (1 + np.exp(-0.4 * x / x.std()))
    up = rng.random(len(x)) < chance
    [fold] = _folds(x[:, None].astype(np.float32), up, 4000, 1, 60)
    held_out = chance[4000:]
    day_of_row = np.repeat(np.arange(days), per_day)
    labels = [f"2024-03-{d + 1:02d}" for d in range(days)]

    def evidence(target: np.ndarray) -> tuple[float, HeldOutEvidence]:
        draw = HeldOutFold(fold.booster, fold.features, target, fold.baseline_probability)
        _, effects, noise = permutation_effects(draw, 3, np.random.default_rng(0))  # the same permutations
        sums, noise_sums = np.bincount(day_of_row, effects[:, 0]), np.bincount(day_of_row, noise[:, 0])
        days_record = {d: (per_day, float(s)) for d, s in zip(labels, sums, strict=True)}
        noise_record = dict(zip(labels, noise_sums.tolist(), strict=True))
        return float(effects.mean()), HeldOutEvidence(
            "x", float(effects.mean()), 0.0, 1, len(target), days_record, noise_record
        )

    redraws = np.array([evidence(rng.random(len(held_out)) < held_out)[0] for _ in range(300)])
    _, observed = evidence(fold.up)
    given = day_bootstrap([observed], 2000, np.random.default_rng(1))
    plain = day_bootstrap([replace(observed, target_noise=None)], 2000, np.random.default_rng(1))
    assert given.method == "days, given the features" and plain.method == "days"
    assert 0.9 < given.standard_error / redraws.std() < 1.6
    assert given.standard_error < 0.85 * plain.standard_error


def _spread_against_redraws(seed: int) -> tuple[float, int]:
    """Return the 3-hour blocks' standard error of a persistent noise column's effect over the
    spread of that effect across 150 redraws of the target given the model's columns, and its
    degrees of freedom (analysis/pooled.py block_variance); see the test below."""
    rng = np.random.default_rng(seed)
    days, per_day, train = 14, 1440, 6000
    n = train + days * per_day

    def ar1(phi: float) -> np.ndarray:
        return lfilter([1.0], [1.0, -phi], rng.standard_normal(n)) * math.sqrt(1 - phi * phi)

    def labels(drift: np.ndarray) -> np.ndarray:  # up when the next 45 rows' sum plus the drift is positive
        steps = np.cumsum(rng.standard_normal(n + 45))
        return (steps[45:] - steps[:-45]) / math.sqrt(45) + drift > 0

    noise_column, informative = ar1(0.999), ar1(0.99)
    signal = math.sqrt(0.1 / 0.9)
    up = labels(signal * (ar1(0.999) + 1.5 * informative))
    [fold] = _folds(np.c_[noise_column, informative].astype(np.float32), up, train, 1, 60)
    # A and B of the noise column: its effect on each row had the target moved up, and had it not
    moved = [replace(fold, up=np.full(len(fold.up), flag)) for flag in (True, False)]
    (probability, if_up, _), (_, if_down, _) = (permutation_effects(f, 3, np.random.default_rng(0)) for f in moved)
    if_up, if_down = if_up[:, 0], if_down[:, 0]
    starts = [datetime(2024, 3, 4, tzinfo=UTC) + timedelta(minutes=180 * b) for b in range(days * 8)]

    def evidence(moved_up: np.ndarray) -> HeldOutEvidence:
        effects, noise = np.where(moved_up, if_up, if_down), (moved_up - probability) * (if_up - if_down)
        block_sums = np.bincount(np.arange(len(noise)) // 180, noise)
        blocks = BlockRecord(180, 1, {s: (180, float(v)) for s, v in zip(starts, block_sums, strict=True)})
        return HeldOutEvidence("x", float(effects.mean()), 0.0, 1, len(noise), None, None, blocks)

    redraws = [evidence(labels(signal * (ar1(0.999) + 1.5 * informative))[train:]).effect for _ in range(150)]
    observed = evidence(fold.up)
    blocks = block_variance([observed])
    assert blocks is not None
    return blocks.standard_error / float(np.std(redraws)), blocks.dof


def test_the_block_spread_covers_the_targets_when_a_persistent_signal_the_model_lacks_moves_it():
    """The blocks' proviso under strain: a persistent signal outside the model (phi 0.999, 10% of
    the latent target's variance) moves the labels of a stretch together, far beyond their 45-row
    overlap. The model reads a persistent noise column and an informative one; the target is
    redrawn 150 times given both (a new drift and new label noise each time). Over five such
    worlds the 3-hour blocks' standard error of the noise column's effect covers the spread over
    the redraws (the model's p where the true chance belongs makes it wider: it was 0.87 to 1.72
    times the spread, median 1.46), with 36 degrees of freedom where 14 whole days have 13."""
    ratios, dofs = zip(*(_spread_against_redraws(seed) for seed in range(21, 26)), strict=True)
    assert set(dofs) == {36}
    assert float(np.median(ratios)) > 1.0 and min(ratios) > 0.75 and max(ratios) < 2.5
