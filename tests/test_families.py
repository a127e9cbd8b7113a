"""Answers across pairs, unit by unit: the family rule, the null model and its FDR, substitute
clusters (a cluster counts once), era frequencies, effect sizes and the pilot's projection."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom, false_discovery_control

from bqx_queue.analysis.across_pairs import (
    benjamini_yekutieli,
    counted_features,
    family_cells,
    family_tests,
    poisson_binomial_tail,
)
from bqx_queue.analysis.eras import EraParams, era_frequencies, era_of_rows, forward_stepwise
from bqx_queue.analysis.families import family_sizes, feature_family
from bqx_queue.analysis.substitutes import substitute_clusters
from bqx_queue.config import load_settings
from bqx_queue.domain import CostEstimate, ReportPair, RunEstimate, RunManifest
from bqx_queue.report import families as report_families
from bqx_queue.report.pilot import pilot_projection

pytestmark = pytest.mark.unit

TOKENS = load_settings().family_strip_tokens


@pytest.mark.parametrize(
    ("feature", "family"),
    [
        ("mom_eurusd__mom_dir_45", "mom__mom_dir_45"),
        ("mom_gbpjpy__mom_dir_45", "mom__mom_dir_45"),
        ("cov_eurusd_gbpusd__corr_90", "cov__corr_90"),
        ("tri_eur_gbp_usd__error_zscore", "tri__error_zscore"),
        ("csi_usd__strength_45", "csi__strength_45"),
        ("csi_g000__csi_trend_45", "csi_g000__csi_trend_45"),  # no pair or currency token: unchanged
        ("regime_EURUSD__regime_state=trend_up", "regime__regime_state=trend_up"),
        ("reg_eurusd__usd_beta_eur", "reg__beta"),  # tokens inside the column go too
    ],
)
def test_the_family_rule_strips_pair_and_currency_tokens(feature, family):
    assert feature_family(feature, TOKENS) == family


def test_the_family_rule_is_a_setting():
    assert feature_family("mom_eurusd__mom_dir_45", ("gbpusd",)) == "mom_eurusd__mom_dir_45"
    assert load_settings(family_strip_tokens=("eurusd",)).family_strip_tokens == ("eurusd",)
    sizes = family_sizes(["cov_eurusd_gbpusd__corr_90", "cov_eurusd_usdjpy__corr_90", "mom_eurusd__mom_dir_45"], TOKENS)
    assert sizes == {"cov__corr_90": 2, "mom__mom_dir_45": 1}


def test_poisson_binomial_tail_is_exact_and_reduces_to_the_binomial():
    assert poisson_binomial_tail([0.05] * 28, 5) == pytest.approx(binom.sf(4, 28, 0.05), rel=1e-10)
    rng = np.random.default_rng(0)
    probabilities = rng.uniform(0, 0.3, 10)
    draws = (rng.random((200_000, 10)) < probabilities).sum(axis=1)
    for k in (1, 3, 5):
        assert poisson_binomial_tail(list(probabilities), k) == pytest.approx((draws >= k).mean(), abs=0.005)
    assert poisson_binomial_tail([0.2, 0.4], 0) == 1.0 and poisson_binomial_tail([], 1) == 0.0


def test_benjamini_yekutieli_matches_scipy():
    p_values = np.random.default_rng(1).random(200) ** 4
    np.testing.assert_allclose(benjamini_yekutieli(p_values), false_discovery_control(p_values, method="by"))


def _verdict(feature: str, effect: float) -> dict:
    """A confirmed feature's held-out verdict: its effect with an interval over 10 blocks."""
    return {"feature": feature, "effect": effect, "effect_low": effect / 2, "effect_high": 2 * effect,
            "block_rows": 9, "confirmed": True}  # fmt: skip


def _horizon(confirmed: dict[str, float], clusters: list[list[str]] | None = None, bound: float = 2.0) -> dict:
    return {
        "stable": [{"feature": f, "frequency": 1.0} for f in confirmed],
        "error_bound": bound,
        "confirmation": {
            "features": [_verdict(f, e) for f, e in confirmed.items()],
            "confirmed": list(confirmed),
            "heldout_rows": 90,
        },
        "substitutes": {"level": 0.7, "clusters": clusters or [[f] for f in confirmed]},
    }


