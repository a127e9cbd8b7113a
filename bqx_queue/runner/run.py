"""A run's life without Celery: plan it (manifest), analyse one pair, finish it (report).

The Celery tasks and `run_parallel_testing` both call these, so a run behaves the same on a
cluster and in one process pool.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

from bqx_queue.analysis.basis import BasisParams, basis_memory
from bqx_queue.analysis.width import PeakEstimate, plan_memory
from bqx_queue.artifacts import RunStore
from bqx_queue.config import HOST_SETTINGS, Settings, load_settings, run_settings
from bqx_queue.domain import (
    BqxError,
    BudgetError,
    CostEstimate,
    MemoryPlanError,
    PairMessage,
    PairPlanSummary,
    PairStatus,
    PairSummary,
    RunEstimate,
    RunManifest,
    SharedTablesPlan,
    resolve_pairs,
)
from bqx_queue.runner.extract_cache import CACHED_METHOD, CachedSource, ExtractCache, cached_estimate
from bqx_queue.runner.memory import GIB
from bqx_queue.runner.shared_tables import shared_once
from bqx_queue.warehouse import billing
from bqx_queue.warehouse.frame import MAX_STRING_LEVELS, NUMERIC_TYPES
from bqx_queue.warehouse.sampling import common_days, sample_days
from bqx_queue.warehouse.source import open_source
from bqx_queue.warehouse.sql import (
    FeatureColumn,
    QueryPlan,
    TablesPlan,
    plan_shared_tables,
)

log = logging.getLogger(__name__)


def failed_summary(
    pair: str, error: BaseException | str, wall_s: float | None = None, finished_at: datetime | None = None
) -> PairSummary:
    """Return the summary of a pair that could not be analysed; the run goes on without it."""
    return PairSummary(
        pair=pair,
        status=PairStatus.FAILED,
        error=str(error),
        host=socket.gethostname(),
        pid=os.getpid(),
        wall_s=wall_s,
        finished_at=finished_at,
    )


def _seconds_since(moment: datetime) -> float:
    return round((datetime.now(UTC) - moment).total_seconds(), 3)


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def plan_run(
    settings: Settings,
    pairs: list[str],
    run_id: str | None = None,
    enforce_budget: bool = True,
    workers: dict[str, int] | None = None,
) -> RunManifest:
    """Return the manifest of a new run (not yet written): pairs, sampled days, settings, and
    the cost estimate of every pair's plan (a BigQuery dry run, or metadata for DuckDB).

    Every pair is planned here, so a missing table or column stops the run before anything is
    enqueued. Days are sampled once from the calendar all pairs share. A query whose rows the
    extract cache holds is estimated as not sent and $0, so a cached rerun passes any budget. With
    enforce_budget, a run whose estimate is above settings.budget_usd raises BudgetError.
    """
    source = open_source(settings)
    catalog = source.catalog()
    once = shared_once(source, settings)  # BigQuery: shared tables are fetched once, not per pair
    counts = {}
    plans = {}
    parts: dict[str, list[TablesPlan]] = {}
    for pair in pairs:
        plan, parts[pair] = source.pair_plans(pair, catalog, settings, include_shared=not once)
        plans[pair] = plan
        counts[pair] = source.day_counts(catalog.table(*plan.tables[0].split(".")))
    days = sample_days(common_days(counts), settings.max_rows, settings.seed)
    shared_features = [f for p in plan_shared_tables(catalog, settings) for f in p.features] if once else []
    peaks = {
        pair: refuse_if_too_wide(
            pair,
            sum(counts[pair].get(day, 0) for day in days),
            [*plan.features, *shared_features],
            parts[pair],
            settings,
        )
        for pair, plan in plans.items()
    }
    run_id = run_id or new_run_id()
    # the run's queries as the extract cache keys them: with every horizon's target the targets table holds
    cached = CachedSource(source, ExtractCache(settings)) if settings.extract_cache else None

    def priced(queries: list[QueryPlan], keyed: list[QueryPlan]) -> list[CostEstimate]:
        """Return each query's estimate; $0 and not sent for one whose rows (keyed as `keyed`,
        the same queries as the fetch plans them) are in the extract cache."""
        estimates = [source.estimate(query, days, settings) for query in queries]
        if cached is None or len(keyed) != len(queries):
            return estimates
        covered = [cached.cache.covers(source, query, days) for query in keyed]
        return [cached_estimate(e) if hit else e for e, hit in zip(estimates, covered, strict=True)]

    estimates = {}
    for pair, plan in plans.items():
        keyed: list[QueryPlan] = []
        if cached is not None:
            keyed_plan, keyed_parts = cached.pair_plans(pair, catalog, settings, include_shared=not once)
            keyed = [keyed_plan, *keyed_parts]
        estimates[pair] = billing.combined_estimate(priced([plan, *parts[pair]], keyed))
    shared_plans = plan_shared_tables(catalog, settings) if once else []
    shared = priced(list(shared_plans), list(shared_plans))
    everything = list(estimates.values()) + shared
    sent = [e for e in everything if e.method != CACHED_METHOD] or everything
    estimate = RunEstimate(
        method=sent[0].method if sent else "metadata",
        pairs=estimates,
        shared=shared,
        queries=sum(e.queries for e in everything),
        bytes_processed=sum(e.bytes_processed for e in everything),
        bytes_billed=sum(e.bytes_billed for e in everything),
        cost_usd=sum(e.cost_usd for e in everything),
        budget_usd=settings.budget_usd,
    )
    if enforce_budget and estimate.over_budget:
        raise BudgetError(
            f"estimated cost ${estimate.cost_usd:.4f} for {len(pairs)} pairs "
            f"({estimate.bytes_billed:,} bytes billed) is above the budget ${settings.budget_usd:.4f}: "
            "nothing was enqueued (raise --max-cost or budget_usd; `bqx-enqueue --dry-run` shows each pair)"
        )
    location = source.describe()
    return RunManifest(
        run_id=run_id,
        created_at=datetime.now(UTC),
        pairs=pairs,
        horizons=list(settings.horizons),
        days=days,
        warehouse=location,
        source=source.kind,
        plans={
            pair: PairPlanSummary(
                queries=estimates[pair].queries,
                tables=estimates[pair].tables,
                columns=len(p.features) + sum(len(part.features) for part in parts[pair]),
                predicted_peak_bytes=peaks[pair].peak_bytes,
                features_in_selection=peaks[pair].selection_features,
            )
            for pair, p in plans.items()
        },
        estimate=estimate,
        shared_tables=SharedTablesPlan(queries=len(shared), tables=sum(e.tables for e in shared)) if shared else None,
        settings=settings.model_dump(mode="json", exclude=HOST_SETTINGS) | source.location_settings(),
        workers=workers,
    )


def refuse_if_too_wide(
    pair: str, rows: int, features: list[FeatureColumn], parts: list[TablesPlan], settings: Settings
) -> PeakEstimate:
    """Return the pair's predicted per-child peak; raises MemoryPlanError when it is above the
    per-child cap, so no worker has to find out."""
    features = features + [f for part in parts for f in part.features]
    width = sum(1 if f.type in NUMERIC_TYPES else 1 + MAX_STRING_LEVELS for f in features)
    extra_columns, basis_bytes = basis_memory(
        rows, width, BasisParams.from_settings(settings), settings.selection_blocks, len(settings.horizons)
    )
    peak = plan_memory(
        rows,
        width,
        settings.selection_blocks,
        settings.memory_budget_bytes,
        settings.selection_max_features,
        extra_columns,
        basis_bytes,
    )
    cap = settings.worker_max_memory_per_child_kib * 1024
    if peak.peak_bytes > cap:
        raise MemoryPlanError(
            f"pair {pair}: {len(features):,} features x {rows:,} rows would peak at {peak.peak_bytes / GIB:.1f} GiB "
            f"per worker child, above worker_max_memory_per_child_kib ({cap / GIB:.1f} GiB): lower max_rows"
            + (" or selection_max_features" if settings.selection_max_features else "")
            + ", or raise worker_max_memory_per_child_kib on hosts with the memory"
        )
    return peak


def write_manifest(settings: Settings, manifest: RunManifest) -> RunStore:
    """Create the run folder with its manifest; refuses to reuse an existing run id."""
    store = RunStore(settings.runs_dir, manifest.run_id)
    if store.manifest_path.exists():
        raise BqxError(f"run {store.run_id} already exists in {store.root}")
    store.write_manifest(manifest)
    return store


def execute_pair(store: RunStore, pair: str, settings: Settings | None = None) -> PairMessage:
    """Analyse one pair of a run and write its artifacts; returns the small message for Redis.

    `settings` are the run's (config.run_settings of its manifest on this host; by default on
    this host's environment). A pair whose artifacts already say it finished is not recomputed.
    Any failure becomes a failed summary, so the run still completes.
    """
    existing = store.pair_summary(pair)
    if existing and existing.ok:
        return existing.message()
    from bqx_queue.runner.pair import process_pair_all_horizons  # the science: only where pairs run

    manifest = store.manifest()
    started = datetime.now(UTC)
    try:
        # this store's location, not the settings default: the extract cache and shared rows live there
        settings = (settings or run_settings(manifest.settings, load_settings())).model_copy(
            update={"runs_dir": str(store.runs_root)}
        )
        threads = settings.threads_per_child or 1
        source = open_source(settings, threads=threads)
        result = process_pair_all_horizons(
            pair, settings, manifest.days, source=source, threads=threads, run_id=store.run_id
        )
        ledger = store.write_parquet(store.ledger_path(pair), result.ledger)
        summary = result.summary.model_copy(update={"ledger": ledger})  # the summary vouches for its ledger
    except BqxError as exc:
        log.warning("pair failed", extra={"run": store.run_id, "pair": pair, "error": str(exc)})
        summary = failed_summary(pair, exc, wall_s=_seconds_since(started))
    except Exception as exc:  # an unexpected bug must not sink the other 27 pairs
        log.exception("pair crashed", extra={"run": store.run_id, "pair": pair})
        summary = failed_summary(pair, f"{type(exc).__name__}: {exc}", wall_s=_seconds_since(started))
    summary = summary.model_copy(update={"started_at": started, "finished_at": datetime.now(UTC)})
    store.write_pair_summary(summary)
    return summary.message()


def finish_run(store: RunStore) -> Path:
    """Build the report from the run's artifacts and return the path of report.json."""
    from bqx_queue.report.build import write_report

    return write_report(store)


