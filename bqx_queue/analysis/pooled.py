"""Pooled held-out evidence: one effect per family and horizon from every pair where the family
had a stable member, with an interval and a p-value that stay valid when pairs are correlated.

A family whose effect is real but small in every pair is confirmed in few pairs alone (each pair's
verdict is a Bonferroni yes/no over a few wide bootstrap blocks); its positive estimates in many
pairs are evidence that adds up. Each pair's confirmation measures, per stable feature, the mean
increase in held-out log loss when the column is permuted (analysis/confirmation.py), and keeps
it summed per calendar day beside the day's row count. The pooled effect is the mean per-row
effect over every pooled pair's held-out rows (pairs weigh by their held-out rows, nearly equal
within a run).

Dependence: a run samples the same days for every pair, so the pairs' held-out rows fall on the
same days and hours, and pairs sharing a currency (or the same news) move together. Every unit
below is summed over the pairs before its spread is taken (the same day, or the same clock block,
in every pair), so whatever dependence the pairs have at the same time is kept: two pairs with
identical records have the interval of one. The unit is Settings.pooled_unit: whole days, resampled
by a bootstrap of the same days in every pair, or 3-hour clock blocks (section "Blocks"); "auto",
the default, takes blocks where the held-out days are spread (spread_days) and days where they are
back to back. With D days the bootstrap's variance of a mean of D units is (D - 1) / D of the
unbiased one, so its standard error is scaled by sqrt(D / (D - 1)); interval and p-value use
Student t with D - 1 degrees of freedom. The p-value is one-sided, for "pooled effect > 0".

What is resampled: the test asks whether, on the held-out rows as they are, the target moves with
the feature; so the spread that counts is the target's, given the features' values (method "days,
given the features"). A row's permutation effect is up x A + (1 - up) x B with A and B set by the
features alone, so given the features it varies only through (up - q) x (A - B), q the chance of an
up move; each pair records that part per day with the model's probability for q
(`day_target_noise`, analysis/confirmation.py's permutation_effects), and the days resampled are
those sums. The effect itself also swings with which values a persistent feature happened to take
on each day (where it sat far from its median the model's predictions change more when it is
permuted); that swing is in the days' effect sums but is not evidence for or against the target
moving with the feature, and resampling it widens the interval, the more the stronger and the more
persistent the feature. Using the model's probability where the true q belongs leaves
(q - p) x (A - B), also set by the features, in the resampled sums: their spread, and so the
interval, can only grow. Summaries without the target-driven sums resample the days' effect sums (method "days").

Blocks (method "blocks, given the features"): 14 held-out days are 14 units, and a Student t with
13 degrees of freedom needs t = 3.85 where a normal needs 3.09 for p = 0.001. Given the features,
two rows' target-driven parts are correlated only while their labels share rows (horizon + 45
rows), provided the target's up/down surprises, what the features do not predict, are uncorrelated
beyond that. Each pair also records the part per 3-hour clock block (analysis/confirmation.py
POOLING_BLOCK_MINUTES), and the standard error is the blocks' variance plus their covariances with
the blocks up to a label's overlap later (`lag`), the pairs summed block by block: 112 blocks of 14
days give 36 degrees of freedom. What holds and what does not:
- on prices we did not make (tests/test_real_prices.py): over 5,000 hourly EUR/USD bars (the
  `backtesting` package's) the days' sums of the next hour's direction vary 0.97 times as much
  as the 3-hour blocks say (the ratio's noise is about 0.09); a trend that moves a day's chance
  of an up hour by 10 points would show as 1.4;
- a persistent signal the model lacks (tests/test_confirmation.py), a tenth of the target's
  variance, moves the labels together far beyond their overlap; the blocks' standard error still
  covered the spread of a noise column's effect over redraws of the target (0.87 to 1.72 times
  it over five worlds);
- but a persistent column that carries nothing does not have a null z-score centred on zero.
  bench/calibration.py puts its mean at +0.1 to +0.2 (3-6% above 2), whatever the unit and
  whether the held-out days are spread or back to back. Split at the true chance (known in a
  simulation), the target part is centred; the lean is in the features' part, q A + (1 - q) B,
  what permuting the column does to the expected loss on these rows, which no resampling of the
  target sees. It lies in the columns the model barely uses; why, is not settled. Days' 13
  degrees of freedom absorb more of it. On synthetic benches whose held-out days are back to back,
  blocks found families with no planted feature that days did not; where the days were spread,
  blocks found more planted families and none that was not (docs/performance.md). Hence "auto".

Which member, and why the test is not biased by picking it: per pair the family's stable member
with the highest selection frequency (ties: the first name), a rule fixed on the selection rows
before any held-out effect is seen (the largest of several held-out effects would be biased
upward). Conditioning on stability is no bias either: the held-out rows are disjoint from the
rows selection read, and a purge gap apart.

Summaries written before the per-day record have each feature's effect and 95% interval only.
A cell with such a pair falls back to a combination valid under any correlation: the row-weighted
mean of the pairs' effects, with the row-weighted mean of their standard errors as its standard
error (the standard deviation of a weighted sum is at most the weighted sum of the standard
deviations, with equality at correlation 1) and Student t at the smallest of their degrees of
freedom: exact for perfectly correlated pairs, conservative by up to sqrt(N) for independent ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import numpy as np
from scipy.stats import t as student_t

from bqx_queue.analysis.families import feature_family
from bqx_queue.config.settings import PooledUnit

BLOCKS = "blocks, given the features"
Unit = TypeVar("Unit", str, datetime)  # a day's ISO date, or a clock block's start
GIVEN_FEATURES = "days, given the features"
DAYS = "days"
WORST_CASE = "worst-case correlation"


@dataclass(frozen=True)
class HeldOutEvidence:
    """One pair's held-out effect of the family member it pools, from its confirmation."""

    feature: str
    effect: float  # mean over the pair's held-out rows
    standard_error: float  # the pair's block bootstrap, read back from its 95% interval
    dof: int  # the degrees of freedom of the pair's interval (independent stretches - 1)
    rows: int
    days: dict[str, tuple[int, float]] | None  # held-out day -> (rows, summed effect); None: an older summary
    target_noise: dict[str, float] | None  # held-out day -> summed target-driven part; None: an older summary
    blocks: BlockRecord | None = None  # the target-driven part per clock block; None: an older summary


