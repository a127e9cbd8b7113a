"""One pair at production width, end to end, against a straightforward baseline.

    python bench/pair.py                       # builds /tmp/bqx-bench/wide.duckdb if missing
    python bench/pair.py --baseline-fits 2     # fewer baseline fits (it is extrapolated anyway)

The product path (query, preparation, selection with B = 50 pairs on shared block Grams, CV
training, SHAP, artifacts) runs in a fresh process; so does the baseline: per-horizon
preparation from the DataFrame and LightGBM-importance stability selection (a new binned
Dataset and a 100-tree fit per subsample, top q by gain), nothing shared. The baseline would take
days at this width, so it runs a few fits of one horizon and is extrapolated to 7 horizons x 2B
fits; the printout says which figures are measured and which are extrapolated.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WAREHOUSE = Path(tempfile.gettempdir()) / "bqx-bench" / "wide.duckdb"


def _usage() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def product(warehouse: str, pair: str, pairs: int, threads: int, out: dict[str, Any]) -> None:
    from bqx_queue.analysis.pair import process_pair_all_horizons
    from bqx_queue.config import load_settings
    from bqx_queue.store import RunStore
    from bqx_queue.warehouse.source import open_source

    settings = load_settings(warehouse=warehouse, selection_pairs=pairs)
    started = time.perf_counter()
    result = process_pair_all_horizons(pair, settings, threads=threads)
    store = RunStore(tempfile.mkdtemp(prefix="bqx-bench-run-"), "bench")
    store.write_json(store.pair_path(pair), result.summary)
    store.write_parquet(store.ledger_path(pair), result.ledger)
    wall = time.perf_counter() - started
    cpu, peak = _usage()
    summary = result.summary
    truth = open_source(settings).manifest()["pairs"][pair]
    found = wanted = others = 0
    for horizon, entry in summary["horizons"].items():
        stable = {s["feature"] for s in entry["stable"]}
        informative = set(truth["horizons"][horizon]["informative"])
        found, wanted = found + len(stable & informative), wanted + len(informative)
        others += len(stable - set(truth["planted"]))
    out.update(recall=f"{found}/{wanted}", not_planted=others)
    out.update(
        wall_s=wall, cpu_s=cpu, peak_rss_bytes=peak, rows=summary["rows"], features=summary["features_tested"],
        timings=summary["timings"], stable={h: len(r["stable"]) for h, r in summary["horizons"].items()},
        q=next(iter(summary["horizons"].values()))["q"],
    )  # fmt: skip


def baseline(warehouse: str, pair: str, pairs: int, fits: int, threads: int, out: dict[str, Any]) -> None:
    import lightgbm as lgb
    import numpy as np

    from bqx_queue.analysis.pair import pair_days, query_pair_all_horizons
    from bqx_queue.analysis.stability import choose_q
    from bqx_queue.config import load_settings
    from bqx_queue.warehouse.source import open_source

    settings = load_settings(warehouse=warehouse)
    source = open_source(settings)
    days = pair_days(source, pair, settings)
    started = time.perf_counter()
    df = query_pair_all_horizons(pair, settings, days, source)
    query_s = time.perf_counter() - started
    # per-horizon preparation from the DataFrame: numeric columns, float64, leakage guard
    t0 = time.perf_counter()
    target = df["target_bqx45_h15"]
    features = df[[c for c in df.columns if "__" in c and not c.split("__")[-1].startswith("target_")]]
    x = features.select_dtypes("number").to_numpy(dtype=np.float64)
    keep = target.notna().to_numpy()
    x, y = x[keep], (target[keep] > 0).to_numpy(dtype=np.float64)
    prepare_s = time.perf_counter() - t0
    q = choose_q(x.shape[1], 0.8, 2.0)
    blocks = np.array_split(np.arange(len(y)), 12)
    rng = np.random.default_rng(0)
    fit_times = []
    for _ in range(fits):
        half = np.concatenate([blocks[i] for i in rng.permutation(12)[:6]])
        t0 = time.perf_counter()
        data = lgb.Dataset(x[half], label=y[half], params={"verbose": -1})
        booster = lgb.train({"objective": "binary", "verbose": -1, "num_threads": threads}, data, num_boost_round=100)
        top = np.argsort(-booster.feature_importance("gain"))[:q]
        fit_times.append(time.perf_counter() - t0)
        assert len(top) == q
    cpu, peak = _usage()
    per_fit = float(np.median(fit_times))
    out.update(
        query_s=query_s, prepare_s=prepare_s, fits_measured=fits, fit_s_median=per_fit, cpu_s=cpu,
        peak_rss_bytes=peak, extrapolated_wall_s=query_s + 7 * (prepare_s + 2 * pairs * per_fit),
    )  # fmt: skip


def _in_child(target: Any, *args: Any) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        out = manager.dict()
        process = context.Process(target=target, args=(*args, out))
        process.start()
        process.join()
        if process.exitcode != 0:
            sys.exit(f"{target.__name__} failed with exit code {process.exitcode}")
        return dict(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", type=Path, default=WAREHOUSE)
    parser.add_argument("--pair", default="eurusd")
    parser.add_argument("--features", type=int, default=6500)
    parser.add_argument("--days", type=int, default=60, help="weekdays in the warehouse (80,000 rows sampled)")
    parser.add_argument("--pairs", type=int, default=50, help="B complementary pairs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--baseline-fits", type=int, default=2)
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    if not args.warehouse.exists():
        from bqx_queue.warehouse.synthetic import WarehouseSpec, build_warehouse

        print(f"building {args.warehouse} ({args.features} features, {args.days} days) ...", flush=True)
        build_warehouse(args.warehouse, WarehouseSpec(pairs=(args.pair,), days=args.days, features_per_pair=args.features))
    ours = _in_child(product, str(args.warehouse), args.pair, args.pairs, args.threads)
    print(f"product path: {ours['rows']:,} rows x {ours['features']:,} features, 7 horizons, B={args.pairs}, q={ours['q']}")
    print(f"  wall {ours['wall_s']:.1f} s  cpu {ours['cpu_s']:.1f} s  peak RSS {ours['peak_rss_bytes'] / 1024**3:.2f} GiB")
    print(f"  steps (s): {json.dumps(ours['timings'])}")
    print(f"  stable features per horizon: {json.dumps(ours['stable'])}")
    print(f"  planted features found where they carry signal: {ours['recall']}; selected but not planted: {ours['not_planted']}")
    if args.skip_baseline:
        return
    base = _in_child(baseline, str(args.warehouse), args.pair, args.pairs, args.baseline_fits, args.threads)
    print(f"baseline: {base['fits_measured']} LightGBM-importance fits measured of one horizon")
    print(
        f"  query {base['query_s']:.1f} s  preparation {base['prepare_s']:.1f} s  per fit {base['fit_s_median']:.1f} s (median)"
        f"  peak RSS {base['peak_rss_bytes'] / 1024**3:.2f} GiB"
    )
    print(f"  extrapolated to 7 horizons x {2 * args.pairs} fits: {base['extrapolated_wall_s'] / 3600:.1f} h")
    print(f"speed-up: {base['extrapolated_wall_s'] / ours['wall_s']:.0f}x")


if __name__ == "__main__":
    main()
