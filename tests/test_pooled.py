"""Evidence that adds up across pairs: a family's held-out effect pooled over the pairs where it was
stable, by resampling the same held-out days in every pair. A small effect that no pair confirms
alone is found, effects centred on zero (moving together across pairs day by day) are not, two
pairs that move as one count as one, and a family found at two horizons is one finding."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import jsonschema
import numpy as np
import pytest
from scipy.stats import t as student_t

from bqx_queue.analysis.across_pairs import benjamini_yekutieli, family_cells, pooled_tests
from bqx_queue.analysis.family_findings import family_findings
from bqx_queue.analysis.pooled import BlockRecord, HeldOutEvidence, block_variance, day_bootstrap, pooled_effect
from bqx_queue.config import load_settings
from bqx_queue.domain import Report, RunManifest
from bqx_queue.domain.universe import PAIRS
from bqx_queue.report import families as report_families
from bqx_queue.report.build import report_schema
from bqx_queue.report.html import render_html
from bqx_queue.report.markdown import render_markdown

pytestmark = pytest.mark.unit

TOKENS = load_settings().family_strip_tokens
DAYS = [str(date(2024, 3, 4) + timedelta(days=i)) for i in range(10)]  # the run's held-out days
ROWS_PER_DAY = 1200
DRAWS, SEED, FDR = 1000, 42, 0.05


def _verdict(feature: str, day_means: np.ndarray, k: int) -> dict:
    """A stable feature's held-out verdict as confirm_horizon writes it, from its mean effect per
    held-out day (one block per day), confirmed by its own Bonferroni bound at 0.05 / k."""
    effect = float(day_means.mean())
    se = float(day_means.std(ddof=1)) / math.sqrt(len(day_means))
    dof = len(day_means) - 1
    t95 = float(student_t.ppf(0.975, dof))
    lower_bound = effect - float(student_t.ppf(1 - 0.05 / k, dof)) * se
    return {"feature": feature, "effect": effect, "effect_low": effect - t95 * se, "effect_high": effect + t95 * se,
            "lower_bound": lower_bound, "block_rows": ROWS_PER_DAY, "confirmed": bool(lower_bound > 0),
            "day_effects": (day_means * ROWS_PER_DAY).tolist()}  # fmt: skip


def _horizon(stable: dict[str, tuple[float, np.ndarray]], with_days: bool = True) -> dict:
    """A pair-horizon's result: feature -> (selection frequency, mean effect per held-out day)."""
    verdicts = [_verdict(f, means, len(stable)) for f, (_, means) in stable.items()]
    confirmation = {"features": verdicts, "confirmed": [v["feature"] for v in verdicts if v["confirmed"]],
                    "heldout_rows": ROWS_PER_DAY * len(DAYS), "heldout_days": DAYS,
                    "heldout_day_rows": [ROWS_PER_DAY] * len(DAYS)}  # fmt: skip
    if not with_days:  # a summary written before the per-day record
        confirmation = {key: v for key, v in confirmation.items() if not key.startswith("heldout_day")}
        for verdict in verdicts:
            del verdict["day_effects"]
    return {
        "stable": [{"feature": f, "frequency": frequency} for f, (frequency, _) in stable.items()],
        "error_bound": 1.0,
        "confirmation": confirmation,
        "substitutes": {"level": 0.7, "clusters": [[f] for f in stable]},
    }


def _pair(pair: str, horizons: dict[int, dict[str, tuple[float, np.ndarray]]], with_days: bool = True) -> dict:
    families = {f"mom__mom_{j}": 1 for j in range(40)} | {f"vol__vol_{j}": 1 for j in range(40)}
    return {"pair": pair, "features_in_selection": 100, "families": families,
            "horizons": {str(h): _horizon(stable, with_days) for h, stable in horizons.items()}}  # fmt: skip


def _scaled(noise: np.ndarray, sd: float) -> np.ndarray:
    """Return `noise` centred and scaled to sample standard deviation `sd`."""
    centred = noise - noise.mean()
    return centred * sd / centred.std(ddof=1)


