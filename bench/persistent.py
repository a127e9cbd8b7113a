"""Persistent families in a few pairs: does the pooled test find what no pair confirms alone?

    python bench/persistent.py                 # 3 pairs, 60 days, R^2 0.5% and 1%, all 7 horizons
    python bench/persistent.py --r2 1,1.5,2    # the strengths docs/performance.md quotes

Issue 18's case: three persistent features (AR(1) phi 0.999, half-life about 11.5 hours) planted
in the same three families in every one of 3 pairs, informative at every horizon, each explaining
`--r2` of the h45 target's variance (WarehouseSpec.feature_r2); 150 features per pair, no
nonlinear kind. Each pair runs through the product's own path without a broker (bench/power.py's
`analyse`: run.plan_run and execute_pair in this process, one thread), and the families found
are the report's (`families.findings`: the pooled test, one finding per family across horizons,
max-T over its horizons, BY over families at family_fdr).

Per strength it first prints each planted feature's correlation with the h45 target over all the
warehouse's rows and over the run's held-out days: a series this persistent has few independent
stretches in 60 days, so what the held-out days carry can be far from what was planted. Then per
planted family and horizon it prints each pair's held-out verdict (confirmed alone or not,
its effect and 95% interval), the pooled effect with its interval and p-value, and whether the
family is among the report's findings at that horizon, and beside them a linear test of the
planted feature itself on the same held-out days (`linear_test`: the slope of the up/down label on
it, each day summed over the pairs, days as units): what those days carry, so a miss can be
told apart as the days' (the linear test finds nothing either) or the product's (it does);
then per strength one line: planted family x horizon cells listed by a finding, families found,
and families found that were not planted; and two more: of the planted families as strong on the
held-out rows as the issue's (a pair's effect at the first horizon, h15, of +0.006 or more), and
of those the held-out days carry (the linear test's p at most 0.005 at some horizon), how many
were found.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
from power import analyse, assemble  # bench/power.py: the same path, the same report
from scipy.stats import t as student_t
from threadpoolctl import threadpool_limits

from bqx_queue.domain.universe import HORIZONS
from bqx_queue.warehouse.synthetic import WarehouseSpec

PAIRS = ("eurusd", "gbpusd", "usdjpy")
ISSUE_EFFECT = 0.006  # the smallest of the issue's usdjpy h15 held-out effects (+0.006, +0.009, +0.015)
CARRIED_P = 0.005  # a planted family the held-out days carry: the linear test's p, before any adjustment
BENCH_DIR = Path(tempfile.gettempdir()) / "bqx-persistent"


def heldout_days(summary: Any, horizon: int) -> list[str]:
    """Return a pair's held-out days at `horizon`, as ISO dates (none when it has no verdicts)."""
    confirmation = getattr(summary.horizons.get(str(horizon)), "confirmation", None) if summary else None
    return [str(day) for day in (confirmation.heldout_days or [])] if confirmation else []


def linear_test(frames: dict[str, pd.DataFrame], days: dict[str, list[str]], horizon: int) -> tuple[float, float]:
    """Return the t and one-sided p-value of a linear test of a planted feature on the run's held-out
    days at `horizon`, pooled over the pairs as the product pools them (each day summed over the
    pairs, whole days as units, Student t with days - 1 degrees of freedom): the slope of the
    up/down label (the models' target) on the feature, in the direction the other rows show,
    with a day-clustered standard error. It knows which feature was planted and reads it
    directly, so what it finds is what the held-out days carry; what the product's pooled test
    finds below that is lost to selection, the model or the permutation effect."""
    column = f"target_bqx45_h{horizon}"
    scores: dict[str, float] = {}
    residuals: dict[str, float] = {}
    for pair, frame in frames.items():
        frame = frame.dropna(subset=["x", column])
        inside = frame["day"].isin(days[pair])
        train, test = frame[~inside], frame[inside]
        sign = 1.0 if train.x.corr(train[column]) >= 0 else -1.0
        x = sign * (test.x.to_numpy() - train.x.mean()) / train.x.std()
        up = (test[column].to_numpy() > 0) - float((train[column] > 0).mean())
        slope = float(x @ up) / float(x @ x)
        sums = pd.DataFrame({"day": test["day"], "score": x * up, "residual": x * (up - slope * x)})
        for day, row in sums.groupby("day")[["score", "residual"]].sum().iterrows():
            scores[day] = scores.get(day, 0.0) + row.score
            residuals[day] = residuals.get(day, 0.0) + row.residual
    count = len(scores)
    t = sum(scores.values()) / math.sqrt(sum(r * r for r in residuals.values()) * count / (count - 1))
    return t, float(student_t.sf(t, count - 1))