def test_a_substitute_cluster_counts_once_for_its_strongest_confirmed_member():
    result = _horizon(
        {"mom_eurusd__mom_dir_45": 0.05, "mom_eurusd__mom_roc_45": 0.02, "vol_eurusd__vol_atr_45": 0.01},
        clusters=[["mom_eurusd__mom_roc_45", "mom_eurusd__mom_dir_45"], ["vol_eurusd__vol_atr_45"]],
    )
    assert counted_features(result) == ["mom_eurusd__mom_dir_45", "vol_eurusd__vol_atr_45"]


def _pairs(planted_in: int, total: int = 28, p: int = 100) -> list[dict]:
    pairs = []
    for i, pair in enumerate(("eurusd", "gbpusd", "usdjpy", "usdchf", "audusd", "usdcad", "nzdusd", "eurgbp",
                              "eurjpy", "eurchf", "euraud", "eurcad", "eurnzd", "gbpjpy", "gbpchf", "gbpaud",
                              "gbpcad", "gbpnzd", "audjpy", "audchf", "audcad", "audnzd", "nzdjpy", "nzdchf",
                              "nzdcad", "cadjpy", "cadchf", "chfjpy")[:total]):  # fmt: skip
        confirmed = {f"mom_{pair}__mom_dir_45": 0.05} if i < planted_in else {}
        if i % 9 == 0:  # a chance finding in a few pairs, each in a different family
            confirmed[f"vol_{pair}__vol_range_{i}"] = 0.01
        families = {"mom__mom_dir_45": 1, "vol__vol_atr_45": 1} | {f"vol__vol_range_{j}": 1 for j in range(0, 28, 9)}
        pairs.append({"pair": pair, "features_in_selection": p, "families": families,
                      "horizons": {"15": _horizon(confirmed), "30": _horizon({})}})  # fmt: skip
    return pairs


def test_the_null_model_is_chance_at_each_pairs_error_bound_and_by_controls_the_families():
    found = family_cells(_pairs(planted_in=14), [15, 30], TOKENS)
    assert found.families == 2 + 4 and found.tests == 6 * 2  # k = 0 cells (e.g. vol__vol_atr_45) count as tests
    assert {(c.family, c.horizon) for c in found.cells} == {("mom__mom_dir_45", 15)} | {
        (f"vol__vol_range_{j}", 15) for j in range(0, 28, 9)
    }
    rows = {(r["family"], r["horizon"]): r for r in family_tests(found, 0.05)}
    mom = rows[("mom__mom_dir_45", 15)]
    # one member in a pair with EB 2 over p 100: chance 0.02 per pair
    assert mom["k"] == 14 and mom["n_pairs"] == 28 and mom["expected_under_null"] == pytest.approx(28 * 0.02)
    assert mom["p_value"] == pytest.approx(binom.sf(13, 28, 0.02)) and mom["significant"]
    singles = [r for key, r in rows.items() if key[0].startswith("vol__vol_range")]
    assert singles and all(r["k"] == 1 and not r["significant"] for r in singles)
    assert all(r["q_value"] >= r["p_value"] for r in rows.values())
    padded = benjamini_yekutieli(np.array([r["p_value"] for r in rows.values()] + [1.0] * (12 - len(rows))))
    assert sorted(r["q_value"] for r in rows.values()) == pytest.approx(sorted(padded[: len(rows)]))


def test_a_family_in_two_pairs_by_chance_is_not_significant():
    rows = family_tests(family_cells(_pairs(planted_in=2), [15], TOKENS), 0.05)
    mom = next(r for r in rows if r["family"] == "mom__mom_dir_45")
    assert mom["k"] == 2 and not mom["significant"]


def test_substitutes_are_clusters_of_correlated_stable_features():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 2000))
    values = np.c_[
        a,
        b,
        0.8 * a + 0.6 * rng.standard_normal(2000),
        0.9 * b + 0.3 * rng.standard_normal(2000),
        rng.standard_normal(2000),
    ]
    names = ["a", "b", "a_like", "b_like", "alone"]
    assert substitute_clusters(values, names, 0.7) == [["a", "a_like"], ["b", "b_like"], ["alone"]]
    assert substitute_clusters(values, names, 0.99) == [[n] for n in names]
    # single linkage: a chain joins even where its ends are below the level
    chain = np.c_[a, a + 0.5 * b, 0.5 * a + b, b]
    assert len(substitute_clusters(chain, ["w", "x", "y", "z"], 0.7)) == 1


