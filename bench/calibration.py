"""Is the pooled test's standard error honest for a column that carries nothing? Null z-scores of
persistent noise columns, from 3-hour blocks and from whole days, where the target drifts.

    python bench/calibration.py                # 3 settings x days spread or back to back, 30 worlds each
    python bench/calibration.py --worlds 10    # a quicker look
    python bench/calibration.py --from-zero    # series started at zero, as the synthetic warehouse's were

Each world: three persistent signals (AR(1) phi 0.999, each `--r2` of the latent h45 target's
variance) move the target; the model (LightGBM, the product's confirmation path:
analysis/confirmation.py permutation_effects) reads the signals it is given and three persistent
noise columns (phi 0.999) that carry nothing; the signals it is not given move the labels together
for hours, beyond their 45-row overlap, which is what the pooled test assumes away. The label is
up when the next 45 rows' sum of unit noise plus the drift is positive. The model trains on 16,000
rows; 14 held-out days of 1,440 rows follow a 4,000-row gap, either spread (another 5,000 rows
between days, as a run's days sampled one per stratum are) or back to back (a short warehouse whose
every day is sampled). Per noise column its held-out effect over its standard error is a z-score:
analysis/pooled.py block_variance (3-hour blocks, 36 degrees of freedom) and day_bootstrap (14
days, 13). An honest standard error gives z-scores with a spread near 1 or below (the model's p
standing where the true chance belongs widens it) and few above 2 (2.6% of a t with 36 degrees
of freedom, 3.4% with 13).

The last two columns split each blocks' z at the true chance q of an up move (known here): the
target part (up - q)(A - B), centred on zero given the features, and the rest, q A + (1 - q) B,
set by the features alone (what permuting the column does to the expected loss on these rows),
which the pooled test's standard error leaves out. The series are stationary from their first
row (warehouse.synthetic.ar1); `--from-zero` starts them at zero, so the training rows begin with
a stretch of about a day whose spread is still growing.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace
from datetime import datetime, timedelta

import lightgbm as lgb
import numpy as np
from scipy.signal import lfilter
from scipy.stats import norm
from scipy.stats import t as student_t

from bqx_queue.analysis.confirmation import HeldOutFold, permutation_effects
from bqx_queue.analysis.pooled import BlockRecord, HeldOutEvidence, block_variance, day_bootstrap
from bqx_queue.warehouse import synthetic

TRAIN, GAP, ROWS_PER_DAY, DAYS, BLOCK = 16_000, 4_000, 1_440, 14, 180
SIGNALS = NOISE_COLUMNS = 3


def split_at_chance(
    up: np.ndarray, probability: np.ndarray, effects: np.ndarray, target_noise: np.ndarray, chance: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return per row and column, from permutation_effects' output and the true chance of an up
    move: A - B (the permutation's change, set by the features alone, recovered from the recorded
    (up - p)(A - B)), the target part (up - chance)(A - B), centred on zero given the features,
    and the features' part, chance A + (1 - chance) B, the effect's expectation given them."""
    change = target_noise / (up - probability)[:, None]
    target_part = (up - chance)[:, None] * change
    return change, target_part, effects - target_part


