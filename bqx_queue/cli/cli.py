"""Command lines: `bqx-enqueue` (the producer) and `bqx` (warehouse, demo, plan, status, report, export, compare).

Thin: they parse arguments, call the library, and turn a BqxError into one line on stderr and
exit status 2. Exit status 1 means the run finished with failed pairs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from bqx_queue.config import Settings, load_settings, redact_url
from bqx_queue.domain import BqxError, BrokerError, DamagedArtifact

if TYPE_CHECKING:
    from bqx_queue.domain import RunManifest

EXIT_FAILED_PAIRS = 1
EXIT_BAD_INPUT = 2
# the demo warehouse (`bqx demo`, `bqx warehouse build`): strengths in the range real FX features
# have (a single feature's R^2 of a 45-minute return rarely above 1-2%): each linear planted feature
# 1.5% of the h45 target, each nonlinear kind's drift 3% of its variance (a model reading the
# kind's features: R^2 0.6-1.4% at h45); WarehouseSpec's own defaults stay strong for the tests
DEMO_WAREHOUSE: dict[str, Any] = {
    "days": 30,
    "features_per_pair": 100,
    "planted_share": 0.75,
    "feature_r2": 0.015,
    "nonlinear_r2": 0.03,
}


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    if getattr(args, "config", None):
        if not Path(args.config).is_file():
            raise BqxError(f"settings file {args.config} does not exist")
        os.environ["BQX_CONFIG"] = str(args.config)
    # an option not given is None: the environment, the file or the default decides
    return load_settings(**{name: value for name, value in overrides.items() if value is not None})


def _guard(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return command(args)
    except BqxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# bqx-enqueue -------------------------------------------------------------------------------


def enqueue_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bqx-enqueue", description="Enqueue one process_pair task per pair, as a chord."
    )
    parser.add_argument(
        "--pairs", default=None, help="'all' (default), a group (majors, crosses, eur-pairs...), or a comma list"
    )
    parser.add_argument("--horizons", default=None, help="comma list of horizons (default: all 7)")
    parser.add_argument("--warehouse", help="DuckDB file or Parquet folder (default: settings)")
    parser.add_argument("--max-rows", type=int, help="rows sampled per pair, as whole days (default 80000)")
    parser.add_argument("--run-id", help="name the run (default: timestamp + random suffix)")
    parser.add_argument("--config", help="TOML settings file (same keys as BQX_* variables)")
    parser.add_argument("--wait", action="store_true", help="show progress until the report exists")
    parser.add_argument("--no-wait-for-workers", action="store_true", help="enqueue even if no worker answers")
    parser.add_argument("--worker-timeout", type=float, default=3.0, help="seconds to wait for workers to answer")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print each pair's estimated bytes and $ and the total vs budget; enqueue nothing",
    )
    parser.add_argument(
        "--max-cost",
        type=float,
        help="refuse the run if its estimate is above this many USD (default: budget_usd, $50)",
    )
    parser.add_argument(
        "--source", choices=["auto", "duckdb", "parquet", "bigquery"], help="warehouse kind (default: settings)"
    )
    parser.add_argument(
        "--refresh", action="store_true",
        help="query the warehouse even where the extract cache (runs_dir/cache) holds the rows; the cache is rewritten",
    )  # fmt: skip
    parser.add_argument(
        "--resume", metavar="RUN_ID",
        help="enqueue again the pairs of RUN_ID without a completed artifact, then rebuild its report",
    )  # fmt: skip
    parser.add_argument(
        "--plan", metavar="PLAN_JSON",
        help="run exactly an approved plan (bqx plan ... -o PLAN_JSON; bqx plan approve PLAN_JSON --by NAME)",
    )  # fmt: skip
    return parser


# options that choose what a run does: --resume and --plan take them from the manifest or plan
RUN_OPTIONS = ("pairs", "horizons", "warehouse", "max_rows", "dry_run", "source", "max_cost")


def run_enqueue(args: argparse.Namespace, console: Console | None = None) -> int:
    from bqx_queue.domain import resolve_horizons, resolve_pairs

    console = console or Console(stderr=True)
    if getattr(args, "resume", None):
        return _resume(args, console)
    if getattr(args, "plan", None):
        return _enqueue_plan(args, console)
    if args.run_id:
        from bqx_queue.artifacts import check_run_id

        check_run_id(args.run_id)
    pairs = resolve_pairs(args.pairs or "all")
    horizons = tuple(resolve_horizons(args.horizons)) if args.horizons else None
    settings = _settings(
        args, warehouse=args.warehouse, max_rows=args.max_rows, horizons=horizons,
        source=getattr(args, "source", None), budget_usd=getattr(args, "max_cost", None),
        refresh_extracts=True if getattr(args, "refresh", False) else None,
    )  # fmt: skip

    from bqx_queue.runner import plan_run

    if getattr(args, "dry_run", False):
        from bqx_queue.warehouse.budget import format_estimate

        estimate = plan_run(settings, pairs, run_id=args.run_id, enforce_budget=False).estimate
        assert estimate is not None  # plan_run always estimates
        print(format_estimate(estimate.model_dump(mode="json")))
        if estimate.over_budget:
            print(
                f"error: estimate ${estimate.cost_usd:.4f} is above the budget ${estimate.budget_usd:.4f}",
                file=sys.stderr,
            )
            return EXIT_BAD_INPUT
        return 0
    # validates warehouse, tables, columns, and refuses a run whose estimate is over budget
    manifest = plan_run(settings, pairs, run_id=args.run_id)
    return _enqueue_manifest(settings, manifest, args, console)


def _enqueue_plan(args: argparse.Namespace, console: Console) -> int:
    """bqx-enqueue --plan PLAN_JSON: run the approved plan, refused if anything it was reviewed on changed."""
    from bqx_queue.runner import manifest_from_plan, read_plan

    given = [f"--{name.replace('_', '-')}" for name in RUN_OPTIONS if getattr(args, name, None)]
    if given:
        raise BqxError(f"--plan takes pairs and settings from the plan: drop {', '.join(given)}")
    if args.run_id:
        from bqx_queue.artifacts import check_run_id

        check_run_id(args.run_id)
    path = Path(args.plan)
    plan = read_plan(path)
    settings = _settings(args, **plan.overrides)
    manifest = manifest_from_plan(plan, settings, path, args.run_id)
    assert manifest.plan is not None  # manifest_from_plan records the approval
    console.print(f"plan {path}: approved by {manifest.plan.approved_by} at {manifest.plan.approved_at}")
    return _enqueue_manifest(settings, manifest, args, console)


def _enqueue_manifest(settings: Settings, manifest: RunManifest, args: argparse.Namespace, console: Console) -> int:
    """Write the run's manifest, enqueue its pairs, and follow it with --wait."""
    from bqx_queue.runner import write_manifest

    pairs = manifest.pairs
    app, workers = _require_workers(settings, args, console)
    manifest = manifest.model_copy(update={"workers": workers})
    store = write_manifest(settings, manifest)
    print(f"run {manifest.run_id}")
    print(f"sampled days ({len(manifest.days)}): {', '.join(day.isoformat() for day in manifest.days)}")
    if manifest.shared_tables:  # BigQuery: the shared tables once, before any pair
        from bqx_queue.config import run_settings
        from bqx_queue.warehouse.shared import prefetch_shared

        shared = prefetch_shared(store, run_settings(manifest.settings, settings))
        if shared:
            console.print(f"shared tables: {shared.tables} tables in {shared.queries} queries, ${shared.cost_usd:.4f}")

    from bqx_queue.celery.producer import enqueue_run

    result = enqueue_run(manifest)
    console.print(f"enqueued {len(pairs)} pairs; report will be {store.report_path}")
    return _follow_run(store, result, app, console) if args.wait else 0