def realized(
    path: Path, r2: float, planted: dict[str, Any], summaries: dict[str, Any], horizons: list[int], keep: bool
) -> dict[tuple[str, int], tuple[float, float]]:
    """Print each planted feature's correlation with the h45 target over all the warehouse's rows
    and over the run's held-out days at h45 (a persistent series' sample correlation over a few
    weeks varies far around the planted one, and the held-out days are what the pooled test sees);
    return per planted family and horizon the linear test's t and p on those days (`linear_test`)."""
    con = duckdb.connect(str(path), read_only=True)
    targets = ", ".join(f"t.target_bqx45_h{h}" for h in horizons)
    print(f"\nplanted features' correlation with target_bqx45_h45 (planted: {math.sqrt(r2 / 100):.3f}):")
    print("| family | " + " | ".join(f"{pair} all rows, held-out days" for pair in PAIRS) + " |")
    print("|---|" + "---|" * len(PAIRS))
    tests = {}
    for family in planted:
        table, column = family.split("__", 1)
        frames = {
            pair: con.sql(
                f"SELECT f.{column} AS x, {targets}, CAST(CAST(t.interval_time AS DATE) AS VARCHAR) AS day "
                f"FROM bqx_features.{table}_{pair} f JOIN bqx_analytics.targets_{pair} t USING (interval_time)"
            ).df()
            for pair in PAIRS
        }
        cells = []
        for pair, frame in frames.items():
            held_out = heldout_days(summaries[pair], 45)
            inside = frame[frame["day"].isin(held_out)]
            cells.append(
                f"{frame.x.corr(frame.target_bqx45_h45):+.3f}, "
                f"{inside.x.corr(inside.target_bqx45_h45):+.3f} ({len(held_out)} days)"
            )
        print(f"| {family} | " + " | ".join(cells) + " |")
        for h in horizons:
            days = {pair: heldout_days(summaries[pair], h) for pair in PAIRS}
            if all(days.values()):
                tests[family, h] = linear_test(frames, days, h)
    con.close()
    if not keep:
        path.unlink(missing_ok=True)
    return tests


