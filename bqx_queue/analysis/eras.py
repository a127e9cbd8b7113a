"""Eras: did a stable feature hold in every stretch of the sampled history, or in some only?

The pair's stability selection pools its whole selection stretch, so a feature that carried
signal in 2020 and none after can still be stable. Here each era (a calendar year when the
sampled days span at least two, else `era_count` contiguous stretches with equal numbers of
sampled days) gets its own small stability selection, over all the pair's usable rows of the era:

- candidates: the horizon's stable features plus `era_reference_features` other features drawn
  at random (seeded) from the pair's usable ones, so a stable feature must keep beating features
  with no special status, as in the full selection;
- complementary pairs of halves of ERA_BLOCKS contiguous blocks of the era (each block without
  its last horizon + 45 rows, so no label reaches into the next block), B pairs as in the run;
- base selector: randomized forward stepwise regression (orthogonal matching pursuit on the
  standardised half-sample Gram, feature weights drawn from [weakness, 1]) stopped after q steps,
  q = max(stable features, the Meinshausen-Buehlmann q for the candidate count at the run's
  expected_false_max and threshold).

A feature's era frequency is the share of the era's 2B fits that enter it. It is era-dependent
when its frequency in some era is below `era_collapse_frequency` (a feature with no signal in an
era enters about q / candidates of the fits). This is a separate, smaller selection than the
run's (fewer candidates, forward stepwise instead of LARS), documented as such in the report.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field

from bqx_queue.analysis.params import AnalysisParams, Stream, seed_sequence
from bqx_queue.config import Settings
from bqx_queue.config.settings import EraCount, EraReferenceFeatures, SelectionPairs
from bqx_queue.domain import TARGET_WINDOW

ERA_BLOCKS = 8  # blocks per era: halves of 4 blocks keep a few thousand rows per fit at 80,000 rows


class EraParams(AnalysisParams):
    """How the per-era selections run (Settings' era_* fields and the run's selection_* ones)."""

    era_count: EraCount
    reference_features: EraReferenceFeatures
    collapse_frequency: float = Field(ge=0, lt=1)
    pairs: SelectionPairs
    threshold: float = Field(gt=0.5, le=1)  # q's MB bound divides by 2 threshold - 1
    expected_false_max: float = Field(gt=0)
    weakness: float = Field(gt=0, le=1)
    seed: np.random.SeedSequence

    @classmethod
    def from_settings(cls, settings: Settings, pair: str, horizon: int) -> EraParams:
        """Return the era parameters of `settings`, seeded for `pair` at `horizon`."""
        return cls(
            era_count=settings.era_count,
            reference_features=settings.era_reference_features,
            collapse_frequency=settings.era_collapse_frequency,
            pairs=settings.selection_pairs,
            threshold=settings.selection_threshold,
            expected_false_max=settings.expected_false_max,
            weakness=settings.selection_weakness,
            seed=seed_sequence(settings.seed, pair, Stream.ERAS, horizon),
        )


def era_of_rows(times: np.ndarray, era_count: int) -> tuple[list[str], np.ndarray]:
    """Return era labels and each row's era: calendar years when the rows span at least two
    years, else `era_count` contiguous stretches with (nearly) equal numbers of sampled days."""
    days = times.astype("datetime64[D]")
    years = days.astype("datetime64[Y]").astype(int) + 1970
    if len(np.unique(years)) >= 2:
        labels = [str(y) for y in np.unique(years)]
        return labels, np.searchsorted(np.unique(years), years)
    unique_days = np.unique(days)
    groups = [g for g in np.array_split(unique_days, min(era_count, len(unique_days))) if len(g)]
    labels = [f"{g[0]}..{g[-1]}" for g in groups]
    starts = np.array([g[0] for g in groups])
    return labels, np.searchsorted(starts, days, side="right") - 1


def _block_sums(values: np.ndarray, target: np.ndarray, blocks: list[np.ndarray]) -> list[tuple[Any, ...]]:
    sums = []
    for block in blocks:
        x, y = values[block], target[block]
        sums.append((len(block), x.sum(axis=0), y.sum(), x.T @ x, x.T @ y))
    return sums


def _half_correlations(sums: list[tuple[Any, ...]], chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the correlation matrix of the candidates and their correlations with the target
    (up to one common factor) on the union of the chosen blocks."""
    n = sum(sums[b][0] for b in chosen)
    sx = sum(sums[b][1] for b in chosen)
    sy = sum(sums[b][2] for b in chosen)
    gram = sum(sums[b][3] for b in chosen) - np.outer(sx, sx) / n
    cross = sum(sums[b][4] for b in chosen) - sx * sy / n
    scale = np.sqrt(np.maximum(np.diag(gram), 1e-12))
    return gram / np.outer(scale, scale), cross / scale