def _require_workers(settings: Settings, args: argparse.Namespace, console: Console) -> tuple[Any, dict[str, int]]:
    """Return the app on this run's broker and its live workers; refuses when none answers."""
    from bqx_queue.celery import use_settings
    from bqx_queue.celery.producer import check_broker, live_workers

    check_broker(settings.broker_url)
    app = use_settings(settings)
    workers = live_workers(app, args.worker_timeout)
    console.print(
        f"broker {redact_url(settings.broker_url)}: {len(workers)} live workers, "
        f"total concurrency {sum(workers.values())}"
    )
    if not workers and not args.no_wait_for_workers:
        raise BrokerError(
            "no worker answered: start one with `celery -A bqx_queue worker --concurrency=8` "
            "(or pass --no-wait-for-workers to enqueue anyway)"
        )
    return app, workers


def _follow_run(store: Any, result: Any, app: Any, console: Console) -> int:
    """Show the run until its report exists, then what it found and, last, the path of the page to
    open (report.html; report.json is beside it); exit 1 if pairs failed."""
    from bqx_queue.celery.status import watch_run
    from bqx_queue.report.answer import answer_lines

    watch_run(store, result, console, app=app)
    print("\n".join(answer_lines(store.report())))
    print(store.root / "report.html")
    return _failed_pairs_exit(store, console)