def strength(args: argparse.Namespace, r2: float) -> tuple[int, int, int, int]:
    """Run the 3 pairs at `r2` (in %) and print the per-family table; return cells listed,
    cells planted, families found among the planted, and families found that were not planted."""
    spec = WarehouseSpec(
        pairs=PAIRS,
        days=args.days,
        features_per_pair=args.features,
        signals=3,
        signal_phis=(0.999, 0.999, 0.999),
        feature_r2=r2 / 100,
        nonlinear_r2=0.0,
        planted_share=1.0,
        seed=args.seed,
    )
    part = analyse(spec, list(PAIRS), f"persistent-{r2}", argparse.Namespace(**(vars(args) | {"keep": True})))
    families = assemble({p: part for p in PAIRS}, part.settings)
    planted = part.manifest["planted_families"]
    found = {f.family: f.horizons for f in families.findings or []}
    summaries = {p: part.store.pair_summary(p) for p in PAIRS}
    linear = realized(args.workdir / f"persistent-{r2}.duckdb", r2, planted, summaries, args.horizons, args.keep)
    print(f"\nR^2 {r2}% per planted feature (phi 0.999, in {len(PAIRS)} of {len(PAIRS)} pairs):")
    print("| family | h | per pair: effect [95% CI] (C: confirmed alone) | pooled [95% CI] | p | found | linear t, p |")
    print("|---|---:|---|---|---:|---|---|")
    cells = {(c.family, c.horizon): c for c in families.cells}
    listed = 0
    largest: dict[str, float] = {}  # a planted family's largest held-out effect in a pair at the first horizon
    for family in planted:
        column = "__" + family.split("__", 1)[1]
        for h in args.horizons:
            per_pair = []
            for pair, summary in summaries.items():
                verdicts = getattr(summary.horizons.get(str(h)), "confirmation", None) if summary else None
                verdict = next((f for f in (verdicts.features if verdicts else []) if f.feature.endswith(column)), None)
                if verdict and h == args.horizons[0]:
                    largest[family] = max(largest.get(family, -math.inf), verdict.effect)
                per_pair.append(
                    f"{pair} {verdict.effect:+.4f} [{verdict.effect_low:+.4f}, {verdict.effect_high:+.4f}]"
                    + (" C" if verdict.confirmed else "")
                    if verdict
                    else f"{pair} not stable"
                )
            cell = cells.get((family, h))
            pooled = cell.pooled if cell else None
            pooled_text = (
                f"{pooled.estimate:+.4f} [{pooled.low:+.4f}, {pooled.high:+.4f}] | {pooled.p_value:.2g}"
                if pooled
                else "- | -"
            )
            is_found = h in found.get(family, [])
            listed += is_found
            t, p = linear.get((family, h), (math.nan, math.nan))
            print(
                f"| {family} | {h} | {'; '.join(per_pair)} | "
                + pooled_text
                + f" | {'yes' if is_found else 'no'} | {t:+.1f}, {p:.2g} |"
            )
    false = sorted(set(found) - set(planted))
    for finding in families.findings or []:
        print(
            f"found: {finding.family} at h{','.join(map(str, finding.horizons))}, p {finding.p_value:.2g} "
            f"({finding.across_horizons} over {len(finding.tested_horizons)} horizons), BY q {finding.q_value:.2g} "
            f"over {families.families_tested} families tested"
        )
    print(
        f"R^2 {r2}%: {listed}/{len(planted) * len(args.horizons)} planted family x horizon cells listed by a finding, "
        f"{len(set(found) & set(planted))}/{len(planted)} families found, {len(false)} found that were not planted"
        + (f" ({', '.join(false)})" if false else "")
    )
    like_issue = [f for f in planted if largest.get(f, -math.inf) >= ISSUE_EFFECT]
    carried = [f for f in planted if min(linear.get((f, h), (0, 1.0))[1] for h in args.horizons) <= CARRIED_P]
    for name, group in (
        (
            f"with a pair's held-out effect at h{args.horizons[0]} of {ISSUE_EFFECT:+} or more (as the issue's)",
            like_issue,
        ),
        (f"the held-out days carry (the linear test's p at most {CARRIED_P} at some horizon)", carried),
    ):
        print(f"R^2 {r2}%: planted families {name}: {len(set(found) & set(group))} of {len(group)} found")
    if not args.keep:
        shutil.rmtree(part.store.root, ignore_errors=True)
    return listed, len(planted) * len(args.horizons), len(set(found) & set(planted)), len(false)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--r2", default="0.5,1", help="per planted feature R^2 of the h45 target, in %%")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--features", type=int, default=150, help="features per pair")
    parser.add_argument("--horizons", default=",".join(map(str, HORIZONS)))
    parser.add_argument("--seed", type=int, default=11, help="the warehouse's seed")
    parser.add_argument("--run-seed", type=int, default=42, help="the run's seed (selection, confirmation)")
    units = ("auto", "days", "blocks")
    parser.add_argument("--pooled-unit", choices=units, default="auto", help="the pooled test's unit")
    parser.add_argument("--workdir", type=Path, default=BENCH_DIR)
    parser.add_argument("--keep", action="store_true", help="keep the warehouses and run folders")
    args = parser.parse_args(argv)
    args.r2 = [float(v) for v in args.r2.split(",") if v]
    args.horizons = [int(v) for v in args.horizons.split(",")]
    args.basis = "nonlinear"
    logging.basicConfig(level=logging.ERROR)
    args.workdir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.workdir / "runs", ignore_errors=True)
    if hasattr(os, "sched_setaffinity"):  # one core for every thread, as bench/power.py
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    started = time.perf_counter()
    with threadpool_limits(1):
        for r2 in args.r2:
            strength(args, r2)
    print(f"\n{(time.perf_counter() - started) / 60:.1f} min wall, one core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