@dataclass(frozen=True)
class BlockRecord:
    """One pair's target-driven part summed per clock block of its held-out rows."""

    minutes: int  # the blocks' length
    lag: int  # blocks apart whose labels can still share rows
    sums: dict[datetime, tuple[int, float]]  # block start -> (rows, summed target-driven part)


def _blocks(blocks: dict[str, Any] | None, starts: list[datetime], verdict: dict[str, Any]) -> BlockRecord | None:
    if blocks is None or verdict.get("block_target_noise") is None:
        return None
    cells = zip(blocks["rows"], verdict["block_target_noise"], strict=True)
    return BlockRecord(int(blocks["minutes"]), int(blocks["lag"]), dict(zip(starts, cells, strict=True)))


def _evidence(confirmation: dict[str, Any], starts: list[datetime], verdict: dict[str, Any]) -> HeldOutEvidence:
    """Return a verdict's held-out evidence; `starts` are the horizon's block starts, parsed once."""
    rows = int(confirmation["heldout_rows"])
    dof = verdict.get("dof") or max(1, math.ceil(rows / int(verdict["block_rows"])) - 1)
    standard_error = (verdict["effect_high"] - verdict["effect_low"]) / (2 * float(student_t.ppf(0.975, dof)))
    days = noise = None
    if verdict.get("day_effects") is not None and confirmation.get("heldout_days") is not None:
        rows_by_day = zip(confirmation["heldout_days"], confirmation["heldout_day_rows"], strict=True)
        days = {str(d): (int(n), float(e)) for (d, n), e in zip(rows_by_day, verdict["day_effects"], strict=True)}
        if verdict.get("day_target_noise") is not None:
            noise = dict(zip(map(str, confirmation["heldout_days"]), verdict["day_target_noise"], strict=True))
    blocks = _blocks(confirmation.get("pooling_blocks"), starts, verdict)
    return HeldOutEvidence(verdict["feature"], float(verdict["effect"]), standard_error, dof, rows, days, noise, blocks)


def pooled_members(horizon_result: dict[str, Any], strip_tokens: tuple[str, ...]) -> dict[str, HeldOutEvidence]:
    """Return family -> the held-out evidence of the pair-horizon's member it pools: of the
    family's stable features with a verdict, the one with the highest selection frequency."""
    confirmation = horizon_result.get("confirmation") or {}
    verdicts = {v["feature"]: v for v in confirmation.get("features", [])}
    frequency = {s["feature"]: float(s["frequency"]) for s in horizon_result.get("stable", [])}
    chosen: dict[str, str] = {}
    for feature in sorted(verdicts, key=lambda f: (-frequency.get(f, 0.0), f)):
        chosen.setdefault(feature_family(feature, strip_tokens), feature)
    starts = [datetime.fromisoformat(str(t)) for t in (confirmation.get("pooling_blocks") or {}).get("starts", [])]
    return {family: _evidence(confirmation, starts, verdicts[feature]) for family, feature in chosen.items()}