def _failed_pairs_exit(store: Any, console: Console) -> int:
    summaries = store.pair_summaries()
    _warn_damaged(store.run_id, summaries)
    failed = [p for p, s in summaries.items() if not s.ok]
    if failed:
        console.print(f"[red]{len(failed)} pairs failed: {', '.join(failed)}")
        return EXIT_FAILED_PAIRS
    return 0


def _warn_damaged(run_id: str, summaries: dict[str, Any]) -> None:
    """Print one line per damaged pair: the file, what is wrong, and how to recover."""
    from bqx_queue.domain import PairStatus

    for pair, summary in summaries.items():
        if summary.status is PairStatus.DAMAGED:
            print(
                f"warning: pair {pair} {summary.error}: `bqx-enqueue --resume {run_id}` runs it again", file=sys.stderr
            )


def _resume(args: argparse.Namespace, console: Console) -> int:
    """bqx-enqueue --resume RUN_ID: enqueue the run's unfinished pairs again; its manifest says
    everything else, so only this host's settings (broker, runs_dir) apply."""
    given = [f"--{name.replace('_', '-')}" for name in (*RUN_OPTIONS, "run_id", "plan") if getattr(args, name, None)]
    if given:
        raise BqxError(f"--resume takes pairs and settings from the run's manifest: drop {', '.join(given)}")
    from bqx_queue.artifacts import RunStore

    settings = _settings(args)
    store = RunStore(settings.runs_dir, args.resume)
    try:
        manifest = store.manifest()  # one clear line for an unknown run
    except DamagedArtifact as exc:
        raise DamagedArtifact(
            f"{exc}; --resume cannot repair a manifest (it holds the run's pairs, days and settings): "
            "start the run again with bqx-enqueue"
        ) from None

    from bqx_queue.celery.producer import enqueue_run, prepare_resume, unfinished_pairs
    from bqx_queue.runner import finish_run

    if not unfinished_pairs(store):
        print(finish_run(store))
        return 0
    app, _ = _require_workers(settings, args, console)
    pending = prepare_resume(store, settings.broker_url)
    result = enqueue_run(manifest, pending)
    total = len(manifest.pairs)
    print(f"run {store.run_id}: re-enqueued {len(pending)} of {total} pairs: {', '.join(pending)}")
    return _follow_run(store, result, app, console) if args.wait else 0


def enqueue_main(argv: list[str] | None = None) -> int:
    return _guard(run_enqueue, enqueue_parser().parse_args(argv))


