"""How much of a feature's held-out evidence the permutation effect keeps, against a linear test.

    python bench/efficiency.py                 # 8 worlds, R^2 2%, phi 0.999: about 2 minutes
    python bench/efficiency.py --r2 1 --worlds 20

bench/persistent.py shows the product's pooled p-values 1.4 to 170 times larger than a linear
test of the planted feature on the same held-out days. This bench asks how much of that gap the
statistic itself costs, in a world with nothing else in the way: one persistent signal (AR(1)
`--phi`) among `--features` persistent columns, the up/down label drawn from its true chance q
(probit, the signal explaining `--r2` of the latent's variance), rows independent given the
features (no label overlap), a LightGBM classifier trained on `--train` rows and read on `--test`
later ones.

Given the features and the model, the held-out evidence has an exact z: the expected statistic
over its standard deviation when only the labels are redrawn from q. For the product's
permutation effect (analysis/confirmation.py permutation_effects, with `repeats` random partners
per row) that is sum(q A + (1 - q) B) / sqrt(sum q (1 - q) (A - B)^2); for the linear test of the
signal column x it is sum (q - mean q) x / sqrt(sum q (1 - q) x^2). The bench prints each z's
median over worlds and its ratio to the linear test's. The z of a test grows with the square
root of the rows, so a ratio r needs 1 / r^2 times the held-out rows to find the same.
"""

from __future__ import annotations

import argparse
import sys

import lightgbm as lgb
import numpy as np
from calibration import split_at_chance  # bench/calibration.py: the effect split at the true chance
from scipy.stats import norm

from bqx_queue.analysis.confirmation import HeldOutFold, permutation_effects
from bqx_queue.warehouse.synthetic import ar1

REPEATS = (1, 3, 10, 30)  # the product's confirmation_repeats is 3


def expected_z(fold: HeldOutFold, q: np.ndarray, repeats: int, rng: np.random.Generator) -> float:
    """Return the permutation effect's z given the features and model: its expectation over
    labels drawn from q, over its standard deviation under those draws."""
    probability, effects, target_noise = permutation_effects(fold, repeats, rng)
    change, _, expected = split_at_chance(fold.up, probability, effects, target_noise, q)
    return float(expected.sum() / np.sqrt(np.sum(q[:, None] * (1 - q[:, None]) * change**2)))


def world(args: argparse.Namespace, rng: np.random.Generator) -> dict[str, float]:
    """Return one world's z per statistic."""
    rows = args.train + args.test
    features = ar1(rng, args.phi, (args.features, rows)).T
    loading = np.sqrt(args.r2 / 100)
    q = norm.cdf(loading * features[:, 0] / np.sqrt(1 - loading**2))
    up = rng.random(rows) < q
    train, test = slice(0, args.train), slice(args.train, None)
    booster = lgb.train(
        {"objective": "binary", "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 200, "verbose": -1},
        lgb.Dataset(features[train], up[train]),
        num_boost_round=200,
    )
    fold = HeldOutFold(booster, features[test], up[test], float(up[train].mean()))
    x, q_test = features[test, 0] - features[train, 0].mean(), q[test]
    linear = float(np.sum((q_test - q_test.mean()) * x) / np.sqrt(np.sum(q_test * (1 - q_test) * x**2)))
    return {"linear": linear} | {f"permutation x{r}": expected_z(fold, q_test, r, rng) for r in REPEATS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worlds", type=int, default=8)
    parser.add_argument("--r2", type=float, default=2.0, help="the signal's share of the latent's variance, in %%")
    parser.add_argument("--phi", type=float, default=0.999)
    parser.add_argument("--features", type=int, default=6)
    parser.add_argument("--train", type=int, default=60_000)
    parser.add_argument("--test", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    results = [world(args, rng) for _ in range(args.worlds)]
    print(f"{args.worlds} worlds, R^2 {args.r2}%, phi {args.phi}, {args.features} features, {args.test:,} test rows")
    print("| statistic | median z | median ratio to the linear test |")
    print("|---|---:|---:|")
    for name in results[0]:
        ratio = np.median([r[name] / r["linear"] for r in results])
        print(f"| {name} | {np.median([r[name] for r in results]):.2f} | {ratio:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