def _execute_in_child(host: Settings, run_id: str, pair: str) -> PairMessage:
    store = RunStore(host.runs_dir, run_id)
    return execute_pair(store, pair, run_settings(store.manifest().settings, host))


def run_parallel_testing(pairs: str | list[str], max_workers: int = 8, settings: Settings | None = None) -> Path:
    """Run pairs in a local process pool (no broker) and return the path of the run's report.json.

    The same run as `bqx-enqueue`, without Redis or a worker: a manifest (sampled days, cost
    estimate, memory plan), one `process_pair_all_horizons` per pair in a spawned child, each
    pair's artifacts in the run folder, then the report. A pair that fails is recorded as failed
    and the run still completes.

    Parameters
    ----------
    pairs : str or list of str
        Pair names or groups ("eurusd", "eurusd,gbpusd", "all", ...; see `universe.resolve_pairs`).
    max_workers : int, default 8
        Child processes; each uses the host's cores shared out among them (or
        ``threads_per_child``).
    settings : Settings, optional
        The run's settings; loaded from the environment when omitted. ``runs_dir`` says where the
        run folder is written.

    Returns
    -------
    pathlib.Path
        The run's report.json; report.md and report.html lie beside it.

    Raises
    ------
    ConfigError, BudgetError, MemoryPlanError, WarehouseError
        Before any pair runs, when the pairs, the estimate or the memory plan are refused.

    Examples
    --------
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> from bqx_queue.config import load_settings
    >>> from bqx_queue.warehouse.synthetic import WarehouseSpec, build_warehouse
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = build_warehouse(folder / "tiny.duckdb", WarehouseSpec(pairs=("eurusd",), days=6, features_per_pair=40))
    >>> settings = load_settings(
    ...     warehouse=folder / "tiny.duckdb", runs_dir=folder / "runs", horizons=[15],
    ...     selection_pairs=10, lgbm_rounds=20,
    ... )
    >>> report = run_parallel_testing("eurusd", max_workers=1, settings=settings)
    >>> report.name, report.with_suffix(".html").exists()
    ('report.json', True)
    >>> [pair["pair"] for pair in json.loads(report.read_text())["pairs"]]
    ['eurusd']
    """
    settings = settings or load_settings()
    chosen = resolve_pairs(pairs)
    manifest = plan_run(settings, chosen, workers={"local-pool": max_workers})
    store = write_manifest(settings, manifest)
    host = settings.model_copy(update={"threads_per_child": settings.child_threads(max_workers)})
    # spawn, not fork: OpenMP state in this process must not leak into the children
    context = get_context("spawn")
    with ProcessPoolExecutor(max_workers=max_workers, mp_context=context) as pool:
        list(pool.map(_execute_in_child, [host] * len(chosen), [store.run_id] * len(chosen), chosen))
    return finish_run(store)
