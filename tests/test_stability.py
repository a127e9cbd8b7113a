"""Stability selection's parts against references: LAR vs scikit-learn, the block Grams vs a
direct computation, and complementary halves on time blocks."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import lars_path_gram

from bqx_queue.analysis.grams import BlockGrams, HalfGram, block_crosses, gram_bytes
from bqx_queue.analysis.spill import SpilledMatrix
from bqx_queue.analysis.stability import SelectionParams, lar_paths, select_stable, time_blocks
from bqx_queue.config import load_settings


def _standardised(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(axis=0)
    return centred / np.sqrt((centred**2).sum(axis=0))


@pytest.mark.unit
def test_lar_enters_features_in_the_order_scikit_learn_does():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1500, 200))
    x[:, 1] = 0.9 * x[:, 0] + 0.1 * rng.normal(size=1500)  # a correlated pair
    y = x[:, :4] @ np.array([1.0, 0.5, -0.7, 0.3]) + rng.normal(size=1500)
    xs = _standardised(x)
    gram, cross = xs.T @ xs, xs.T @ (y - y.mean())
    before = gram.copy()
    _, reference, _ = lars_path_gram(cross, gram.copy(), n_samples=1500, max_iter=15, method="lar")
    expected = [int(i) for i in reference]
    assert lar_paths(gram.__getitem__, np.diag(gram), cross[None, :], 15) == [expected]
    # paths in lockstep are each the path alone: a second target, stopped early, changes nothing
    other = xs.T @ (x[:, 5] - x[:, 5].mean())
    together = lar_paths(gram.__getitem__, np.diag(gram), np.stack([cross, other, cross]), 15)
    assert together[0] == together[2] == expected
    assert together[1] == lar_paths(gram.__getitem__, np.diag(gram), other[None, :], 15)[0]
    assert np.array_equal(gram, before)  # the shared Gram is never changed


@pytest.mark.unit
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("spilled", [False, True])
def test_half_gram_rows_equal_the_centred_correlation_gram_of_its_blocks(packed, spilled, tmp_path):
    rng = np.random.default_rng(1)
    x = np.asfortranarray(rng.normal(3.0, 2.0, size=(800, 1200)).astype(np.float32))
    x[:, 7] = 1.5  # a constant column cannot enter
    blocks = time_blocks(np.arange(800), 4, gap=3)
    columns = np.array([0, 3, 7, 9, 20, 49, *range(100, 1200, 2)])  # wider than a panel and a tile
    source = SpilledMatrix(x, tmp_path) if spilled else x
    grams = BlockGrams(source, blocks, columns, packed=packed)
    p = len(columns)
    assert grams.grams.nbytes == gram_bytes(p, 4, packed)
    in_half = np.array([True, False, True, False])
    weights = rng.uniform(0.5, 1.0, p)
    half = HalfGram(grams, in_half, weights)
    rows = np.concatenate([blocks[0], blocks[2]])
    sub = x[np.ix_(rows, columns)].astype(np.float64)
    varying = sub.std(axis=0) > 0
    expected = np.zeros_like(sub)
    expected[:, varying] = _standardised(sub[:, varying]) * weights[varying]
    reference = expected.T @ expected
    for j in (0, 2, 3, 300, p - 1):
        assert np.allclose(half.row(j), reference[j], atol=2e-4)
    assert np.allclose(half.diagonal, np.diag(reference), atol=1e-5)
    y = rng.normal(size=800)
    xy, ysum = _cross(x, blocks, columns, y)
    assert np.allclose(half.cross(xy, ysum), expected.T @ (y[rows] - y[rows].mean()), atol=1e-3)
    if spilled:
        source.close()
        assert not source.path.exists()


def _cross(x, blocks, columns, y):
    xy, ysum, _ = block_crosses(x, blocks, y[:, None])
    return (xy[0] if columns is None else xy[0][:, columns]), ysum[0]


@pytest.mark.unit
def test_blocks_are_contiguous_and_drop_the_horizon_at_their_ends():
    blocks = time_blocks(np.arange(1200), 4, gap=30)
    assert [len(b) for b in blocks] == [270] * 4
    assert all(np.all(np.diff(b) == 1) for b in blocks)
    assert blocks[1][0] - blocks[0][-1] == 31


@pytest.mark.unit
def test_selection_keeps_true_features_and_its_false_ones_within_the_bound():
    rng = np.random.default_rng(2)
    n, p = 4000, 120
    x = rng.normal(size=(n, p)).astype(np.float32)
    y = x[:, 0] * 0.4 + x[:, 1] * 0.3 + rng.normal(size=n)
    grams = BlockGrams(x, time_blocks(np.arange(n), 8, gap=5))
    result = select_stable(
        grams,
        {15: _cross(x, grams.blocks, None, y)},
        SelectionParams.from_settings(load_settings(selection_pairs=25, expected_false_max=1.0), "test"),
    )[15]
    assert result.fits == 50 and result.q == 8  # floor(sqrt(1.0 * 0.6 * 120))
    assert result.stable[:2] == [0, 1] or set(result.stable[:2]) == {0, 1}
    assert len(set(result.stable) - {0, 1}) <= 2
    assert result.error_bound <= 1.0


@pytest.mark.unit
def test_lightgbm_selector_finds_a_nonlinear_feature_lar_cannot():
    from bqx_queue.analysis.tree_selection import select_stable_lightgbm

    rng = np.random.default_rng(3)
    n, p = 6000, 40
    x = rng.normal(size=(n, p)).astype(np.float32)
    y = np.abs(x[:, 5]) - 0.8 + 0.3 * rng.normal(size=n)  # no linear correlation with x5
    blocks = time_blocks(np.arange(n), 8, gap=5)
    params = SelectionParams.from_settings(load_settings(selection_pairs=5, selection_q=3), "test")
    trees = select_stable_lightgbm(x, blocks, {15: y}, params)[15]
    grams = BlockGrams(x, blocks)
    linear = select_stable(grams, {15: _cross(x, blocks, None, y)}, params)[15]
    assert trees.stable == [5] and trees.fits == 10
    assert 5 not in linear.stable


@pytest.mark.unit
def test_a_cluster_of_substitutes_is_stable_when_no_member_is():
    from bqx_queue.analysis.clusters import stable_clusters

    # 10 fits: feature 0 in 7, its near-copy 1 in the other 3, noise 2 in 5 of them
    fits = [np.array([0, 2])] * 5 + [np.array([0])] * 2 + [np.array([1])] * 3
    frequencies = np.array([0.7, 0.3, 0.5])
    correlations = np.array([[1.0, 0.86, 0.1], [0.86, 1.0, 0.05], [0.1, 0.05, 1.0]])
    (cluster,) = stable_clusters(fits, frequencies, correlations, np.arange(3), threshold=0.8, level=0.7)
    assert cluster.members == [0, 1] and cluster.representative == 0 and cluster.frequency == 1.0
    # a member stable alone needs no cluster; below the threshold together, no cluster either
    assert stable_clusters(fits, np.array([0.9, 0.3, 0.5]), correlations, np.arange(3), 0.8, 0.7) == []
    assert stable_clusters(fits[:7] + [np.array([2])] * 3, frequencies, correlations, np.arange(3), 0.8, 0.7) == []


@pytest.mark.integration
def test_a_planted_feature_split_with_its_noisier_copy_is_stable_as_a_cluster(tmp_path):
    from bqx_queue.analysis.pair import run_stability_selection_local
    from bqx_queue.config import load_settings
    from bqx_queue.warehouse.source import query_pair_all_horizons
    from bqx_queue.warehouse.synthetic import WarehouseSpec, build_warehouse

    spec = WarehouseSpec(
        pairs=("eurusd", "gbpusd"), days=20, features_per_pair=120, decoy_correlation=0.86, nonlinear_r2=0, seed=3
    )
    manifest = build_warehouse(tmp_path / "decoys.duckdb", spec)
    settings = load_settings(warehouse=tmp_path / "decoys.duckdb", runs_dir=tmp_path / "runs")
    df = query_pair_all_horizons("eurusd", settings)
    table = run_stability_selection_local(df, 45, settings).table.set_index("feature")
    planted = "lag_eurusd__lag_ret_90"  # planted; its noisier copy (corr 0.86) takes a third of the fits
    assert planted in manifest["pairs"]["eurusd"]["horizons"]["45"]["informative"]
    copy = df.select_dtypes("number").corrwith(df[planted]).drop(planted).abs().idxmax()
    assert table.loc[planted, "frequency"] < 0.8 and table.loc[copy, "frequency"] > 0.2  # split below the threshold
    assert table.loc[planted, "stable"] and not table.loc[copy, "stable"]  # the cluster stands in for both