def world(seed: int, r2: float, unmodelled: int, spread: int, from_zero: bool) -> list[tuple[float, ...]]:
    """Return per noise column of one world its z-scores (3-hour blocks and days of the
    target-driven part, days of the effects themselves, and the blocks' z split into its target
    and feature parts), its effect, and the blocks' standard error."""
    rng = np.random.default_rng(seed)
    day_starts = TRAIN + GAP + np.arange(DAYS) * (ROWS_PER_DAY + spread)
    held_out = (day_starts[:, None] + np.arange(ROWS_PER_DAY)).ravel()
    n = int(held_out[-1]) + 1

    def ar1() -> np.ndarray:
        if from_zero:
            return lfilter([1.0], [1.0, -0.999], rng.standard_normal(n)) * math.sqrt(1 - 0.999**2)
        return synthetic.ar1(rng, 0.999, (n,))

    signals = [ar1() for _ in range(SIGNALS)]
    noise = [ar1() for _ in range(NOISE_COLUMNS)]
    steps = np.cumsum(rng.standard_normal(n + 45))
    drift = math.sqrt(r2 / (1 - SIGNALS * r2)) * sum(signals)
    up = (steps[45:] - steps[:-45]) / math.sqrt(45) + drift > 0
    chance = norm.cdf(drift[held_out])  # the true chance of an up move given every signal
    columns = np.column_stack(signals[unmodelled:] + noise).astype(np.float32)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 15, "min_data_in_leaf": 200, "learning_rate": 0.05,
         "num_threads": 1, "verbose": -1, "seed": 0},
        lgb.Dataset(columns[:TRAIN], label=up[:TRAIN].astype(np.float64)), num_boost_round=200,
    )  # fmt: skip
    fold = HeldOutFold(booster, columns[held_out], up[held_out], float(up[:TRAIN].mean()))
    probability, effects, target_noise = permutation_effects(fold, 3, np.random.default_rng(seed))
    _, target_part, feature_part = split_at_chance(up[held_out], probability, effects, target_noise, chance)
    block_of_row, day_of_row = np.arange(len(held_out)) // BLOCK, np.arange(len(held_out)) // ROWS_PER_DAY
    apart = 1 if spread == 0 else 5  # calendar days between held-out days: back to back, or not neighbours
    starts = [
        datetime(2024, 3, 4) + timedelta(days=apart * (b * BLOCK // ROWS_PER_DAY), minutes=b * BLOCK % ROWS_PER_DAY)
        for b in range(len(held_out) // BLOCK)
    ]
    days = [f"day-{d}" for d in range(DAYS)]
    out = []
    for j in range(SIGNALS - unmodelled, columns.shape[1]):
        block_sums = np.bincount(block_of_row, target_noise[:, j])
        evidence = HeldOutEvidence(
            "noise", float(effects[:, j].mean()), 0.0, 1, len(held_out),
            {d: (ROWS_PER_DAY, float(v)) for d, v in zip(days, np.bincount(day_of_row, effects[:, j]), strict=True)},
            dict(zip(days, np.bincount(day_of_row, target_noise[:, j]).tolist(), strict=True)),
            BlockRecord(BLOCK, 1, {s: (BLOCK, float(v)) for s, v in zip(starts, block_sums, strict=True)}),
        )  # fmt: skip
        blocks, whole_days = block_variance([evidence]), day_bootstrap([evidence], 1000, np.random.default_rng(seed))
        effects_by_day = day_bootstrap([replace(evidence, target_noise=None)], 1000, np.random.default_rng(seed))
        assert blocks is not None
        parts = (target_part[:, j].mean(), feature_part[:, j].mean())
        out.append(tuple(e.estimate / e.standard_error for e in (blocks, whole_days, effects_by_day)))
        out[-1] += (*(part / blocks.standard_error for part in parts), blocks.estimate, blocks.standard_error)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worlds", type=int, default=30, help="worlds per setting (3 noise columns each)")
    parser.add_argument("--from-zero", action="store_true", help="start every series at zero, not stationary")
    args = parser.parse_args()
    settings = [(0.0, 0, "no drift"), (0.02, 1, "1 of 3 signals at 2% unmodelled"),
                (0.05, 2, "2 of 3 signals at 5% unmodelled")]  # fmt: skip
    start = "at zero" if args.from_zero else "stationary"
    print(f"null z-scores of {NOISE_COLUMNS} persistent noise columns per world, {args.worlds} worlds per row, "
          f"series started {start}")  # fmt: skip
    print(f"(a t with 36 dof exceeds 2 with chance {student_t.sf(2, 36):.3f}, with 13 dof {student_t.sf(2, 13):.3f})\n")
    print(
        "| drift the model lacks | held-out days | blocks: mean z, sd, share > 2 | days | days of the effects "
        "| blocks' z: target part at the true chance | feature part |"
    )
    print("|---|---|---|---|---|---|---|")
    started, by_setting = time.perf_counter(), []
    for r2, unmodelled, label in settings:
        for spread, days in ((5_000, "spread"), (0, "back to back")):
            worlds = [world(seed, r2, unmodelled, spread, args.from_zero) for seed in range(args.worlds)]
            z = np.array([column for columns in worlds for column in columns])
            by_setting.append((label, days, z))
            cells = [f"{z[:, k].mean():+.2f}, {z[:, k].std():.2f}, {np.mean(z[:, k] > 2):.3f}" for k in range(5)]
            print(f"| {label} | {days} | {' | '.join(cells)} |", flush=True)
    # is the effect itself off centre, or only its z? the z by thirds of the blocks' standard error
    print("\n| drift the model lacks | held-out days | mean effect / its standard error | mean blocks' z by the "
          "blocks' standard error: smallest third, middle, largest |")  # fmt: skip
    print("|---|---|---|---|")
    for label, days, z in by_setting:
        effect, se = z[:, 5], z[:, 6]
        thirds = np.array_split(z[np.argsort(se), 0], 3)
        centre = effect.mean() / (effect.std(ddof=1) / math.sqrt(len(effect)))
        print(f"| {label} | {days} | {centre:+.2f} | {', '.join(f'{t.mean():+.2f}' for t in thirds)} |")
    print(f"\n{(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
