"""Across pairs: in how many pairs is a feature family confirmed at a horizon, and is that more
than chance? And, pooled over the pairs where the family was stable, is its held-out effect
above zero (analysis/pooled.py)?

The unit is the family (analysis/families.py): `mom__mom_dir_45` is confirmed in pair P at
horizon h when a confirmed feature of P at h belongs to it. Substitutes count once: of each
cluster of correlated stable features (analysis/substitutes.py), only the confirmed member with
the largest held-out effect counts, for its family.

Null model: every pair's selections are chance at its cell's error bound. Stability selection
bounds the expected number of falsely selected features of a pair-horizon by its
Meinshausen-Buehlmann bound EB over the p features that entered selection, so one noise feature
is selected with probability at most EB / p, and a family with m members in that pair at most
min(1, m EB / p). The count k over N pairs is then a sum of independent Bernoulli variables with
those probabilities (a Poisson-binomial; binomial when every pair has the same EB, p and m), and
the p-value is P(K >= k). A confirmed selection is rarer than a stable one, so the null's rates
are upper bounds and the p-values conservative. Benjamini-Yekutieli then controls the false
discovery rate over every family x horizon tested, under any dependence between them (pairs
share currencies, so their tests are dependent).

The count throws away what each pair's held-out effect says short of a confirmation; the pooled
test keeps it: per family x horizon, one effect pooled over every pair where a member was stable,
with a p-value for "pooled effect > 0", and Benjamini-Yekutieli over every cell with a pooled
test. Which cells get one depends only on the selection rows (a stable member somewhere), which
the held-out rows do not overlap.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from bqx_queue.analysis.families import feature_family
from bqx_queue.analysis.params import Stream, seed_sequence
from bqx_queue.analysis.pooled import HeldOutEvidence, horizon_correlation, pooled_effect, pooled_members
from bqx_queue.config.settings import PooledUnit


def poisson_binomial_tail(probabilities: list[float], k: int) -> float:
    """Return P(K >= k) for K the number of successes of independent trials with these
    success probabilities (exact, by convolution).

    >>> round(poisson_binomial_tail([0.5, 0.5], 1), 4)
    0.75
    >>> poisson_binomial_tail([0.1, 0.2], 0)
    1.0
    """
    if k <= 0:
        return 1.0
    distribution = np.zeros(len(probabilities) + 1)
    distribution[0] = 1.0
    for i, p in enumerate(probabilities):
        distribution[1 : i + 2] = distribution[1 : i + 2] * (1 - p) + distribution[: i + 1] * p
        distribution[0] *= 1 - p
    return float(min(1.0, max(0.0, distribution[k:].sum())))


def benjamini_yekutieli(p_values: np.ndarray) -> np.ndarray:
    """Return Benjamini-Yekutieli adjusted p-values (FDR under arbitrary dependence):
    q_(i) = min over j >= i of min(1, m c(m) p_(j) / j), c(m) = sum 1/i.

    >>> [round(float(q), 4) for q in benjamini_yekutieli(np.array([0.001, 0.02, 0.5]))]
    [0.0055, 0.055, 0.9167]
    """
    m = len(p_values)
    if m == 0:
        return np.empty(0)
    order = np.argsort(p_values)
    harmonic = float(np.sum(1.0 / np.arange(1, m + 1)))
    scaled = p_values[order] * m * harmonic / np.arange(1, m + 1)
    adjusted_sorted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return adjusted


@dataclass(frozen=True)
class FamilyCell:
    """One family at one horizon across the run's pairs."""

    family: str
    horizon: int
    members: dict[str, list[str]]  # pair -> its confirmed features of the family (counted once)
    chance: dict[str, float]  # pair -> probability the family is falsely selected there
    evidence: dict[str, HeldOutEvidence]  # pair -> held-out effect of its pooled stable member

    @property
    def k(self) -> int:
        return len(self.members)


def counted_features(horizon_result: dict[str, Any]) -> list[str]:
    """Return the confirmed features of a pair-horizon that count: one per substitute cluster,
    the one with the largest held-out effect."""
    verdict = horizon_result.get("confirmation") or {}
    effect = {f["feature"]: f["effect"] for f in verdict.get("features", []) if f["confirmed"]}
    clusters = (horizon_result.get("substitutes") or {}).get("clusters") or [[f] for f in effect]
    counted = []
    for cluster in clusters:
        confirmed = [f for f in cluster if f in effect]
        if confirmed:
            counted.append(max(confirmed, key=lambda f: effect[f]))
    clustered = {f for cluster in clusters for f in cluster}
    counted += [f for f in effect if f not in clustered]  # a summary whose clusters miss a feature
    return counted


@dataclass(frozen=True)
class FamilyCells:
    """The cells where some pair had a stable member of the family, and how many family x horizon
    cells the count test covers (every family any pair has, at every horizon: k = 0 cells have
    p-value 1)."""

    cells: list[FamilyCell]
    tests: int
    families: int


