"""Which whole days a run reads: spread across the full history, the same for every pair."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import numpy as np

from bqx_queue.domain import DataError


def common_days(counts_per_pair: Mapping[str, Mapping[date, int]]) -> dict[date, int]:
    """Return the days every pair has, with the largest row count any pair has on that day."""
    pairs = list(counts_per_pair.values())
    if not pairs:
        return {}
    shared = set(pairs[0]).intersection(*pairs[1:])
    return {day: max(counts[day] for counts in pairs) for day in sorted(shared)}


def sample_days(day_rows: Mapping[date, int], max_rows: int, seed: int) -> list[date]:
    """Return sorted days whose rows sum to at most max_rows, one drawn from each of equal
    strata of the history, so the sample spans all of it (never "the first N rows").

    Reading whole days lets BigQuery prune partitions; stratifying keeps every regime of the
    history in the sample. The same seed and calendar give the same days.
    """
    days = sorted(day_rows)
    if not days:
        raise DataError("the warehouse has no days with data for the selected pairs")
    typical = max(1, int(np.median([day_rows[d] for d in days])))
    wanted = max(1, min(len(days), max_rows // typical))
    rng = np.random.default_rng(seed)
    chosen = [days[int(rng.integers(s.start, s.stop))] for s in _strata(len(days), wanted)]
    # a few days may be longer than typical: drop the largest until the sample fits
    while len(chosen) > 1 and sum(day_rows[d] for d in chosen) > max_rows:
        chosen.remove(max(chosen, key=lambda d: day_rows[d]))
    return sorted(chosen)


def _strata(n: int, parts: int) -> list[range]:
    edges = np.linspace(0, n, parts + 1).round().astype(int)
    return [range(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