@dataclass(frozen=True)
class PooledEffect:
    """A family's held-out effect pooled over pairs, with its standard error."""

    estimate: float
    standard_error: float
    dof: int
    method: str  # BLOCKS, GIVEN_FEATURES, DAYS or WORST_CASE
    days: int | None  # held-out days pooled (BLOCKS), resampled (GIVEN_FEATURES, DAYS)
    blocks: int | None = None  # clock blocks whose covariances give the standard error (BLOCKS)

    def interval(self) -> tuple[float, float]:
        """Return the 95% interval: estimate -/+ t(0.975, dof) x standard error."""
        half = float(student_t.ppf(0.975, self.dof)) * self.standard_error
        return self.estimate - half, self.estimate + half

    def p_value(self) -> float:
        """Return the one-sided p-value for "pooled effect > 0"."""
        if self.standard_error == 0:
            return 0.0 if self.estimate > 0 else 1.0
        return float(student_t.sf(self.estimate / self.standard_error, self.dof))


def unit_totals(records: list[dict[Unit, tuple[int, float]]], units: list[Unit]) -> tuple[np.ndarray, np.ndarray]:
    """Return the rows and the summed value on each of `units` (days, or block starts), over every
    pair's records of unit -> (rows, sum)."""
    index = {unit: i for i, unit in enumerate(units)}
    rows, sums = np.zeros(len(units)), np.zeros(len(units))
    for pair_units in records:
        for unit, (n, total) in pair_units.items():
            rows[index[unit]] += n
            sums[index[unit]] += total
    return rows, sums


def target_noise_totals(evidence: list[HeldOutEvidence], days: list[str]) -> np.ndarray | None:
    """Return the target-driven part summed on each of `days` over the pairs, or None when a
    pair's summary did not record it (the days' effect sums are resampled instead)."""
    if any(e.target_noise is None for e in evidence):
        return None
    index = {day: i for i, day in enumerate(days)}
    noise = np.zeros(len(days))
    for e in evidence:
        for day, total in (e.target_noise or {}).items():
            noise[index[day]] += total
    return noise