def forward_stepwise(correlation: np.ndarray, target_correlation: np.ndarray, steps: int) -> list[int]:
    """Return the features orthogonal matching pursuit enters in `steps` steps: each step the
    feature most correlated with the residual of the target on the features entered so far."""
    active: list[int] = []
    residual = target_correlation.copy()
    for _ in range(min(steps, len(target_correlation))):
        score = np.abs(residual)
        score[active] = -np.inf
        active.append(int(np.argmax(score)))
        block = correlation[np.ix_(active, active)] + 1e-9 * np.eye(len(active))
        beta = np.linalg.solve(block, target_correlation[active])
        residual = target_correlation - correlation[:, active] @ beta
    return active


def _era_blocks(rows: np.ndarray, gap: int) -> list[np.ndarray] | None:
    if len(rows) < ERA_BLOCKS * (gap + 10):
        return None
    return [block[:-gap] for block in np.array_split(rows, ERA_BLOCKS)]


def era_frequencies(
    matrix: np.ndarray,
    rows: np.ndarray,
    times: np.ndarray,
    target: np.ndarray,
    stable: list[int],
    names: list[str],
    horizon: int,
    params: EraParams,
) -> dict[str, Any]:
    """Return per era (label, rows) and per stable feature its selection frequency in each era
    (None where the era has too few rows for its blocks) and whether it is era-dependent.

    `rows` index the usable rows of `matrix` in time order; `times` and `target` are aligned with
    `rows`; `stable` are feature columns of `matrix` and `names` their names."""
    rng = np.random.default_rng(params.seed)
    others = np.setdiff1d(np.arange(matrix.shape[1]), stable)
    reference = np.sort(rng.choice(others, min(len(others), params.reference_features), replace=False))
    candidates = np.r_[np.asarray(stable, dtype=np.int64), reference]
    p = len(candidates)
    mb_q = int(math.floor(math.sqrt(params.expected_false_max * (2 * params.threshold - 1) * p)))
    q = min(p - 1, max(len(stable), mb_q, 1))
    labels, era = era_of_rows(times, params.era_count)
    gap = horizon + TARGET_WINDOW
    frequencies: list[list[float | None]] = [[] for _ in stable]
    eras = []
    for index, label in enumerate(labels):
        positions = np.flatnonzero(era == index)
        eras.append({"era": label, "rows": int(len(positions))})
        blocks = _era_blocks(positions, gap)
        if blocks is None or len(stable) == 0:
            for column in frequencies:
                column.append(None)
            continue
        values = matrix[np.ix_(rows[positions[0] : positions[-1] + 1], candidates)].astype(np.float64)
        local = [b - positions[0] for b in blocks]
        sums = _block_sums(values, target[positions[0] : positions[-1] + 1], local)
        counts = np.zeros(p)
        for _ in range(params.pairs):
            order = rng.permutation(ERA_BLOCKS)
            for half in (order[: ERA_BLOCKS // 2], order[ERA_BLOCKS // 2 :]):
                correlation, target_correlation = _half_correlations(sums, half)
                weights = rng.uniform(params.weakness, 1.0, p)
                entered = forward_stepwise(correlation * np.outer(weights, weights), target_correlation * weights, q)
                counts[entered] += 1
        for j in range(len(stable)):
            frequencies[j].append(round(float(counts[j] / (2 * params.pairs)), 4))
    features = []
    for j, name in enumerate(names):
        known = [(labels[i], f) for i, f in enumerate(frequencies[j]) if f is not None]
        collapsed = [label for label, f in known if f < params.collapse_frequency]
        features.append(
            {
                "feature": name,
                "frequencies": frequencies[j],
                "min_frequency": min((f for _, f in known), default=None),
                "era_dependent": bool(collapsed),
                "collapsed_eras": collapsed,
            }
        )
    return {
        "eras": eras,
        "candidates": int(p),
        "q": int(q),
        "fits": 2 * params.pairs,
        "collapse_frequency": params.collapse_frequency,
        "features": features,
    }