def test_eras_are_years_or_equal_stretches_of_sampled_days():
    days = np.array(["2020-12-30", "2020-12-31", "2021-01-04", "2022-01-03"], dtype="datetime64[D]")
    labels, era = era_of_rows(np.repeat(days, 3).astype("datetime64[us]"), 4)
    assert labels == ["2020", "2021", "2022"] and era.tolist() == [0] * 6 + [1] * 3 + [2] * 3
    days = np.arange(np.datetime64("2020-01-06"), np.datetime64("2020-01-14"))
    labels, era = era_of_rows(np.repeat(days, 2).astype("datetime64[us]"), 4)
    assert labels[0] == "2020-01-06..2020-01-07" and len(labels) == 4 and np.bincount(era).tolist() == [4] * 4


def test_forward_stepwise_enters_the_strongest_feature_first():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3000, 5))
    y = 0.6 * x[:, 2] + 0.3 * x[:, 4] + rng.standard_normal(3000)
    correlation = np.corrcoef(x, rowvar=False)
    target = np.array([np.corrcoef(x[:, j], y)[0, 1] for j in range(5)])
    assert forward_stepwise(correlation, target, 2) == [2, 4]


def test_a_feature_whose_signal_stops_in_one_era_is_era_dependent():
    rng = np.random.default_rng(1)
    n, p = 8 * 1440, 150
    times = (np.datetime64("2020-01-06T00:00") + np.arange(n).astype("timedelta64[m]")).astype("datetime64[us]")
    x = rng.standard_normal((n, p)).astype(np.float32)
    last_quarter = np.arange(n) >= 3 * n // 4
    y = 0.3 * x[:, 0] * ~last_quarter + 0.3 * x[:, 1] + rng.standard_normal(n)
    params = EraParams.from_settings(load_settings(selection_pairs=25), "test", 15)
    result = era_frequencies(x, np.arange(n), times, y, [0, 1], ["fades", "holds"], 15, params)
    fades, holds = result["features"]
    assert len(result["eras"]) == 4 and result["candidates"] == 102 and result["fits"] == 50
    assert min(fades["frequencies"][:3]) > 0.8 and fades["frequencies"][3] < 0.3
    assert fades["era_dependent"] and fades["collapsed_eras"] == [result["eras"][3]["era"]]
    assert min(holds["frequencies"]) > 0.8 and not holds["era_dependent"]


def test_effect_sizes_and_error_accounting_read_the_pair_horizons():
    confirmation = {"auc": {"estimate": 0.61, "low": 0.55, "high": 0.67},
                    "log_loss_gain": {"estimate": 0.01, "low": -0.002, "high": 0.022}, "flagged": False}  # fmt: skip
    pairs = [{"pair": "eurusd", "horizons": {"15": {"stable": [{"feature": "x"}] * 3, "error_bound": 1.9,
                                                    "confirmation": confirmation}}}]  # fmt: skip
    sizes = report_families.effect_sizes(pairs)
    assert sizes == [{"pair": "eurusd", "horizon": 15, "auc": confirmation["auc"],
                      "log_loss_gain": confirmation["log_loss_gain"], "flagged": False}]  # fmt: skip
    assert report_families.error_accounting(pairs) == {
        "stable_selections": 3,
        "error_bound_sum": 1.9,
        "pair_horizons": 1,
    }


def test_a_one_pair_run_projects_the_full_run_on_the_live_slots():
    # only the fields the projection reads (model_construct: the rest of a run is beside the point)
    pair = ReportPair.model_construct(pair="eurusd", bytes_billed=10 * 2**20, cost_usd=0.5, wall_s=100.0,
                                      features_tested=6500)  # fmt: skip
    shared = CostEstimate.model_construct(cost_usd=0.25, bytes_billed=2**30)
    manifest = RunManifest.model_construct(pairs=["eurusd"], workers={"w1@a": 8, "w2@b": 4},
                                           estimate=RunEstimate.model_construct(shared=[shared]))  # fmt: skip
    projection = pilot_projection([pair], manifest)
    assert projection is not None
    expected = {"pairs": 28, "bytes_billed": 28 * 10 * 2**20 + 2**30, "cost_usd": 14.25, "slots": 12, "waves": 3,
                "wall_s": 300.0}  # fmt: skip
    assert projection.projected.model_dump() == expected
    assert pilot_projection([pair, pair], manifest.model_copy(update={"pairs": ["eurusd", "gbpusd"]})) is None


def test_the_docstring_examples_hold():
    import doctest

    from bqx_queue.analysis import across_pairs, families, substitutes

    for module in (families, substitutes, across_pairs):
        assert doctest.testmod(module).failed == 0
