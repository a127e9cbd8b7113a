"""One finding per family across horizons: a family informative at h15 and h30 is one finding at
two horizons, not two findings.

Neighbouring horizons' targets overlap (45-row sums read 15 rows apart share 30 rows), so a
family's pooled tests at its horizons are strongly dependent, and counting each significant
family x horizon cell as a finding counts one feature several times. The headline counts families:

- a family's p-value is Bonferroni over the horizons where it had a pooled test, H min_h p_h
  (valid whatever the dependence between horizons);
- Benjamini-Yekutieli over the families' p-values at the FDR level q selects the families found:
  the expected share of found families with no signal at any horizon stays at or below q, under
  any dependence between families;
- a found family lists the horizons whose p-value passes Bonferroni within the family at the
  selection-adjusted level R q / (M c(M)), R families found of M tested, c(M) = 1 + 1/2 + ... +
  1/M. Its smallest p-value always passes, and the expected share of found families with any
  horizon listed falsely stays at or below q, under any dependence (the false coverage argument
  of Benjamini & Yekutieli 2005, as Benjamini & Bogomolov 2014 apply it to families of tests).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from bqx_queue.analysis.across_pairs import benjamini_yekutieli


def family_findings(
    pooled: dict[tuple[str, int], dict[str, Any]], fdr_level: float
) -> tuple[list[dict[str, Any]], int]:
    """Return the families found across pairs (JSON-serialisable, strongest first: the family, the
    horizons where it holds, the horizons tested, its Bonferroni p-value over them and its
    Benjamini-Yekutieli q over families) and how many families were tested.

    >>> cells = {("a", 15): {"p_value": 1e-6}, ("a", 30): {"p_value": 2e-4}, ("b", 15): {"p_value": 0.4}}
    >>> found, tested = family_findings(cells, 0.05)
    >>> [(f["family"], f["horizons"]) for f in found], tested
    ([('a', [15, 30])], 2)
    """
    by_family: dict[str, dict[int, float]] = defaultdict(dict)
    for (family, horizon), row in pooled.items():
        by_family[family][horizon] = float(row["p_value"])
    names = sorted(by_family)
    p_values = np.array([min(1.0, len(by_family[f]) * min(by_family[f].values())) for f in names])
    adjusted = benjamini_yekutieli(p_values)
    found = [i for i in range(len(names)) if adjusted[i] <= fdr_level]
    tested = len(names)
    level = fdr_level * len(found) / (tested * float(np.sum(1.0 / np.arange(1, tested + 1)))) if found else 0.0
    rows = []
    for i in found:
        horizons = by_family[names[i]]
        rows.append(
            {
                "family": names[i],
                "horizons": sorted(h for h, p in horizons.items() if p * len(horizons) <= level),
                "tested_horizons": sorted(horizons),
                "p_value": float(p_values[i]),
                "q_value": float(adjusted[i]),
            }
        )
    return sorted(rows, key=lambda r: (r["p_value"], r["family"])), tested
