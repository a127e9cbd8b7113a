"""What a tree can see: thresholds, squares, products and gates found, confirmed and named by
their shape; nothing found where nothing was planted; the width screen sees shapes too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bqx_queue.analysis.basis import BasisParams, Shape, block_bins, block_pair_sums, nonlinear_basis
from bqx_queue.analysis.stability import SelectionParams, complementary_halves, time_blocks
from bqx_queue.analysis.width import screen
from bqx_queue.config import Settings, load_settings
from bqx_queue.domain import ReportPair
from bqx_queue.report.confirmation import confirmation_section
from bqx_queue.runner.pair import process_pair_all_horizons
from bqx_queue.warehouse.source import open_source
from bqx_queue.warehouse.synthetic import NONLINEAR_KINDS, WarehouseSpec, build_warehouse


def _standardised(x: np.ndarray) -> np.ndarray:
    return np.asfortranarray(((x - x.mean(0)) / x.std(0)).astype(np.float32))


@pytest.mark.unit
def test_the_width_screen_keeps_a_threshold_feature_that_a_linear_screen_would_drop():
    rng = np.random.default_rng(3)
    n, p = 6000, 40
    x = _standardised(rng.standard_normal((n, p)))
    y = (1.0 * (np.abs(x[:, 7]) > 1) + 0.3 * x[:, 2] + rng.standard_normal(n))[:, None]
    association = block_bins(x, np.array_split(np.arange(n), 6), y, bins=8).association()
    linear_only = screen(association.linear, 5)
    assert 7 not in linear_only  # |x7| has no linear correlation with y
    assert {2, 7} <= set(screen(association.strength, 5).tolist())
    assert association.binned[7] - association.linear[7] > 0.05
    assert abs(association.binned[2] - association.linear[2]) < 0.01  # a line: nothing beyond it
    # a protected feature (one a pair column reads) enters whatever its strength
    assert 30 in screen(association.strength, 5, protected={30}).tolist()


@pytest.mark.unit
@pytest.mark.parametrize("shape", [Shape.PRODUCT, Shape.GATE])
def test_the_pair_search_finds_the_partner_of_a_member_that_has_no_signal_alone(shape):
    rng = np.random.default_rng(4)
    n, p = 8000, 30
    x = _standardised(rng.standard_normal((n, p)))
    partner = x[:, 21] if shape is Shape.PRODUCT else np.sign(x[:, 21])
    y = (0.5 * x[:, 5] * partner + rng.standard_normal(n))[:, None]
    association = block_bins(x, np.array_split(np.arange(n), 4), y, bins=8).association()
    assert association.linear[[5, 21]].max() < 0.002  # neither member alone correlates
    sums = block_pair_sums(x, np.array_split(np.arange(n), 4), y, np.array([5, 9]))
    best = sums.over(np.ones(4, dtype=bool)).pairs(1, min_z=3.0)[0]
    assert (best.shape, {best.feature, best.partner}) == (shape, {5, 21})


@pytest.mark.unit
def test_each_half_enters_only_basis_columns_its_own_rows_chose():
    """A threshold effect present only in the first six blocks: the halves made of those blocks
    choose its |x| column, their complements (the other six blocks) do not."""
    rng = np.random.default_rng(5)
    n, p = 12_000, 25
    x = _standardised(rng.standard_normal((n, p)))
    y = rng.standard_normal(n)
    early = np.arange(n) < n // 2
    y[early] += 1.5 * (np.abs(x[early, 3]) > 1)
    blocks = time_blocks(np.arange(n), 12, gap=0)
    params = SelectionParams.from_settings(Settings(selection_pairs=4), "eurusd")
    halves = [np.arange(12) < 6, np.arange(12) >= 6, *complementary_halves(params, 12)]
    basis = nonlinear_basis(
        x, blocks, y[:, None].copy(), halves, BasisParams(bins=8, shapes=4, members=2, pairs=0, min_z=5.0)
    )
    keys = [(c.shape, c.feature) for c in basis.columns]
    column = keys.index((Shape.ABSOLUTE, 3))
    assert basis.allowed[0][column] and not basis.allowed[1][column]
    assert all(mask.sum() <= 4 for mask in basis.allowed)


@pytest.fixture(scope="module")
def nonlinear_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nonlinear") / "nonlinear.duckdb"
    # 40 days: a half-sample (20 of them) sees a product in about two thirds of its draws at the
    # demo's strength (0.08), so the kinds are planted at 0.15 here
    spec = WarehouseSpec(pairs=("eurusd", "gbpusd"), days=40, features_per_pair=120, nonlinear_r2=0.15, seed=11)
    build_warehouse(path, spec)
    return path


def _run(warehouse: Path, tmp_path: Path, **overrides: object):
    settings = load_settings(warehouse=warehouse, runs_dir=tmp_path / "runs", horizons=[15], **overrides)
    return process_pair_all_horizons("eurusd", settings, source=open_source(settings), threads=2)


@pytest.mark.integration
def test_every_planted_kind_is_confirmed_with_its_shape_and_partner(nonlinear_warehouse, tmp_path):
    from bqx_queue.warehouse.duckdb_source import DuckDBSource

    truth = DuckDBSource(nonlinear_warehouse).manifest()["pairs"]["eurusd"]
    informative = truth["horizons"]["15"]["informative"]
    kinds = {feature: truth["shapes"][feature] for feature in informative}
    assert set(kinds.values()) == {"linear", *NONLINEAR_KINDS}  # every kind carries signal at h15
    result = _run(nonlinear_warehouse, tmp_path)
    h15 = result.summary.model_dump(mode="json")["horizons"]["15"]
    stable = {s["feature"]: s for s in h15["stable"]}
    confirmed = set(h15["confirmation"]["confirmed"])
    model_partners = {m["feature"]: m["partner"] for m in h15["model_partners"]}
    assert set(model_partners) == confirmed  # the final model's partner of every confirmed feature
    findings = {row.feature: row for row in confirmation_section([ReportPair.of(result.summary)]).findings}
    assert set(informative) <= set(stable)
    assert {kinds[f] for f in confirmed} == {"linear", *NONLINEAR_KINDS}  # every kind confirmed
    assert not (set(stable) - set(truth["planted"]))  # no noise column is stable
    for feature, kind in kinds.items():
        entry = stable[feature]
        if kind == "linear":
            assert entry["shape"] == "linear" and entry.get("partner") is None  # a summary leaves out what is None
        elif kind in ("threshold", "square"):
            assert entry["shape"] == "absolute" and entry.get("partner") is None
        else:  # a pair kind: the shape is a product or gate, the partner its planted twin
            twin = next(f for f, k in kinds.items() if k == kind and f != feature)
            assert entry["shape"] in ("product", "gate") and entry["partner"] == twin, (feature, entry)
            # and the final model's SHAP interaction values pair the same two (held-out rows)
            assert model_partners.get(feature) == twin, (feature, h15["model_partners"])
            assert (findings[feature].partner, findings[feature].model_partner) == (twin, twin)  # as the report says
    ledger = result.ledger[result.ledger["horizon"] == 15].set_index("feature")
    assert ledger.loc[list(confirmed), "confirmed"].all() and ledger.loc[list(kinds), "selected"].all()
    assert h15["error_bound"] <= 2.0  # over every unit in selection: features, |x| columns and pairs


@pytest.mark.integration
def test_the_linear_basis_misses_what_the_nonlinear_one_finds(nonlinear_warehouse, tmp_path):
    from bqx_queue.warehouse.duckdb_source import DuckDBSource

    truth = DuckDBSource(nonlinear_warehouse).manifest()["pairs"]["eurusd"]
    nonlinear = {f for f in truth["horizons"]["15"]["informative"] if truth["shapes"][f] != "linear"}
    result = _run(nonlinear_warehouse, tmp_path, selection_basis="linear")
    stable = {s.feature for s in result.summary.horizons["15"].stable}
    assert len(nonlinear & stable) <= 1  # a gate's x has a little linear signal where sign(v) is skewed


@pytest.mark.integration
def test_a_warehouse_without_signal_confirms_nothing(tmp_path):
    path = tmp_path / "null.duckdb"
    build_warehouse(path, WarehouseSpec(pairs=("eurusd", "gbpusd"), days=30, features_per_pair=120, with_signal=False))
    settings = load_settings(warehouse=path, runs_dir=tmp_path / "runs", horizons=[15, 60])
    result = process_pair_all_horizons("eurusd", settings, source=open_source(settings), threads=2)
    for horizon in result.summary.model_dump(mode="json")["horizons"].values():
        assert horizon["confirmation"]["confirmed"] == []
        assert len(horizon["stable"]) <= 3  # the MB bound is an expectation of about 1.7; a few may be stable