def day_records(evidence: list[HeldOutEvidence], days: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Return on each of `days`, over the pairs: the rows, the summed effect, the sums a day
    bootstrap resamples (the target-driven parts, else the effects) and that method's name."""
    rows, effects = unit_totals([e.days for e in evidence if e.days is not None], days)
    noise = target_noise_totals(evidence, days)
    return (rows, effects, effects, DAYS) if noise is None else (rows, effects, noise, GIVEN_FEATURES)


def resampled_days(count: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Return (draws, count) multiplicities of `count` days drawn with replacement."""
    picks = rng.integers(0, count, size=(draws, count)) + count * np.arange(draws)[:, None]
    return np.bincount(picks.ravel(), minlength=draws * count).reshape(draws, count)


def day_bootstrap(evidence: list[HeldOutEvidence], draws: int, rng: np.random.Generator) -> PooledEffect:
    """Return the row-weighted mean effect over every pair's held-out days, its standard error
    from resampling whole days (the same days in every pair) of the target-driven parts (else
    the effects), scaled by sqrt(D / (D - 1))."""
    days = sorted(set().union(*(e.days or {} for e in evidence)))
    rows, effects, resampled, method = day_records(evidence, days)
    count = len(days)
    weights = resampled_days(count, draws, rng)
    replicates = weights @ resampled / (weights @ rows)
    standard_error = float(replicates.std(ddof=1)) * math.sqrt(count / (count - 1))
    return PooledEffect(float(effects.sum() / rows.sum()), standard_error, count - 1, method, count)


def block_variance(evidence: list[HeldOutEvidence]) -> PooledEffect | None:
    """Return the row-weighted mean effect over every pair's held-out days with its standard error
    from the target-driven parts summed per clock block over the pairs: the blocks' variances and
    their covariances with the blocks up to `lag` later (whose labels can share rows), i.e. a
    truncated, unweighted long-run variance (Newey & West 1987 with the lag the labels' overlap
    fixes). None when a pair lacks block records, the pairs' blocks differ, or the sum is not
    positive (the day bootstrap then serves).

    Degrees of freedom: n^2 / (n + 2 c) - 1 for n blocks and c covariance terms, the chi-square
    that matches this estimator's mean and variance when the blocks are independent and equally
    spread (n - 1 with no covariance term; about n / 3 with one later block for each)."""
    records = [e.blocks for e in evidence if e.blocks is not None]
    if len(records) < len(evidence) or len({r.minutes for r in records}) != 1:
        return None
    minutes, lag = records[0].minutes, max(r.lag for r in records)
    starts = sorted(set().union(*(r.sums for r in records)))
    index = {start: i for i, start in enumerate(starts)}
    rows, noise = unit_totals([r.sums for r in records], starts)
    deviations = noise - rows * (noise.sum() / rows.sum())  # the ratio's linearisation
    variance, covariances = float(deviations @ deviations), 0
    for distance in range(1, lag + 1):
        later = [(i, index.get(s + timedelta(minutes=distance * minutes))) for i, s in enumerate(starts)]
        pairs = np.array([(i, j) for i, j in later if j is not None]).reshape(-1, 2)
        variance += 2 * float(deviations[pairs[:, 0]] @ deviations[pairs[:, 1]])
        covariances += len(pairs)
    count = len(starts)
    if variance <= 0 or count < 2:
        return None
    standard_error = math.sqrt(variance * count / (count - 1)) / rows.sum()
    dof = max(1, int(count * count / (count + 2 * covariances)) - 1)
    estimate = sum(e.effect * e.rows for e in evidence) / sum(e.rows for e in evidence)
    days = len(set().union(*(e.days or {} for e in evidence)))
    return PooledEffect(float(estimate), standard_error, dof, BLOCKS, days, count)


def horizon_correlation(
    by_horizon: list[list[HeldOutEvidence]], draws: int, rng: np.random.Generator
) -> np.ndarray | None:
    """Return the correlation between a family's pooled effects at its horizons (one list of the
    pairs' evidence with day records per horizon) under one resampling of whole days shared by
    every horizon and pair, of the same sums each horizon's pooled test resamples: the dependence
    their overlapping targets and the same held-out days give them. None when a horizon's
    resampled effect does not vary."""
    days = sorted(set().union(*(e.days or {} for pairs in by_horizon for e in pairs)))
    weights = resampled_days(len(days), draws, rng)
    replicates = []
    for pairs in by_horizon:
        rows, _, resampled, _ = day_records(pairs, days)
        replicates.append(weights @ resampled / np.maximum(weights @ rows, 1))
    if min(float(np.std(r)) for r in replicates) == 0:
        return None
    return np.corrcoef(np.array(replicates))


def worst_case_combination(evidence: list[HeldOutEvidence]) -> PooledEffect:
    """Return the row-weighted mean of the pairs' effects with the row-weighted mean of their
    standard errors: valid whatever the pairs' correlation."""
    weights = np.array([e.rows for e in evidence], dtype=np.float64)
    weights /= weights.sum()
    estimate = float(weights @ np.array([e.effect for e in evidence]))
    standard_error = float(weights @ np.array([e.standard_error for e in evidence]))
    return PooledEffect(estimate, standard_error, min(e.dof for e in evidence), WORST_CASE, None)


def spread_days(days: list[str]) -> bool:
    """Return whether at most half of the held-out `days` follow another of them on the business
    day before: a run over a long history samples them so; a short warehouse whose every day is
    sampled has them back to back, where a persistent column's effect leans further from zero.

    >>> spread_days(["2024-03-04", "2024-03-08", "2024-03-14"]), spread_days(["2024-03-07", "2024-03-08", "2024-03-11"])
    (True, False)
    """
    dates = np.array(sorted(days), dtype="datetime64[D]")
    previous = np.busday_offset(dates, -1, roll="backward")
    return 2 * int(np.isin(previous, dates).sum()) <= len(dates)


def pooled_effect(
    evidence: list[HeldOutEvidence], draws: int, seed: np.random.SeedSequence, unit: PooledUnit = "auto"
) -> PooledEffect:
    """Return the pairs' pooled held-out effect: from the clock blocks' covariances with `unit`
    "blocks", or "auto" and the held-out days spread (spread_days), when every pair kept its
    blocks; else by resampling days when every pair kept its days and there are two or more; else
    by the worst-case combination."""
    by_day = [e.days for e in evidence if e.days is not None]
    if len(by_day) == len(evidence) and len(days := set().union(*by_day)) >= 2:
        wanted = unit == "blocks" or (unit == "auto" and spread_days(list(days)))
        blocks = block_variance(evidence) if wanted else None
        return blocks or day_bootstrap(evidence, draws, np.random.default_rng(seed))
    return worst_case_combination(evidence)