def _section(pairs: list[dict], horizons: list[int]) -> dict:
    return report_families.families_section(pairs, horizons, TOKENS, FDR, DRAWS, SEED)


def test_a_small_effect_no_pair_confirms_alone_is_significant_when_pooled():
    # every pair's own mean effect is +0.006 with a day-to-day SD of 0.015 over 10 held-out days:
    # t = 1.26 in each pair, short of its Bonferroni bound (2.26); the pairs' day noise is independent
    rng = np.random.default_rng(0)
    stable = {
        pair: {f"mom_{pair}__mom_0": (0.9, 0.006 + _scaled(rng.standard_normal(10), 0.015)),
               f"vol_{pair}__vol_{i}": (0.85, _scaled(rng.standard_normal(10), 0.015))}
        for i, pair in enumerate(PAIRS)
    }  # fmt: skip
    section = _section([_pair(pair, {15: features}) for pair, features in stable.items()], [15])
    cell = next(c for c in section["cells"] if c["family"] == "mom__mom_0")
    assert cell["k"] == 0 and not cell["significant"]  # confirmed alone nowhere: the count test sees nothing
    pooled = cell["pooled"]
    assert pooled["method"] == "days" and pooled["days"] == 10 and len(pooled["pairs"]) == 28
    assert pooled["estimate"] == pytest.approx(0.006) and 0 < pooled["low"] < 0.006 < pooled["high"]
    assert pooled["p_value"] < 1e-3 and pooled["significant"]
    assert [f["family"] for f in section["findings"]] == ["mom__mom_0"]  # and no noise family
    # the same verdicts without their days are combined as if the pairs were one pair: not enough
    older = [_pair(pair, {15: features}, with_days=False) for pair, features in stable.items()]
    fallback = pooled_tests(family_cells(older, [15], TOKENS).cells, FDR, DRAWS, SEED)[("mom__mom_0", 15)]
    assert fallback["method"] == "worst-case correlation" and fallback["estimate"] == pytest.approx(0.006)
    assert not fallback["significant"]


def test_effects_centred_on_zero_that_move_together_across_pairs_find_nothing():
    # 30 families x 2 horizons, each stable in half of the 28 pairs; every pair's day effect is the
    # family's day shock, shared by all its pairs (a currency's news), plus its own noise, around zero
    rng = np.random.default_rng(1)
    pairs: dict[str, dict[int, dict]] = {pair: {15: {}, 30: {}} for pair in PAIRS}
    naive = []  # the pooled mean's one-sided p-value if the pairs were independent
    for j in range(30):
        for horizon in (15, 30):
            shock = 0.015 * rng.standard_normal(10)
            series = shock + 0.01 * rng.standard_normal((14, 10))
            for i, row in zip(rng.choice(len(PAIRS), 14, replace=False), series, strict=True):
                pairs[PAIRS[i]][horizon][f"mom_{PAIRS[i]}__mom_{j}"] = (0.9, row)
            standard_error = math.sqrt((series.var(axis=1, ddof=1) / 10).sum()) / 14
            naive.append(float(student_t.sf(series.mean() / standard_error, 14 * 9)))
    section = _section([_pair(p, h) for p, h in pairs.items()], [15, 30])
    assert section["pooled_tests"] == 60 and all(c["pooled"]["method"] == "days" for c in section["cells"])
    assert section["pooled_significant"] == 0 and section["findings"] == []
    # pairs taken as independent would call the shared shocks findings: this data can fail the test
    assert (benjamini_yekutieli(np.array(naive)) <= FDR).sum() >= 3


