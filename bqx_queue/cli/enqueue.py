"""`bqx-enqueue`: plan a run (or take an approved plan, or resume one), check the broker and its
workers, write the manifest, enqueue one process_pair per pair as a chord, and follow it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from bqx_queue.cli.common import EXIT_BAD_INPUT, EXIT_FAILED_PAIRS, guarded, settings_of, warn_damaged
from bqx_queue.config import Settings, redact_url
from bqx_queue.domain import BqxError, BrokerError, DamagedArtifact

if TYPE_CHECKING:
    from bqx_queue.domain import RunManifest


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
    settings = settings_of(
        args, warehouse=args.warehouse, max_rows=args.max_rows, horizons=horizons,
        source=getattr(args, "source", None), budget_usd=getattr(args, "max_cost", None),
        refresh_extracts=True if getattr(args, "refresh", False) else None,
    )  # fmt: skip

    from bqx_queue.runner import plan_run

    if getattr(args, "dry_run", False):
        from bqx_queue.warehouse.billing import format_estimate

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
    settings = settings_of(args, **plan.overrides)
    manifest = manifest_from_plan(plan, settings, path, args.run_id)
    assert manifest.plan is not None  # manifest_from_plan records the approval
    console.print(f"plan {path}: approved by {manifest.plan.approved_by} at {manifest.plan.approved_at.isoformat()}")
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
        from bqx_queue.runner.shared_tables import prefetch_shared

        shared = prefetch_shared(store, run_settings(manifest.settings, settings))
        if shared:
            console.print(f"shared tables: {shared.tables} tables in {shared.queries} queries, ${shared.cost_usd:.4f}")

    from bqx_queue.celery.producer import enqueue_run

    result = enqueue_run(manifest)
    console.print(f"enqueued {len(pairs)} pairs; report will be {store.report_path}")
    return _follow_run(store, result, app, console) if args.wait else 0


def _require_workers(settings: Settings, args: argparse.Namespace, console: Console) -> tuple[Any, dict[str, int]]:
    """Return the app on this run's broker and its live workers; refuses when none answers."""
    from bqx_queue.celery.producer import check_broker, live_workers

    check_broker(settings.broker_url)
    from bqx_queue.celery import use_settings

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
    warn_damaged(store.run_id, summaries)
    failed = [p for p, s in summaries.items() if not s.ok]
    if failed:
        console.print(f"[red]{len(failed)} pairs failed: {', '.join(failed)}")
        return EXIT_FAILED_PAIRS
    return 0


def _resume(args: argparse.Namespace, console: Console) -> int:
    """bqx-enqueue --resume RUN_ID: enqueue the run's unfinished pairs again; its manifest says
    everything else, so only this host's settings (broker, runs_dir) apply."""
    given = [f"--{name.replace('_', '-')}" for name in (*RUN_OPTIONS, "run_id", "plan") if getattr(args, name, None)]
    if given:
        raise BqxError(f"--resume takes pairs and settings from the run's manifest: drop {', '.join(given)}")
    from bqx_queue.artifacts import RunStore

    settings = settings_of(args)
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
    """The `bqx-enqueue` entry point."""
    return guarded(run_enqueue, enqueue_parser().parse_args(argv))
