"""Cluster stability: correlated copies of one signal do not split it below the threshold.

When a feature has a noisier near-copy, the fits that want their information choose one or the
other, and each ends below the threshold (0.75 and 0.40, say) though together they are selected in
nearly every fit. So, as in Faletto & Bien's cluster stability selection (2022), features that are
substitutes on the selection rows (|correlation| >= `substitute_correlation`, single linkage) and
each selected in a fair share of the fits are also judged as one unit: the cluster is selected in
a fit when any member is. A cluster selected in at least the threshold share of fits, none of
whose members is stable alone, is stable; its most frequent member stands for it (it enters the
models, named with its cluster), and in the error bound the cluster counts as one feature.

>>> import numpy as np
>>> selected = [np.array([0]), np.array([1]), np.array([0, 2]), np.array([0])]  # four fits
>>> cluster_frequency(selected, [0, 1], 3)
1.0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bqx_queue.analysis.substitutes import linked_clusters

MIN_MEMBER_FREQUENCY = 0.2  # a feature chosen in fewer fits is no one's substitute here


@dataclass(frozen=True)
class StableCluster:
    """A stable cluster: its members (feature indices, most frequent first) and frequency."""

    members: list[int]
    frequency: float

    @property
    def representative(self) -> int:
        return self.members[0]


def cluster_frequency(selected: list[np.ndarray], members: list[int], features: int) -> float:
    """Return the share of fits (each fit's selected feature indices) that selected a member."""
    wanted = np.zeros(features, dtype=bool)
    wanted[members] = True
    return float(np.mean([wanted[fit].any() for fit in selected])) if selected else 0.0


def stable_clusters(
    selected: list[np.ndarray],
    frequencies: np.ndarray,
    correlations: np.ndarray,
    candidates: np.ndarray,
    threshold: float,
    level: float,
) -> list[StableCluster]:
    """Return the clusters of `candidates` (substitutes at |correlation| >= level; `correlations`
    is their (k, k) matrix on the selection rows) selected in at least `threshold` of the fits,
    none of whose members is stable alone."""
    groups = linked_clusters(np.abs(correlations) >= level, [str(j) for j in candidates])
    found = []
    for group in groups:
        members = sorted((int(name) for name in group), key=lambda j: -frequencies[j])
        if len(members) < 2 or frequencies[members[0]] >= threshold:
            continue
        frequency = cluster_frequency(selected, members, len(frequencies))
        if frequency >= threshold:
            found.append(StableCluster(members, frequency))
    return found