def test_two_pairs_that_move_as_one_are_not_twice_the_evidence():
    rng = np.random.default_rng(2)
    noise, more = rng.standard_normal((2, 10))
    noise -= noise.mean()
    more -= more.mean() + noise * (more @ noise) / (noise @ noise)  # uncorrelated with `noise`
    effects, other = 0.004 + _scaled(noise, 0.01), 0.004 + _scaled(more, 0.01)

    def pooled(pairs: dict[str, np.ndarray], with_days: bool = True) -> dict:
        summaries = [_pair(p, {15: {f"mom_{p}__mom_0": (0.9, e)}}, with_days) for p, e in pairs.items()]
        return pooled_tests(family_cells(summaries, [15], TOKENS).cells, FDR, DRAWS, SEED)[("mom__mom_0", 15)]

    alone = pooled({"eurusd": effects})
    twins = pooled({"eurusd": effects, "eurgbp": effects.copy()})  # identical day effects: one pair's evidence
    independent = pooled({"eurusd": effects, "usdjpy": other})  # the same strength, its own days' noise
    assert twins["pairs"] == ["eurgbp", "eurusd"] and twins["positive"] == ["eurgbp", "eurusd"]
    assert (twins["estimate"], twins["low"], twins["high"]) == pytest.approx(
        (alone["estimate"], alone["low"], alone["high"])
    )
    assert twins["p_value"] == pytest.approx(alone["p_value"])
    # independent pairs do add up: the interval narrows by sqrt(2)
    narrowing = (independent["high"] - independent["low"]) / (alone["high"] - alone["low"])
    assert narrowing == pytest.approx(1 / math.sqrt(2), rel=0.1) and independent["p_value"] < alone["p_value"]
    # without days the combination assumes the worst: twins are still one pair
    alone_old, twins_old = pooled({"eurusd": effects}, False), pooled({"eurusd": effects, "eurgbp": effects}, False)
    assert twins_old["method"] == "worst-case correlation"
    assert twins_old["p_value"] == pytest.approx(alone_old["p_value"])
    se = float(effects.std(ddof=1)) / math.sqrt(10)
    assert alone_old["p_value"] == pytest.approx(float(student_t.sf(effects.mean() / se, 9)))


def test_each_pair_pools_its_most_frequently_selected_member_not_its_largest_effect():
    days = np.full(10, 0.001) + _scaled(np.random.default_rng(3).standard_normal(10), 0.001)
    pair = _pair("eurusd", {15: {"cov_eurusd_gbpusd__corr_90": (0.95, days),
                                 "cov_eurusd_usdjpy__corr_90": (0.85, days + 0.05)}})  # fmt: skip
    [cell] = family_cells([pair], [15], TOKENS).cells
    assert cell.family == "cov__corr_90" and cell.evidence["eurusd"].feature == "cov_eurusd_gbpusd__corr_90"
    row = pooled_tests([cell], FDR, DRAWS, SEED)[("cov__corr_90", 15)]
    assert row["estimate"] == pytest.approx(0.001) and row["features"] == {"eurusd": "cov_eurusd_gbpusd__corr_90"}


def test_a_family_found_at_two_horizons_is_one_finding_at_both():
    rng = np.random.default_rng(4)

    def stable(pair: str, mean: float) -> dict[str, tuple[float, np.ndarray]]:
        return {f"mom_{pair}__mom_0": (0.9, mean + _scaled(rng.standard_normal(10), 0.01)),
                f"vol_{pair}__vol_0": (0.9, _scaled(rng.standard_normal(10), 0.01))}  # fmt: skip

    pairs = [_pair(p, {15: stable(p, 0.01), 30: stable(p, 0.01), 60: stable(p, 0.0)}) for p in PAIRS[:8]]
    section = _section(pairs, [15, 30, 60])
    significant = {(c["family"], c["horizon"]) for c in section["cells"] if c["pooled"]["significant"]}
    assert significant == {("mom__mom_0", 15), ("mom__mom_0", 30)}
    assert section["families_tested"] == 2 and section["pooled_tests"] == 6
    [finding] = section["findings"]  # one family, not two cells
    assert finding["family"] == "mom__mom_0" and finding["horizons"] == [15, 30]
    assert finding["tested_horizons"] == [15, 30, 60] and finding["q_value"] <= FDR
    # its horizons' days were drawn independently: max-T costs about what Bonferroni over three costs
    p_values = [c["pooled"]["p_value"] for c in section["cells"] if c["family"] == "mom__mom_0"]
    assert finding["across_horizons"] == "max-T"
    assert 2 * min(p_values) < finding["p_value"] <= min(1.0, 3 * min(p_values))


