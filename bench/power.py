"""Power of the pooled family test at realistic strengths, and its false-family rate.

    python bench/power.py --quick          # 8 pairs, 30 days, R^2 2%, planted in 50%: a few minutes
    python bench/power.py                  # 28 pairs, 55 days, R^2 0.25-2%, planted in 25-75%, 5 null seeds, h15+h45
    python bench/power.py --days 200 --r2 0.5,1 --shares 50   # a run samples 55 of 200 days: spread

`--days` is the warehouse's length; a run samples at most 80,000 rows (55 days) one day per stratum,
so at 55 days its held-out days are back to back and at 200 they are spread, which decides the pooled
test's unit under `--pooled-unit auto` (analysis/pooled.py spread_days: days, or 3-hour blocks).

Per planted strength and share it builds synthetic warehouses whose four linear planted features
each explain `--r2` of the h45 target's variance (WarehouseSpec.feature_r2: the squared expected
correlation, whatever the signal's persistence) and sit in the same four families in `--shares`
of the pairs; the other pairs carry the same signals in families drawn at random, as the demo
warehouse does. Two of the four signals are persistent (AR(1) phi 0.99 and 0.98, half-lives 69
and 34 minutes), two short-lived (0.95 and 0.9, 14 and 7 minutes). No nonlinear kind is planted
(nonlinear_r2 = 0); selection still uses the default nonlinear basis unless `--basis linear`.

Every pair goes through the product's own path without a broker (`run.plan_run`, `execute_pair`
in this process, one thread), and the families found are the report's (`report.build.report_data`:
`families.findings`, the pooled test, one finding per family across horizons, BY at family_fdr).
A planted family is counted found when it is among the findings. On `with_signal=False`
warehouses (one per `--null-seeds` seed) every family found is false.

One pass per strength serves every share: a pair's tables depend only on whether its planted
features sit in the shared families (the draw that would place them at random still happens,
and the sharing pairs of a smaller share are the first of a larger one), so each strength builds
two warehouses, every pair planted in the shared families and every pair planted at random, runs
each pair in the one it needs for some share, and assembles each share's run from those pair
results. Every table of a pair is the same as in a warehouse built with that share (checked on
2026-12-05: 28 pairs, 100 features, 2 days, share 0.5: 428 of 428 tables identical to the pair's
table in one of the two warehouses), so each share's report is the one its own warehouse gives.

Horizons: `--horizons 15,45` by default: the R^2 is defined at h45, and every planted kind carries
signal at both (a short-lived feature 2-2.8 times its h45 R^2 at h15, a persistent one 1.2-1.4
times; at h60 and beyond the short-lived ones carry little). A family is one finding across its
horizons (Bonferroni over them, BY over families: the report's rule); "horizons listed" counts the
planted family x horizon cells a finding lists. A run over all 7 horizons Bonferronis a family's
smallest p-value by 7: the "found at p x 7/H" column multiplies the pooled p-values by 7 / H (H the
horizons run) as if the other horizons added nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from bqx_queue.analysis.families import feature_family
from bqx_queue.analysis.family_findings import family_findings
from bqx_queue.artifacts.run_folder import RunStore
from bqx_queue.config import Settings, load_settings
from bqx_queue.domain.universe import PAIRS
from bqx_queue.report.build import report_data
from bqx_queue.runner.run import execute_pair, new_run_id, plan_run, write_manifest
from bqx_queue.warehouse.synthetic import WarehouseSpec, build_warehouse, pairs_sharing_families

PERSISTENT_PHI = 0.98  # signals at least this persistent are "persistent", the others "short-lived"
BENCH_DIR = Path(tempfile.gettempdir()) / "bqx-power"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Analysed:
    """Pairs run on one warehouse: its manifest, its run store and its settings."""

    manifest: dict[str, Any]
    store: RunStore
    settings: Settings
    pairs: list[str] = field(default_factory=list)


def analyse(spec: WarehouseSpec, pairs: list[str], name: str, args: argparse.Namespace) -> Analysed:
    """Build the warehouse, run `pairs` on it one after another in this process, drop the file."""
    path = args.workdir / f"{name}.duckdb"
    path.unlink(missing_ok=True)
    started, cpu = time.perf_counter(), _cpu()
    manifest = build_warehouse(path, spec)
    built = time.perf_counter() - started
    settings = load_settings(
        warehouse=path,
        runs_dir=str(args.workdir / "runs"),
        horizons=tuple(args.horizons),
        threads_per_child=1,
        extract_cache=False,
        selection_basis=args.basis,
        seed=args.run_seed,
        pooled_unit=args.pooled_unit,
    )
    store = write_manifest(settings, plan_run(settings, pairs, workers={"bench-power": 1}))
    for pair in pairs:
        execute_pair(store, pair, settings)
    if not args.keep:
        path.unlink(missing_ok=True)
    failed = [p for p, s in store.pair_summaries().items() if not s.ok]
    _say(
        f"  {name}: {len(pairs)} pairs, build {built:.0f} s, total {time.perf_counter() - started:.0f} s wall, "
        f"{_cpu() - cpu:.0f} s CPU" + (f"; FAILED: {failed}" if failed else "")
    )
    return Analysed(manifest, store, settings, pairs)


def assemble(source: dict[str, Analysed], settings: Settings) -> Any:
    """Return the report's families section of one run made of each pair's result on the
    warehouse `source` names for it."""
    parts = list({id(a): a for a in source.values()}.values())
    manifests = {id(a): a.store.manifest() for a in parts}
    plans = {p: manifests[id(a)].plans[p] for p, a in source.items()}
    manifest = manifests[id(parts[0])].model_copy(
        update={"run_id": new_run_id(), "pairs": list(source), "plans": plans}
    )
    store = write_manifest(settings, manifest)
    for pair, part in source.items():
        summary = part.store.pair_summary(pair)
        assert summary is not None, pair
        # the summary vouches for its ledger's bytes: copy them, or the pair reads as damaged
        ledger = Path(str(store.ledger_path(pair)))
        ledger.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(str(part.store.ledger_path(pair)), ledger)
        store.write_pair_summary(summary)
    families = report_data(store).families
    assert families is not None
    return families


def found_families(families: Any, factor: float = 1) -> dict[str, list[int]]:
    """Return the families found (the report's findings) with the horizons each lists, or those
    found with every pooled p-value multiplied by `factor` (7 / the horizons tested: a run testing
    7 horizons Bonferronis a family's smallest p-value by 7)."""
    if factor == 1:
        return {f.family: f.horizons for f in families.findings or []}
    cells = {
        (c.family, c.horizon): {"p_value": min(1.0, factor * c.pooled.p_value)} for c in families.cells if c.pooled
    }
    return {f["family"]: f["horizons"] for f in family_findings(cells, families.fdr_level)[0]}


def planted_anywhere(manifests: dict[str, dict[str, Any]], strip: tuple[str, ...]) -> set[str]:
    """Return the families of every feature planted in some pair (pair -> the manifest it ran on)."""
    return {feature_family(f, strip) for pair, m in manifests.items() for f in m["pairs"][pair]["planted"]}


def power_rows(args: argparse.Namespace, pairs: list[str]) -> list[dict[str, Any]]:
    rows = []
    for r2 in args.r2:
        base = WarehouseSpec(
            pairs=tuple(pairs),
            days=args.days,
            features_per_pair=args.features,
            feature_r2=r2 / 100,
            nonlinear_r2=0.0,
            seed=args.seed,
            planted_share=1.0,
        )
        sharing = {s: pairs_sharing_families(dataclasses.replace(base, planted_share=s / 100)) for s in args.shares}
        ordered = sorted(sharing.values(), key=len)
        assert all(set(a) <= set(b) for a, b in zip(ordered, ordered[1:], strict=False)), "sharing sets must nest"
        in_shared = [p for p in pairs if any(p in s for s in sharing.values())]
        in_random = [p for p in pairs if any(p not in s for s in sharing.values())]
        _say(f"R^2 {r2}%: {len(in_shared)} pairs on the shared-families warehouse, {len(in_random)} on the random one")
        started, cpu = time.perf_counter(), _cpu()
        shared = analyse(base, in_shared, f"r2-{r2}-shared", args)
        random = analyse(dataclasses.replace(base, planted_share=None), in_random, f"r2-{r2}-random", args)
        families = shared.manifest["planted_families"]
        strip = shared.settings.family_strip_tokens
        for share, sharing_pairs in sharing.items():
            source = {p: shared if p in sharing_pairs else random for p in pairs}
            report = assemble(source, shared.settings)
            found = found_families(report)
            found_x7 = found_families(report, 7 / len(args.horizons))
            real = planted_anywhere({p: source[p].manifest for p in pairs}, strip)
            kinds = {
                kind: [f for f, v in families.items() if (v["phi"] >= PERSISTENT_PHI) == (kind == "p")]
                for kind in ("p", "s")
            }
            cells = {(c.family, c.horizon): c for c in report.cells}
            for family, planted in families.items():
                for h in args.horizons:
                    cell = cells.get((family, h))
                    pooled = cell.pooled if cell else None
                    _say(
                        f"    {share}% {family} (phi {planted['phi']}) h{h}: "
                        + (
                            f"pooled over {len(pooled.pairs)} pairs ({len(set(pooled.pairs) & set(sharing_pairs))} "
                            f"sharing), {len(pooled.positive)} positive, {pooled.estimate:+.4f} "
                            f"[{pooled.low:+.4f}, {pooled.high:+.4f}], p {pooled.p_value:.2g}"
                            if pooled
                            else "no stable member in any pair"
                        )
                        + (f"  FOUND at {found[family]}" if family in found else "")
                    )
            rows.append(
                {
                    "r2": r2,
                    "share": share,
                    "sharing": len(sharing_pairs),
                    "persistent": (len(set(kinds["p"]) & set(found)), len(kinds["p"])),
                    "short": (len(set(kinds["s"]) & set(found)), len(kinds["s"])),
                    "all": (len(set(families) & set(found)), len(families)),
                    "x7": (len(set(families) & set(found_x7)), len(families)),
                    "listed": (
                        sum(h in found.get(f, []) for f in families for h in args.horizons),
                        len(families) * len(args.horizons),
                    ),
                    "random_planted": len((set(found) - set(families)) & real),
                    "false": len(set(found) - real),
                    "cells": report.pooled_tests or 0,
                    "families_tested": report.families_tested or 0,
                }
            )
        _say(f"  R^2 {r2}%: {time.perf_counter() - started:.0f} s wall, {_cpu() - cpu:.0f} s CPU")
        if not args.keep:
            for part in (shared, random):
                shutil.rmtree(part.store.root, ignore_errors=True)
    return rows


def null_rows(args: argparse.Namespace, pairs: list[str]) -> list[dict[str, Any]]:
    rows = []
    for seed in args.null_seeds:
        spec = WarehouseSpec(
            pairs=tuple(pairs), days=args.days, features_per_pair=args.features, seed=seed, with_signal=False
        )
        part = analyse(spec, pairs, f"null-{seed}", args)
        report = assemble({p: part for p in pairs}, part.settings)
        found = sorted(found_families(report))
        rows.append(
            {
                "seed": seed,
                "cells": report.pooled_tests or 0,
                "families_tested": report.families_tested or 0,
                "cells_significant": report.pooled_significant or 0,
                "found": found,
                "allowed": report.fdr_level * (report.pooled_tests or 0),
                "count_significant": report.significant,
            }
        )
        _say(f"    null seed {seed}: found {found or 'none'}")
    return rows


def _fraction(pair: tuple[int, int]) -> str:
    return f"{pair[0]}/{pair[1]}"


def print_tables(args: argparse.Namespace, pairs: list[str], power: list[dict], null: list[dict], wall: float) -> None:
    print(
        f"bench/power.py {date.today().isoformat()}: {len(pairs)} pairs, {args.days} days "
        f"({args.days * 1440:,} rows per pair), {args.features} features per pair, pooled unit "
        f"{args.pooled_unit}, horizons "
        f"{','.join(map(str, args.horizons))}, selection basis {args.basis}, one thread; {wall / 60:.1f} min wall"
    )
    if power:
        print()
        print(
            "| R^2 h45 per feature | planted in | persistent found | short-lived found | all found | horizons listed "
            "| found at p x 7/H | other families found: planted at random / none planted | cells with a pooled test |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in power:
            print(
                f"| {r['r2']}% | {r['share']}% ({r['sharing']} pairs) | {_fraction(r['persistent'])} | "
                f"{_fraction(r['short'])} | {_fraction(r['all'])} | {_fraction(r['listed'])} | {_fraction(r['x7'])} | "
                f"{r['random_planted']} / {r['false']} | {r['cells']} |"
            )
    if null:
        print()
        print("| no-signal seed | cells with a pooled test | families tested | cells significant | families found "
              "| allowed: FDR x cells | count test significant |")  # fmt: skip
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for r in null:
            print(
                f"| {r['seed']} | {r['cells']} | {r['families_tested']} | {r['cells_significant']} | "
                f"{len(r['found'])}{' (' + ', '.join(r['found']) + ')' if r['found'] else ''} | "
                f"{r['allowed']:.2f} | {r['count_significant']} |"
            )
    print()
    for r in power:
        if r["share"] == 50 and r["r2"] in (1, 0.5):
            goal = 0.9 if r["r2"] == 1 else 0.7
            share = r["all"][0] / r["all"][1]
            verdict = "met" if share >= goal else "NOT met"
            print(f"goal: R^2 {r['r2']}% in 50% of {len(pairs)} pairs, >= {goal} found: {share:.2f}, {verdict}")
    if null:
        clean = sum(not r["found"] for r in null)
        within = all(len(r["found"]) <= r["allowed"] for r in null)
        print(
            f"goal: no-signal runs with no family found: {clean} of {len(null)} (>= 4 of 5 asked); families found "
            f"per run within FDR x cells in every run: {'yes' if within else 'NO'}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 pairs, 30 days, R^2 2%%, share 50%%, 2 null seeds, h45")
    parser.add_argument("--pairs", type=int, default=28, help="the first N pairs of the universe")
    parser.add_argument("--days", type=int, default=55, help="weekdays of 1-minute bars (55: a run's 80,000 rows)")
    parser.add_argument("--features", type=int, default=100, help="features per pair")
    parser.add_argument("--r2", default="0.25,0.5,1,2", help="per planted feature R^2 of the h45 target, in %%")
    parser.add_argument("--shares", default="25,50,75", help="shares of the pairs planted in the same families, %%")
    parser.add_argument("--null-seeds", default="1,2,3,4,5", help="seeds of the no-signal warehouses ('' for none)")
    parser.add_argument("--horizons", default="15,45")
    parser.add_argument("--basis", choices=("nonlinear", "linear"), default="nonlinear")
    parser.add_argument("--seed", type=int, default=7, help="the planted warehouses' seed")
    parser.add_argument("--run-seed", type=int, default=42, help="the runs' seed (selection, confirmation)")
    units = ("auto", "days", "blocks")
    parser.add_argument("--pooled-unit", choices=units, default="auto", help="the pooled test's unit")
    parser.add_argument("--workdir", type=Path, default=BENCH_DIR)
    parser.add_argument("--keep", action="store_true", help="keep the warehouses and run folders")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.days, args.r2, args.shares, args.null_seeds, args.horizons = 8, 30, "2", "50", "1,2", "45"
    args.r2 = [float(v) if "." in v else int(v) for v in args.r2.split(",") if v]
    args.shares = [int(v) for v in args.shares.split(",") if v]
    args.null_seeds = [int(v) for v in args.null_seeds.split(",") if v]
    args.horizons = [int(v) for v in args.horizons.split(",")]
    pairs = list(PAIRS[: args.pairs])
    logging.basicConfig(level=logging.ERROR)
    args.workdir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.workdir / "runs", ignore_errors=True)
    if hasattr(os, "sched_setaffinity"):  # one core for every thread: DuckDB's and LightGBM's too
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    started = time.perf_counter()
    with threadpool_limits(1):  # one BLAS/OpenMP thread here too (the pairs' analysis limits its own)
        power = power_rows(args, pairs) if args.r2 and args.shares else []
        null = null_rows(args, pairs)
    print_tables(args, pairs, power, null, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