def family_cells(pairs: list[dict[str, Any]], horizons: list[int], strip_tokens: tuple[str, ...]) -> FamilyCells:
    """Return the family x horizon cells of the ok pairs' summaries where some pair had a stable
    member (k >= 0 pairs confirmed it), and the count test's number of tests.

    A pair enters a cell's N when it was evaluated at the horizon and has the family (its summary's
    `families`, or a confirmed member); only cells with a stable member are built, so a
    production-width run (about 17,000 families x 7 horizons) stays small."""
    members: dict[tuple[str, int], dict[str, list[str]]] = defaultdict(dict)
    evidence: dict[tuple[str, int], dict[str, HeldOutEvidence]] = defaultdict(dict)
    families: set[str] = set()
    for pair in pairs:
        families |= set(pair.get("families") or {})
        for horizon in horizons:
            result = pair["horizons"].get(str(horizon))
            if result is None:
                continue
            for feature in counted_features(result):
                family = feature_family(feature, strip_tokens)
                families.add(family)
                members[(family, horizon)].setdefault(pair["pair"], []).append(feature)
            for family, pooled in pooled_members(result, strip_tokens).items():
                families.add(family)
                evidence[(family, horizon)][pair["pair"]] = pooled
    cells = []
    for family, horizon in sorted(members.keys() | evidence.keys()):
        found = members.get((family, horizon), {})
        chance = {}
        for pair in pairs:
            result = pair["horizons"].get(str(horizon))
            size = (pair.get("families") or {}).get(family, 1 if pair["pair"] in found else 0)
            if result is None or size == 0:
                continue
            features_in_selection = max(1, int(pair.get("features_in_selection") or pair.get("features_usable") or 1))
            chance[pair["pair"]] = min(1.0, size * float(result["error_bound"]) / features_in_selection)
        cells.append(FamilyCell(family, horizon, found, chance, evidence.get((family, horizon), {})))
    return FamilyCells(cells, len(families) * len(horizons), len(families))


def family_tests(found: FamilyCells, fdr_level: float) -> list[dict[str, Any]]:
    """Return every cell (JSON-serialisable, strongest first): k of N pairs, the
    null's expected count, the p-value P(K >= k), the Benjamini-Yekutieli adjusted value over
    all tested cells (those with k = 0 count with p-value 1), and whether it is significant at
    `fdr_level`."""
    cells = found.cells
    p_values = np.array([poisson_binomial_tail(list(c.chance.values()), c.k) for c in cells])
    untested = max(0, found.tests - len(cells))
    adjusted = benjamini_yekutieli(np.concatenate([p_values, np.ones(untested)]))[: len(cells)]
    rows = [
        {
            "family": cell.family,
            "horizon": cell.horizon,
            "k": cell.k,
            "n_pairs": len(cell.chance),
            "pairs": sorted(cell.members),
            "members": {pair: features for pair, features in sorted(cell.members.items())},
            "expected_under_null": round(sum(cell.chance.values()), 6),
            "p_value": float(p),
            "q_value": float(q),
            "significant": bool(q <= fdr_level),
        }
        for cell, p, q in zip(cells, p_values, adjusted, strict=True)
    ]
    return sorted(rows, key=lambda r: (r["p_value"], -r["k"], r["family"], r["horizon"]))


def pooled_tests(
    cells: list[FamilyCell], fdr_level: float, draws: int, seed: int, unit: PooledUnit = "auto"
) -> dict[tuple[str, int], dict[str, Any]]:
    """Return (family, horizon) -> the pooled test of every cell with a stable member
    (JSON-serialisable): the pooled effect and its 95% interval, how it was pooled, the pairs
    pooled, those with a positive estimate and the member each pooled, the one-sided p-value,
    its Benjamini-Yekutieli adjusted value over these cells and whether it is significant.

    Each cell resamples its days from its own stream (seed, family, horizon), so its result does
    not depend on which other cells the run has."""
    tested = [cell for cell in cells if cell.evidence]
    effects = [
        pooled_effect(list(c.evidence.values()), draws, seed_sequence(seed, c.family, Stream.POOLED, c.horizon), unit)
        for c in tested
    ]
    p_values = np.array([effect.p_value() for effect in effects])
    adjusted = benjamini_yekutieli(p_values)
    rows = {}
    for cell, effect, p, q in zip(tested, effects, p_values, adjusted, strict=True):
        low, high = effect.interval()
        rows[(cell.family, cell.horizon)] = {
            "estimate": effect.estimate,
            "low": low,
            "high": high,
            "method": effect.method,
            "days": effect.days,
            "blocks": effect.blocks,
            "dof": effect.dof,
            "pairs": sorted(cell.evidence),
            "positive": sorted(pair for pair, e in cell.evidence.items() if e.effect > 0),
            "features": {pair: e.feature for pair, e in sorted(cell.evidence.items())},
            "p_value": float(p),
            "q_value": float(q),
            "significant": bool(q <= fdr_level),
        }
    return rows


def horizon_correlations(cells: list[FamilyCell], draws: int, seed: int) -> dict[str, tuple[list[int], np.ndarray]]:
    """Return family -> its tested horizons and the correlation of its pooled effects across them,
    for every family pooled at two or more horizons from day records only (analysis/pooled.py,
    horizon_correlation); a family with an older summary among its pairs gets none.

    The days are resampled from the family's own stream (horizon 0 of Stream.POOLED; its cells use
    their horizons, 15 and up), so a family's result does not depend on the run's other families."""
    by_family: dict[str, list[FamilyCell]] = defaultdict(list)
    for cell in cells:
        if cell.evidence:
            by_family[cell.family].append(cell)
    out = {}
    for family, tested in by_family.items():
        if len(tested) < 2 or any(e.days is None for c in tested for e in c.evidence.values()):
            continue
        records = [list(c.evidence.values()) for c in tested]
        rng = np.random.default_rng(seed_sequence(seed, family, Stream.POOLED))
        correlation = horizon_correlation(records, draws, rng)
        if correlation is not None:
            out[family] = ([c.horizon for c in tested], correlation)
    return out