def test_a_persistent_family_is_one_test_at_its_dependent_horizons():
    """Nearly the same day effects at seven horizons (a persistent feature, overlapping targets):
    max-T adjusts the family's smallest p-value by far less than Bonferroni's 7 and finds it;
    the same pairs without day records fall back to Bonferroni, which does not."""
    rng = np.random.default_rng(8)
    horizons = [15, 30, 45, 60, 75, 90, 105]
    days = {p: 0.0025 + _scaled(rng.standard_normal(10), 0.006) for p in PAIRS[:4]}
    stable = {p: {h: {f"mom_{p}__mom_0": (0.9, days[p] + _scaled(rng.standard_normal(10), 0.0005))} for h in horizons}
              for p in PAIRS[:4]}  # fmt: skip
    with_days = _section([_pair(p, stable[p]) for p in PAIRS[:4]], horizons)
    smallest = min(c["pooled"]["p_value"] for c in with_days["cells"] if c["pooled"])
    [finding] = with_days["findings"]
    assert finding["across_horizons"] == "max-T" and finding["horizons"] == horizons
    assert smallest <= finding["p_value"] < 2 * smallest and 7 * smallest > FDR
    without_days = _section([_pair(p, stable[p], with_days=False) for p in PAIRS[:4]], horizons)
    assert without_days["findings"] == []


def test_family_findings_list_only_horizons_that_pass_the_selection_adjusted_level():
    # M = 2 families tested, R = 1 found: the level is q R / (M c(M)) = 0.05 / 3 over the family's H = 2 horizons
    cells = {("a", 15): {"p_value": 0.001}, ("a", 30): {"p_value": 0.009}, ("b", 15): {"p_value": 0.9}}
    [found], tested = family_findings(cells, FDR)
    assert tested == 2 and found["horizons"] == [15] and found["p_value"] == pytest.approx(0.002)
    cells[("a", 30)] = {"p_value": 0.008}  # 2 x 0.008 <= 0.05 / 3
    assert family_findings(cells, FDR)[0][0]["horizons"] == [15, 30]


def test_the_report_shows_the_pooled_effect_beside_k_of_n():
    rng = np.random.default_rng(6)
    pairs = [_pair(p, {15: {f"mom_{p}__mom_0": (0.9, 0.006 + _scaled(rng.standard_normal(10), 0.015))}})
             for p in PAIRS]  # fmt: skip
    section = _section(pairs, [15])
    metrics = {"auc": 0.6, "accuracy": 0.55, "directional_accuracy": 0.55, "log_loss": 0.69}
    report = {
        "run": {"run_id": "r", "created_at": "2026-01-01T00:00:00+00:00", "duration_s": 1.0, "pairs": ["eurusd"],
                "horizons": [15], "days": 40, "warehouse": "w", "source": "duckdb", "workers": {}, "worker_count": 0,
                "concurrency": 0, "processes": 1},
        "totals": {"pairs_ok": 1, "pairs_failed": 0, "queries": 1, "bytes_processed": 0, "bytes_billed": 0,
                   "cost_usd": 0.0, "features_tested": 1, "stable_selections": 1},
        "pairs": [{"pair": "eurusd", "status": "ok", "error": None, "queries": 1, "bytes_billed": 0, "cost_usd": 0.0,
                   "host": "h", "pid": 1, "failed_horizons": {},
                   "horizons": {"15": pairs[0]["horizons"]["15"] | {"n_stable": 1, "q": 10, "threshold": 0.8,
                                "fits": 100, "metrics": metrics, "baseline": metrics, "folds": [], "shap_top": []}}}],
        "families": section,
    }  # fmt: skip
    report["pairs"][0]["horizons"]["15"]["confirmation"] |= {
        "k": 1, "alpha": 0.05, "level": 0.05, "min_block_rows": 60, "block_rows": ROWS_PER_DAY,
        "auc": {"estimate": 0.6, "low": 0.5, "high": 0.7}, "log_loss_gain": {"estimate": 0.0, "low": 0.0, "high": 0.0},
        "gain_lower_bound": 0.0, "model_beats_baseline": True, "flagged": False, "flag_reason": None,
    }  # fmt: skip
    jsonschema.validate(report, report_schema())
    model = Report.model_validate(report)
    pooled = section["cells"][0]["pooled"]
    shown = f"{pooled['estimate']:+.4f} [{pooled['low']:+.4f}, {pooled['high']:+.4f}]"
    markdown = render_markdown(model)
    row = next(line for line in markdown.splitlines() if line.startswith("| `mom__mom_0` | h15 |"))
    assert f"| 0 of 28 | {shown} | {len(pooled['positive'])} of 28 |" in row
    assert "**Families found across pairs: 1**" in markdown and "- `mom__mom_0` at h15 (tested at h15;" in markdown
    manifest = RunManifest(run_id="r", created_at="2026-01-01T00:00:00+00:00", pairs=["eurusd"], horizons=[15],
                           days=[date(2026, 1, 1)], warehouse="w", source="duckdb", plans={}, settings={})  # fmt: skip
    page = render_html(model, manifest)
    assert f"<td>0 of 28</td>\n<td>{pooled['estimate']:+.4f} <span class='note'>[{pooled['low']:+.4f}" in page
    assert "pooled effect over 28 pairs" in page and "SIGNIFICANT" in page  # the heatmap's tooltip


