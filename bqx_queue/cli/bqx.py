"""`bqx`: the warehouse, the demo, plans, status, Flower, reports, exports and comparisons.

Thin: each command parses its arguments and calls the library; a BqxError becomes one line on
stderr and exit status 2; exit status 1 means the run finished with failed pairs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console

from bqx_queue.cli.common import EXIT_FAILED_PAIRS, guarded, settings_of, warn_damaged
from bqx_queue.cli.demo import DEMO_WAREHOUSE, run_demo
from bqx_queue.config import redact_url
from bqx_queue.domain import BqxError, BrokerError


def _warehouse_build(args: argparse.Namespace) -> int:
    from bqx_queue.domain import resolve_pairs
    from bqx_queue.warehouse.synthetic import WarehouseSpec, build_warehouse

    settings = settings_of(args)
    path = Path(args.path or settings.warehouse)
    # --signal-r2 sets the linear strength as the signals' total share, in place of --feature-r2
    linear = {"signal_r2": args.signal_r2, "feature_r2": None} if args.signal_r2 is not None else {}
    strengths = {"feature_r2": args.feature_r2, "nonlinear_r2": args.nonlinear_r2} | linear
    spec = WarehouseSpec(
        **strengths,
        pairs=tuple(resolve_pairs(args.pairs)),
        days=args.days,
        features_per_pair=args.features_per_pair,
        seed=args.seed,
        null_fraction=args.null_fraction,
        decoy_correlation=args.decoy_correlation,
        with_signal=not args.no_signal,
        planted_share=None if args.random_families else args.planted_share,
        features_dataset=settings.features_dataset,
        analytics_dataset=settings.analytics_dataset,
    )
    truth = build_warehouse(path, spec)  # the synthetic warehouse's own manifest (what it planted)
    per_pair = f"~{spec.features_per_pair} features per pair"
    print(f"{path}: {len(spec.pairs)} pairs, {truth['rows']:,} rows per table, {per_pair}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    """bqx plan: write the reviewed estimate of a run to a plan file; `bqx plan approve` signs it."""
    from bqx_queue.domain import resolve_horizons, resolve_pairs
    from bqx_queue.runner import approve_plan, write_plan
    from bqx_queue.warehouse.billing import format_estimate

    if args.plan_action == "approve":
        approval = approve_plan(Path(args.plan_file), args.by)
        print(f"{args.plan_file}: approved by {approval.by} at {approval.at.isoformat()}")
        return 0
    if not args.output:
        raise BqxError("bqx plan needs -o PLAN_JSON (where to write the plan)")
    overrides = {
        "warehouse": args.warehouse, "max_rows": args.max_rows, "source": args.source, "budget_usd": args.max_cost,
        "horizons": resolve_horizons(args.horizons) if args.horizons else None,
    }  # fmt: skip
    settings = settings_of(args, **overrides)
    manifest = write_plan(settings, resolve_pairs(args.pairs), overrides, Path(args.output))
    assert manifest.estimate is not None  # plan_run always estimates
    print(format_estimate(manifest.estimate.model_dump(mode="json")))
    peak = max(p.predicted_peak_bytes for p in manifest.plans.values())
    print(
        f"{len(manifest.pairs)} pairs x {len(manifest.horizons)} horizons over "
        f"{len(manifest.days)} sampled days; "
        f"predicted peak per worker child {peak / 1024**3:.2f} GiB"
    )
    print(f"plan written to {args.output}; review it, then: bqx plan approve {args.output} --by NAME")
    return 0


def _status(args: argparse.Namespace) -> int:
    """Show a run: pairs done, running (on which worker), failed, queued; cost so far; ETA."""
    from bqx_queue.artifacts import RunStore
    from bqx_queue.celery.producer import check_broker
    from bqx_queue.celery.status import render_status, run_status, watch_run

    settings = settings_of(args)
    store = RunStore(settings.runs_dir, args.run_id)
    store.manifest()  # a clear error for an unknown run id
    app = None
    try:
        check_broker(settings.broker_url)

        from bqx_queue.celery import use_settings

        app = use_settings(settings)
    except BrokerError as exc:  # still show what the run folder says
        print(f"warning: {exc}; running pairs show as queued", file=sys.stderr)
    console = Console(soft_wrap=True)
    if args.watch:
        watch_run(store, console=console, app=app)
    else:
        console.print(render_status(run_status(store, app)), highlight=False)
    summaries = store.pair_summaries()
    return EXIT_FAILED_PAIRS if any(not s.ok for s in summaries.values()) else 0


def _flower(args: argparse.Namespace) -> int:
    """Run Flower on the configured broker with basic auth (replaces this process)."""
    from bqx_queue.celery.flower import flower_command, flower_environment
    from bqx_queue.celery.producer import check_broker

    settings = settings_of(args)
    environment = flower_environment(os.environ)  # refuses to go on without credentials
    check_broker(settings.broker_url)
    command = flower_command(args.port, args.address)
    print(f"Flower on http://{args.address}:{args.port}, broker {redact_url(settings.broker_url)}", file=sys.stderr)
    sys.stderr.flush()
    os.execve(command[0], command, environment)
    return 0  # not reached


def _report(args: argparse.Namespace) -> int:
    from bqx_queue.artifacts import RunStore
    from bqx_queue.runner import finish_run

    store = RunStore(settings_of(args).runs_dir, args.run_id)
    print(finish_run(store))
    warn_damaged(store.run_id, store.pair_summaries())
    return 0


def _export(args: argparse.Namespace) -> int:
    """bqx export RUN: the run's feature sets as JSON, CSV or YAML, to a file or stdout."""
    from bqx_queue.artifacts import RunStore
    from bqx_queue.report.feature_sets import export_text, feature_sets

    store = RunStore(settings_of(args).runs_dir, args.run_id)
    manifest = store.manifest()  # one clear line for an unknown run
    if not store.report_path.exists():
        raise BqxError(f"run {args.run_id} has no report yet: `bqx report {args.run_id}` builds it")
    text = export_text(feature_sets(store.report(), manifest), args.format)
    if args.output:
        Path(args.output).write_text(text)
        print(args.output, file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _compare(args: argparse.Namespace) -> int:
    """bqx compare RUN_A RUN_B: what changed, printed, and as a page (RUN_B's folder unless -o)."""
    from bqx_queue.artifacts import RunStore
    from bqx_queue.report.comparison import compare_runs, comparison_lines, render_comparison_html

    runs_dir = settings_of(args).runs_dir
    run_b = RunStore(runs_dir, args.run_b)
    changes = compare_runs(RunStore(runs_dir, args.run_a), run_b)
    print("\n".join(comparison_lines(changes)))
    page = Path(args.output) if args.output else run_b.root / f"compare-{changes.run_a}.html"
    run_b.write_text(page, render_comparison_html(changes))
    print(page)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bqx", description="bqx-queue: feature testing for BQX FX pairs.")
    parser.add_argument("--config", help="TOML settings file (same keys as BQX_* variables)")
    commands = parser.add_subparsers(dest="command", required=True)

    warehouse = commands.add_parser("warehouse", help="the embedded warehouse").add_subparsers(
        dest="action", required=True
    )
    build = warehouse.add_parser("build", help="write a synthetic BQX-shaped DuckDB warehouse with a planted signal")
    build.add_argument("--path", help="DuckDB file to create (default: settings warehouse)")
    build.add_argument("--pairs", default="all")
    build.add_argument("--days", type=int, default=DEMO_WAREHOUSE["days"], help="weekdays of 1-minute bars")
    build.add_argument("--features-per-pair", type=int, default=DEMO_WAREHOUSE["features_per_pair"])
    build.add_argument("--seed", type=int, default=7)
    build.add_argument(
        "--feature-r2",
        type=float,
        default=DEMO_WAREHOUSE["feature_r2"],
        help="R^2 of the h45 target each linear planted feature explains (default %(default)s)",
    )
    build.add_argument(
        "--signal-r2",
        type=float,
        help="instead of --feature-r2: share of the h45 target's variance the linear planted features explain "
        "together, split equally between the signals (the tests' strong setting is 0.5)",
    )
    build.add_argument(
        "--nonlinear-r2",
        type=float,
        default=DEMO_WAREHOUSE["nonlinear_r2"],
        help="share each nonlinear kind (threshold, square, product, gate) adds (default %(default)s); 0 plants none",
    )
    build.add_argument("--null-fraction", type=float, default=0.0)
    build.add_argument("--decoy-correlation", type=float, default=None)
    build.add_argument("--no-signal", action="store_true", help="plant nothing: every feature is noise")
    build.add_argument(
        "--planted-share", type=float, default=DEMO_WAREHOUSE["planted_share"],
        help="share of pairs whose planted features sit in the same families (0 < share <= 1)",
    )  # fmt: skip
    build.add_argument(
        "--random-families", action="store_true", help="plant each pair's signal in families drawn at random"
    )
    build.set_defaults(handler=_warehouse_build)

    demo = commands.add_parser("demo", help="embedded Redis + a worker + every pair, end to end")
    demo.add_argument("--pairs", default="all")
    demo.add_argument("--concurrency", type=int, default=None)
    demo.set_defaults(handler=run_demo)

    plan = commands.add_parser("plan", help="write a run's reviewed estimate to a plan file; `plan approve` signs it")
    plan.add_argument("--pairs", default="all")
    plan.add_argument("--horizons", default=None)
    plan.add_argument("--warehouse")
    plan.add_argument("--max-rows", type=int)
    plan.add_argument("--source", choices=["auto", "duckdb", "parquet", "bigquery"])
    plan.add_argument("--max-cost", type=float, help="the run's budget in USD (default budget_usd)")
    plan.add_argument("-o", "--output", help="plan file to write")
    plan.set_defaults(handler=_plan, plan_action=None)
    plan_actions = plan.add_subparsers(dest="plan_action")
    approve = plan_actions.add_parser("approve", help="record who approved a plan, and when")
    approve.add_argument("plan_file")
    approve.add_argument("--by", required=True, help="the approver's name")

    status = commands.add_parser("status", help="pairs done, running (where), failed, queued; cost; ETA")
    status.add_argument("run_id")
    status.add_argument("--watch", action="store_true", help="follow the run until its report is written")
    status.set_defaults(handler=_status)

    flower = commands.add_parser("flower", help="Flower on the configured broker, with basic auth")
    flower.add_argument("--port", type=int, default=5555)
    flower.add_argument("--address", default="127.0.0.1", help="listen address (loopback; expose via TLS proxy)")
    flower.set_defaults(handler=_flower)

    report = commands.add_parser("report", help="rebuild a run's report from its artifacts")
    report.add_argument("run_id")
    report.set_defaults(handler=_report)

    export = commands.add_parser(
        "export", help="a run's feature sets (confirmed features per pair and horizon) for a training job"
    )
    export.add_argument("run_id")
    export.add_argument("--format", choices=["json", "csv", "yaml"], default="json")
    export.add_argument("-o", "--output", help="file to write (default: stdout)")
    export.set_defaults(handler=_export)

    compare = commands.add_parser(
        "compare", help="what changed between two runs: confirmed features and families, settings, days, tables"
    )
    compare.add_argument("run_a", help="the earlier run")
    compare.add_argument("run_b", help="the later run")
    compare.add_argument("-o", "--output", help="HTML page to write (default: RUN_B's folder, compare-RUN_A.html)")
    compare.set_defaults(handler=_compare)

    args = parser.parse_args(argv)
    return guarded(args.handler, args)
