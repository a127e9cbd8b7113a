"""The report's answers across pairs: feature families confirmed in k of N pairs against a null
with Benjamini-Yekutieli FDR, their held-out effects pooled over pairs and the families found,
substitute clusters, era-dependent features, effect sizes per pair x horizon, and the run's error
accounting (report.json; the templates show them)."""

from __future__ import annotations

from typing import Any

from bqx_queue.analysis.across_pairs import family_cells, family_tests, horizon_correlations, pooled_tests
from bqx_queue.analysis.families import feature_family
from bqx_queue.analysis.family_findings import family_findings
from bqx_queue.config.settings import PooledUnit

FAMILY_NOTE = (
    "A family is a feature name without its pair and currency tokens (setting family_strip_tokens): "
    "mom_eurusd__mom_dir_45 and mom_gbpjpy__mom_dir_45 are both mom__mom_dir_45. A family is confirmed in a "
    "pair at a horizon when one of the pair's confirmed features there belongs to it; of each substitute "
    "cluster only the confirmed member with the largest held-out effect counts. Null: each pair's selections "
    "are chance at its pair-horizon's error bound EB over the p features in selection, so a family with m "
    "members in a pair is falsely selected there with probability at most min(1, m EB / p); k over N pairs is "
    "then Poisson-binomial and the p-value is P(K >= k) (conservative: confirmed selections are rarer than "
    "stable ones). Significant: Benjamini-Yekutieli adjusted p-value (q) at or below the FDR level, over every "
    "family x horizon tested."
)
POOLED_NOTE = (
    "Pooled: per family x horizon, the held-out effect (mean increase in held-out log loss when the column is "
    "permuted) over every pair where the family had a stable member, its most frequently selected member in "
    "each (a rule fixed on the selection rows, which the held-out rows do not overlap). The 95% interval and the "
    "one-sided p-value for an effect above zero come from the spread of the part of the effect the target "
    "drives given the features' values ((up - p) x the permutation's change in log odds), not the swing that "
    "comes from which values a persistent feature happened to take. Where the held-out days are back to back, "
    "whole held-out days of that part are resampled, the same days in every pair, so pairs that move together "
    'on a day count as the evidence they are, not as independent pairs (method "days, given the features"); '
    "where they are spread over the history (pooled_unit auto; always with pooled_unit blocks), the part is "
    "summed per 3-hour clock block over every pair and its standard error is the blocks' variance plus "
    'their covariances with the blocks a label\'s overlap away (method "blocks, given the features", more '
    "degrees of freedom; it assumes the target's surprises given the features are uncorrelated beyond the "
    "labels' overlap). Summaries without that record resample the days' effects, and summaries without days "
    "are combined "
    "as if the pairs were perfectly correlated. The interval covers the "
    "held-out days' targets given the fold models and the features' held-out values (not selection or "
    "training, nor the lean a permutation effect of a persistent column has when it carries nothing, which "
    "bench/calibration.py measures). Significant: Benjamini-Yekutieli q at or "
    "below the FDR level over every cell with a pooled test. Families found: a family is one finding whatever "
    "its horizons, listed with the horizons where it holds: its smallest p-value adjusted over its horizons by "
    "max-T (the horizons' dependence measured by resampling the same days at every horizon; seven strongly "
    "dependent horizons cost about what two or three independent ones would) or, without day records, "
    "Bonferroni; then Benjamini-Yekutieli over families."
)
ERA_NOTE = (
    "Each confirmed feature's selection frequency per era (calendar years when the sample spans two or more, "
    "else equal stretches of sampled days), from a small stability selection per era over all its rows: the "
    "horizon's stable features and other features drawn at random as candidates, complementary halves of the "
    "era's blocks, forward stepwise regression stopped after q steps. Era-dependent: below the collapse "
    "frequency in some era."
)