# --- clock blocks within days (method "blocks, given the features") ---------------------------

BLOCK_MINUTES, BLOCKS_PER_DAY, ROWS_PER_BLOCK = 180, 8, 150


def _block_evidence(
    block_sums: np.ndarray, effect: float, minutes: int = BLOCK_MINUTES, lag: int = 1, apart: int = 1
) -> HeldOutEvidence:
    """One pair's evidence from its target-driven part per 3-hour block (days x 8 blocks) on days
    `apart` calendar days apart (1: back to back); the day records sum the same blocks, and the
    effect is spread evenly over the days."""
    days, per_day = block_sums.shape
    start = datetime(2024, 3, 4, tzinfo=UTC)
    starts = [start + timedelta(days=apart * d, minutes=b * minutes) for d in range(days) for b in range(per_day)]
    labels = [str(date(2024, 3, 4) + timedelta(days=apart * d)) for d in range(days)]
    rows = ROWS_PER_BLOCK * per_day
    cells = zip(starts, block_sums.ravel(), strict=True)
    record = BlockRecord(minutes, lag, {s: (ROWS_PER_BLOCK, float(v)) for s, v in cells})
    return HeldOutEvidence(
        "mom_x__mom_0", effect, 0.0, 1, rows * days, {d: (rows, effect * rows) for d in labels},
        dict(zip(labels, block_sums.sum(axis=1).tolist(), strict=True)), record,
    )  # fmt: skip


def test_blocks_give_more_degrees_of_freedom_than_days_and_the_same_spread_for_independent_blocks():
    """Independent blocks: the block standard error matches the day bootstrap's (both estimate the
    same spread) and its Student t has about 14 x 8 / 2.75 degrees of freedom, not 13."""
    rng = np.random.default_rng(11)
    ratios = []
    for _ in range(40):
        evidence = [_block_evidence(rng.standard_normal((14, BLOCKS_PER_DAY)), 0.001)]
        blocks = pooled_effect(evidence, 2000, np.random.SeedSequence(1), unit="blocks")
        days = day_bootstrap(evidence, 2000, np.random.default_rng(1))
        assert blocks.method == "blocks, given the features" and days.method == "days, given the features"
        assert (blocks.days, blocks.blocks, days.dof) == (14, 112, 13)
        assert blocks.dof == int(112**2 / (112 + 2 * 111)) - 1  # 111 neighbours: the days follow one another
        ratios.append(blocks.standard_error / days.standard_error)
    assert 0.9 < float(np.median(ratios)) < 1.1
    # their spread around each other: the day bootstrap's 13 degrees of freedom, not the blocks' 36
    assert float(np.std(np.log(ratios))) < 0.3