# bqx ---------------------------------------------------------------------------------------


def _warehouse_build(args: argparse.Namespace) -> int:
    from bqx_queue.domain import resolve_pairs
    from bqx_queue.warehouse.synthetic import WarehouseSpec, build_warehouse

    settings = _settings(args)
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
    from bqx_queue.warehouse.budget import format_estimate

    if args.plan_action == "approve":
        approval = approve_plan(Path(args.plan_file), args.by)
        print(f"{args.plan_file}: approved by {approval.by} at {approval.at}")
        return 0
    if not args.output:
        raise BqxError("bqx plan needs -o PLAN_JSON (where to write the plan)")
    overrides = {
        "warehouse": args.warehouse, "max_rows": args.max_rows, "source": args.source, "budget_usd": args.max_cost,
        "horizons": resolve_horizons(args.horizons) if args.horizons else None,
    }  # fmt: skip
    settings = _settings(args, **overrides)
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

    settings = _settings(args)
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

    settings = _settings(args)
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

    store = RunStore(_settings(args).runs_dir, args.run_id)
    print(finish_run(store))
    _warn_damaged(store.run_id, store.pair_summaries())
    return 0


def _export(args: argparse.Namespace) -> int:
    """bqx export RUN: the run's feature sets as JSON, CSV or YAML, to a file or stdout."""
    from bqx_queue.artifacts import RunStore
    from bqx_queue.report.feature_sets import export_text, feature_sets

    store = RunStore(_settings(args).runs_dir, args.run_id)
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

    runs_dir = _settings(args).runs_dir
    run_b = RunStore(runs_dir, args.run_b)
    changes = compare_runs(RunStore(runs_dir, args.run_a), run_b)
    print("\n".join(comparison_lines(changes)))
    page = Path(args.output) if args.output else run_b.root / f"compare-{changes.run_a}.html"
    run_b.write_text(page, render_comparison_html(changes))
    print(page)
    return 0


def _demo(args: argparse.Namespace) -> int:
    """Build a demo warehouse if missing, start Redis and a worker, run all pairs, stop both."""
    from bqx_queue.celery.embedded_redis import EmbeddedRedis, redis_server_binary
    from bqx_queue.runner import stop_process
    from bqx_queue.warehouse.synthetic import WarehouseSpec, build_warehouse

    redis_server_binary()  # no Redis to start: say so before building anything
    settings = _settings(args)
    warehouse = Path(settings.warehouse)
    if not warehouse.exists():
        print(f"building demo warehouse {warehouse} ...", flush=True)
        build_warehouse(warehouse, WarehouseSpec(**DEMO_WAREHOUSE))
    concurrency = args.concurrency or settings.concurrency
    # the worker's banner and logs go to a file: the terminal shows progress, then the answer
    log_path = Path(settings.runs_dir) / "demo-worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"worker log: {log_path}", flush=True)
    with EmbeddedRedis() as server, log_path.open("w") as log:
        env = os.environ | {"BQX_BROKER_URL": f"{server.url}/0", "BQX_RESULT_BACKEND": f"{server.url}/1"}
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bqx_queue", "worker", f"--concurrency={concurrency}",
             "-n", "demo@%h", "--loglevel=WARNING"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            os.environ.update(env)
            args_enqueue = enqueue_parser().parse_args(
                ["--pairs", args.pairs, "--wait", "--worker-timeout", "5", "--warehouse", str(warehouse)]
            )
            from bqx_queue.celery import use_settings
            from bqx_queue.celery.producer import live_workers

            app = use_settings(_settings(args))
            for _ in range(20):  # the worker needs a few seconds to come up
                if live_workers(app, 1.0):
                    break
            return run_enqueue(args_enqueue)
        finally:
            stop_process(worker, 60)


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
    demo.set_defaults(handler=_demo)

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
    return _guard(args.handler, args)