def families_section(
    pairs: list[dict[str, Any]],
    horizons: list[int],
    strip_tokens: tuple[str, ...],
    fdr_level: float,
    draws: int,
    seed: int,
    unit: PooledUnit = "auto",
) -> dict[str, Any]:
    """Return report.json's `families`: every family x horizon where some pair had a stable
    member, with its count test and pooled test (strongest pooled evidence first), the test
    counts, and the families found counted once across horizons."""
    found = family_cells(pairs, horizons, strip_tokens)
    pooled = pooled_tests(found.cells, fdr_level, draws, seed, unit)
    rows = [row | {"pooled": pooled.get((row["family"], row["horizon"]))} for row in family_tests(found, fdr_level)]
    correlations = horizon_correlations(found.cells, draws, seed)
    findings, families_tested = family_findings(pooled, fdr_level, correlations)
    return {
        "note": FAMILY_NOTE,
        "strip_tokens": list(strip_tokens),
        "fdr_level": fdr_level,
        "method": "Poisson-binomial tail at each pair's error bound; Benjamini-Yekutieli over families x horizons",
        "tests": found.tests,
        "families": found.families,
        "pairs": len(pairs),
        "significant": sum(r["significant"] for r in rows),
        "cells": sorted(rows, key=lambda r: (r["pooled"]["p_value"] if r["pooled"] else 1.0, r["p_value"], -r["k"])),
        "pooled_note": POOLED_NOTE,
        "pooled_tests": len(pooled),
        "pooled_significant": sum(r["significant"] for r in pooled.values()),
        "families_tested": families_tested,
        "findings": findings,
    }


def substitutes_section(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return every cluster of two or more substitutes, per pair and horizon, with its level."""
    return [
        {"pair": p["pair"], "horizon": int(h), "level": r["substitutes"]["level"], "members": cluster}
        for p in pairs
        for h, r in p["horizons"].items()
        if r.get("substitutes")
        for cluster in r["substitutes"]["clusters"]
        if len(cluster) > 1
    ]


def eras_section(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Return each confirmed feature's frequency per era and whether it is era-dependent."""
    rows = []
    for p in pairs:
        for h, result in p["horizons"].items():
            eras = result.get("eras")
            if not eras:
                continue
            labels = [e["era"] for e in eras["eras"]]
            for feature in eras["features"]:
                if feature.get("confirmed", True):
                    rows.append(
                        {
                            "pair": p["pair"],
                            "horizon": int(h),
                            "feature": feature["feature"],
                            "eras": labels,
                            "frequencies": feature["frequencies"],
                            "era_dependent": feature["era_dependent"],
                            "collapsed_eras": feature["collapsed_eras"],
                            "collapse_frequency": eras["collapse_frequency"],
                        }
                    )
    return {"note": ERA_NOTE, "features": rows, "era_dependent": sum(r["era_dependent"] for r in rows)}


def effect_sizes(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return per pair x horizon the held-out AUC and log-loss gain over the baseline, with
    their 95% block-bootstrap intervals (from the held-out verdicts)."""
    return [
        {
            "pair": p["pair"],
            "horizon": int(h),
            "auc": r["confirmation"]["auc"],
            "log_loss_gain": r["confirmation"]["log_loss_gain"],
            "flagged": r["confirmation"]["flagged"],
        }
        for p in pairs
        for h, r in p["horizons"].items()
        if r.get("confirmation")
    ]


def error_accounting(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the stable selections of the run and the sum of their pair-horizons' error bounds:
    up to that many of them are expected to be false."""
    cells = [r for p in pairs for r in p["horizons"].values()]
    return {
        "stable_selections": sum(len(r["stable"]) for r in cells),
        "error_bound_sum": round(sum(float(r["error_bound"]) for r in cells), 4),
        "pair_horizons": len(cells),
    }


def ledger_columns(ledger: Any, pairs: list[dict[str, Any]], strip_tokens: tuple[str, ...]) -> Any:
    """Return the run ledger with `family`, `substitute_cluster` (the cluster's first member, for
    stable features in a cluster of two or more) and `era_dependent` (confirmed features)."""
    cluster_of, era_dependent = {}, {}
    for p in pairs:
        for h, r in p["horizons"].items():
            for cluster in (r.get("substitutes") or {}).get("clusters", []):
                for feature in cluster if len(cluster) > 1 else []:
                    cluster_of[(p["pair"], int(h), feature)] = cluster[0]
            for feature in (r.get("eras") or {}).get("features", []):
                era_dependent[(p["pair"], int(h), feature["feature"])] = feature["era_dependent"]
    keys = list(zip(ledger["pair"], ledger["horizon"].astype(int), ledger["feature"], strict=True))
    ledger = ledger.copy()
    ledger["family"] = [feature_family(f, strip_tokens) for f in ledger["feature"]]
    ledger["substitute_cluster"] = [cluster_of.get(k) for k in keys]
    ledger["substitute_cluster"] = ledger["substitute_cluster"].astype("string")
    ledger["era_dependent"] = [era_dependent.get(k) for k in keys]
    ledger["era_dependent"] = ledger["era_dependent"].astype("boolean")
    return ledger
