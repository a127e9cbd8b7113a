"""Substitutes: stable features that carry the same information, clustered by correlation.

Two stable features of a pair whose absolute correlation on the selection rows is at least
`level` (setting `substitute_correlation`) are substitutes, and clusters are the connected
components of that relation (single linkage, as clustered feature importance groups features
before judging them: Lopez de Prado, MLAM ch. 6). A cluster counts once in the across-pair
family counts, so ten copies of one signal cannot look like ten findings.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> a = rng.standard_normal(500)
>>> values = np.c_[a, a + 0.1 * rng.standard_normal(500), rng.standard_normal(500)]
>>> substitute_clusters(values, ["x", "x_copy", "other"], 0.7)
[['x', 'x_copy'], ['other']]
"""

from __future__ import annotations

import numpy as np


def absolute_correlation(values: np.ndarray) -> np.ndarray:
    """Return the (k, k) absolute Pearson correlations of the columns (0 for a constant column)."""
    centred = values.astype(np.float64) - values.mean(axis=0)
    norms = np.sqrt(np.square(centred).sum(axis=0))
    scaled = np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)
    correlation = np.abs(scaled.T @ scaled)
    np.fill_diagonal(correlation, 1.0)
    return correlation


def substitute_clusters(values: np.ndarray, names: list[str], level: float) -> list[list[str]]:
    """Return the features grouped into clusters (every feature in exactly one, singletons
    included), each cluster in the order of `names`, clusters by their first member."""
    if not names:
        return []
    return linked_clusters(absolute_correlation(values) >= level, names)


def linked_clusters(linked: np.ndarray, names: list[str]) -> list[list[str]]:
    """Return the connected components of a (k, k) boolean link matrix (single linkage), each in
    the order of `names`, components by their first member."""
    k = len(names)
    label = np.full(k, -1)
    for start in range(k):
        if label[start] >= 0:
            continue
        label[start] = start
        frontier = [start]
        while frontier:  # every feature reachable through links joins the cluster
            j = frontier.pop()
            for other in np.flatnonzero(linked[j] & (label < 0)):
                label[other] = start
                frontier.append(int(other))
    return [[names[j] for j in range(k) if label[j] == root] for root in sorted(set(label.tolist()))]