def test_blocks_a_labels_overlap_apart_are_counted_together():
    """Adjacent blocks that share labels (a moving sum across the boundary) are positively
    correlated: leaving their covariance out would understate the spread, the lag puts it back."""
    rng = np.random.default_rng(12)
    shocks = rng.standard_normal((14, BLOCKS_PER_DAY + 1))
    overlapping = shocks[:, :-1] + shocks[:, 1:]  # each block shares a shock with the next one
    with_lag = block_variance([_block_evidence(overlapping, 0.001)])
    without = block_variance([_block_evidence(overlapping, 0.001, lag=0)])
    assert with_lag is not None and without is not None
    # the true spread of a day's 8 blocks here is 8 x 2 + 2 x 7 = 30 against 16 without the covariances
    assert with_lag.standard_error / without.standard_error == pytest.approx(math.sqrt(30 / 16), rel=0.15)
    assert with_lag.dof < without.dof


def test_pairs_that_move_as_one_are_one_pair_in_blocks_too():
    rng = np.random.default_rng(13)
    sums = rng.standard_normal((14, BLOCKS_PER_DAY))
    alone = block_variance([_block_evidence(sums, 0.002)])
    twins = block_variance([_block_evidence(sums, 0.002), _block_evidence(sums.copy(), 0.002)])
    other = rng.standard_normal(sums.shape)
    independent = block_variance([_block_evidence(sums, 0.002), _block_evidence(other, 0.002)])
    assert alone and twins and independent
    assert (twins.estimate, twins.standard_error) == pytest.approx((alone.estimate, alone.standard_error))
    assert independent.standard_error == pytest.approx(alone.standard_error / math.sqrt(2), rel=0.25)


def test_shared_block_shocks_centred_on_zero_find_nothing():
    """30 families x 14 pairs, every pair's block sums a shared shock (the same news at the same
    hour) plus its own noise, around zero: no pooled cell is significant, though pairs taken as
    independent would call some."""
    rng = np.random.default_rng(14)
    p_values, naive = [], []
    for _ in range(30):
        shock = 2 * rng.standard_normal((14, BLOCKS_PER_DAY))
        series = [shock + rng.standard_normal(shock.shape) for _ in range(14)]
        evidence = [_block_evidence(s, float(s.sum()) / (ROWS_PER_BLOCK * s.size)) for s in series]
        p_values.append(pooled_effect(evidence, 2000, np.random.SeedSequence(2), unit="blocks").p_value())
        separate = [block_variance([e]) for e in evidence]
        z = sum(e.estimate for e in separate if e) / math.sqrt(sum(e.standard_error**2 for e in separate if e))
        naive.append(float(student_t.sf(z, 13 * 36)))
    assert (benjamini_yekutieli(np.array(p_values)) <= FDR).sum() == 0
    assert (benjamini_yekutieli(np.array(naive)) <= FDR).sum() >= 3


def test_pairs_with_different_blocks_fall_back_to_days():
    rng = np.random.default_rng(15)
    evidence = [_block_evidence(rng.standard_normal((14, 8)), 0.001),
                _block_evidence(rng.standard_normal((14, 4)), 0.001, minutes=360)]  # fmt: skip
    assert block_variance(evidence) is None
    assert pooled_effect(evidence, 2000, np.random.SeedSequence(3), unit="blocks").method == "days, given the features"


def test_auto_takes_blocks_where_the_held_out_days_are_spread_and_days_where_they_are_back_to_back():
    sums, seed = np.random.default_rng(16).standard_normal((14, 8)), np.random.SeedSequence(4)
    back_to_back, spread = [_block_evidence(sums, 0.001)], [_block_evidence(sums, 0.001, apart=5)]
    method = {
        (name, unit): pooled_effect(evidence, 2000, seed, unit).method
        for name, evidence in (("back to back", back_to_back), ("spread", spread))
        for unit in ("auto", "days", "blocks")
    }
    assert method == {
        ("back to back", "auto"): "days, given the features",
        ("back to back", "days"): "days, given the features",
        ("back to back", "blocks"): "blocks, given the features",
        ("spread", "auto"): "blocks, given the features",
        ("spread", "days"): "days, given the features",
        ("spread", "blocks"): "blocks, given the features",
    }
