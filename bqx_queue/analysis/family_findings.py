"""One finding per family across horizons: a family informative at h15 and h30 is one finding at
two horizons, not two findings.

Neighbouring horizons' targets overlap (45-row sums read 15 rows apart share 30 rows), so a
family's pooled tests at its horizons are strongly dependent, and counting each significant
family x horizon cell as a finding counts one feature several times. The headline counts families:

- a family's p-value is the single-step max-T adjustment over the horizons where it had a pooled
  test (Westfall & Young 1993; Hothorn, Bretz & Westfall 2008): the chance that the largest of
  its horizons' statistics reaches the largest seen, with the statistics' dependence taken from
  one resampling of whole days shared by every horizon and pair (analysis/pooled.py,
  horizon_correlation) as a Gaussian copula on each horizon's exact one-sided p-value. Strongly
  dependent horizons then cost little (seven horizons at correlation 0.9 multiply a p-value of
  0.006 by about 2.4, where Bonferroni multiplies it by 7); independent ones cost what
  Bonferroni costs. A family pooled from a summary without day records, or whose horizons'
  dependence is unknown, gets Bonferroni, H min_h p_h (valid whatever the dependence); max-T is
  never allowed above it;
- Benjamini-Yekutieli over the families' p-values at the FDR level q selects the families found:
  the expected share of found families with no signal at any horizon stays at or below q, under
  any dependence between families;
- a found family lists the horizons whose adjusted p-value (max-T or Bonferroni, as above)
  passes within the family at the selection-adjusted level R q / (M c(M)), R families found of
  M tested, c(M) = 1 + 1/2 + ... + 1/M. Its smallest p-value always passes, and the expected
  share of found families with any horizon listed falsely stays at or below q, under any
  dependence (the false coverage argument of Benjamini & Yekutieli 2005, as Benjamini &
  Bogomolov 2014 apply it to families of tests).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from scipy.stats import multivariate_normal, norm

from bqx_queue.analysis.across_pairs import benjamini_yekutieli

MAX_T = "max-T"
BONFERRONI = "Bonferroni"
ONE_HORIZON = "one horizon"


def max_t_adjusted(p_values: np.ndarray, correlation: np.ndarray, only: list[int] | None = None) -> np.ndarray:
    """Return each one-sided p-value adjusted for the largest of its dependent statistics: the
    chance that a Gaussian vector with this `correlation` has some coordinate at or above the
    normal quantile of that p-value (the integral is quasi-Monte Carlo from a fixed stream: a
    number, not a resample), never above Bonferroni's m p; with `only`, those p-values alone (about
    30 ms each), and Bonferroni's bound for the others.

    >>> independent = max_t_adjusted(np.array([0.01, 0.2]), np.eye(2))
    >>> [round(float(v), 3) for v in independent]  # 1 - (1 - p)^2 for independent statistics
    [0.02, 0.36]
    >>> same = max_t_adjusted(np.array([0.01, 0.01]), np.ones((2, 2)) * 0.999 + np.eye(2) * 0.001)
    >>> bool(same[0] < 0.012)
    True
    """
    m = len(p_values)
    bonferroni = np.minimum(1.0, m * p_values)
    adjusted = bonferroni.copy()
    for j in range(m) if only is None else only:
        inside = multivariate_normal.cdf(
            np.full(m, norm.isf(max(p_values[j], 1e-300))), np.zeros(m), correlation, allow_singular=True,
            maxpts=10_000 * m, abseps=1e-7, releps=1e-3, rng=np.random.default_rng(0),
        )  # fmt: skip
        adjusted[j] = 1.0 - float(inside)
    return np.clip(np.minimum(adjusted, bonferroni), p_values, 1.0)


def across_horizons(
    p_values: dict[int, float], correlation: tuple[list[int], np.ndarray] | None, smallest_only: bool = False
) -> tuple[dict[int, float], str]:
    """Return each horizon's p-value adjusted over the family's horizons, and how; with
    `smallest_only`, max-T for the smallest alone (the family's p-value) and Bonferroni's bound
    for the others."""
    horizons = sorted(p_values)
    raw = np.array([p_values[h] for h in horizons])
    if len(horizons) == 1:
        return dict(p_values), ONE_HORIZON
    if correlation is not None and sorted(correlation[0]) == horizons:
        order = [correlation[0].index(h) for h in horizons]
        only = [int(np.argmin(raw))] if smallest_only else None
        adjusted = max_t_adjusted(raw, correlation[1][np.ix_(order, order)], only)
        return dict(zip(horizons, adjusted.tolist(), strict=True)), MAX_T
    return dict(zip(horizons, np.minimum(1.0, len(horizons) * raw).tolist(), strict=True)), BONFERRONI


def family_findings(
    pooled: dict[tuple[str, int], dict[str, Any]],
    fdr_level: float,
    correlations: dict[str, tuple[list[int], np.ndarray]] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Return the families found across pairs (JSON-serialisable, strongest first: the family, the
    horizons where it holds, the horizons tested, its p-value adjusted over them and how, and its
    Benjamini-Yekutieli q over families) and how many families were tested. `correlations`
    (family -> horizons and the correlation of its pooled effects across them) allow max-T.

    >>> cells = {("a", 15): {"p_value": 1e-6}, ("a", 30): {"p_value": 2e-4}, ("b", 15): {"p_value": 0.4}}
    >>> found, tested = family_findings(cells, 0.05)
    >>> [(f["family"], f["horizons"], f["across_horizons"]) for f in found], tested
    ([('a', [15, 30], 'Bonferroni')], 2)
    """
    by_family: dict[str, dict[int, float]] = defaultdict(dict)
    for (family, horizon), row in pooled.items():
        by_family[family][horizon] = float(row["p_value"])
    names = sorted(by_family)
    # the family's p-value needs max-T at its smallest p alone; the horizons a found family lists need all
    correlation_of = (correlations or {}).get
    adjusted_by_family = [across_horizons(by_family[f], correlation_of(f), smallest_only=True) for f in names]
    p_values = np.array([min(adjusted.values()) for adjusted, _ in adjusted_by_family])
    q_values = benjamini_yekutieli(p_values)
    found = [i for i in range(len(names)) if q_values[i] <= fdr_level]
    tested = len(names)
    level = fdr_level * len(found) / (tested * float(np.sum(1.0 / np.arange(1, tested + 1)))) if found else 0.0
    rows = []
    for i in found:
        adjusted, method = across_horizons(by_family[names[i]], correlation_of(names[i]))
        rows.append(
            {
                "family": names[i],
                "horizons": sorted(h for h, p in adjusted.items() if p <= level),
                "tested_horizons": sorted(adjusted),
                "p_value": float(p_values[i]),
                "across_horizons": method,
                "q_value": float(q_values[i]),
            }
        )
    return sorted(rows, key=lambda r: (r["p_value"], r["family"])), tested
