"""One pair of a run, every horizon: its rows fetched, analysed under a memory watch, each step
timed, and the pair's summary built (where it ran, what it cost, what each horizon found).

The science is analysis.pair's; this module only sequences it, so a test or a notebook can run a
pair without a broker.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date

import pandas as pd
from threadpoolctl import threadpool_limits

from bqx_queue.analysis.families import family_sizes
from bqx_queue.analysis.pair import analyse_horizon, pair_ledger, select_features, usable_horizons
from bqx_queue.analysis.prepare import prepare_pair
from bqx_queue.config import Settings
from bqx_queue.domain import FailedHorizon, HorizonOutcome, PairStatus, PairSummary
from bqx_queue.runner.memory import MemoryWatch
from bqx_queue.runner.pair_fetch import fetch_run_pair
from bqx_queue.warehouse.fetch import pair_days
from bqx_queue.warehouse.interface import WarehouseSource


@dataclass
class PairResult:
    summary: PairSummary  # what the report shows for this pair (pairs/PAIR.json)
    ledger: pd.DataFrame  # every feature x horizon: frequency, selected, excluded reason


def process_pair_all_horizons(
    pair: str,
    settings: Settings,
    days: list[date] | None = None,
    *,
    source: WarehouseSource,
    threads: int = 1,
    run_id: str | None = None,
) -> PairResult:
    """Return the pair's full result: one query, then for every horizon stable features,
    walk-forward model metrics beside a naive baseline, held-out verdicts and SHAP.

    The pair's sampled days are fetched in one query (every feature, every horizon's target),
    prepared into one standardised matrix, and each horizon runs stability selection on the
    first part of the history, then LightGBM, confirmation and SHAP on the held-out rest. A
    horizon whose target is unusable fails alone, with its reason; the others go on.

    Parameters
    ----------
    pair : str
        The pair's name, e.g. "eurusd".
    settings : Settings
        The run's settings.
    days : list of datetime.date, optional
        The days to read (a run samples them once for all pairs); by default sampled from the
        pair's own calendar with ``settings.max_rows`` and ``settings.seed``.
    source : WarehouseSource
        The warehouse to read (`bqx_queue.warehouse.source.open_source`).
    threads : int, default 1
        Threads for BLAS, LightGBM and the warehouse reads of this pair.
    run_id : str, optional
        The run this pair belongs to: the fetch then uses the run's extract cache, cost ledger
        and query labels (`bqx_queue.runner.pair_fetch`).

    Returns
    -------
    PairResult
        ``summary``: the pair's `PairSummary` (rows, cost of the query, features tested,
        usable and in selection, and per horizon its stable features, metrics, confirmation,
        SHAP, substitutes and eras); ``ledger``: a DataFrame of every feature x horizon with
        its selection frequency, whether it was selected and confirmed, or why it was excluded.

    Raises
    ------
    DataError, WarehouseError
        When the pair's data cannot be analysed (missing tables, too few rows, ...).
    MemoryBudgetExceeded
        When the process's memory passes ``settings.memory_budget_bytes``. The caller decides
        how a failure is recorded.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from bqx_queue.config import load_settings
    >>> from bqx_queue.warehouse.source import open_source
    >>> from bqx_queue.warehouse.synthetic import WarehouseSpec, build_warehouse
    >>> folder = Path(tempfile.mkdtemp())
    >>> manifest = build_warehouse(folder / "tiny.duckdb", WarehouseSpec(("eurusd",), days=6, features_per_pair=40))
    >>> settings = load_settings(
    ...     warehouse=folder / "tiny.duckdb", runs_dir=folder / "runs", horizons=[15], selection_pairs=10, lgbm_rounds=9
    ... )
    >>> result = process_pair_all_horizons("eurusd", settings, source=open_source(settings))
    >>> result.summary.status.value, result.summary.queries, list(result.summary.horizons)
    ('ok', 1, ['15'])
    >>> h15 = result.summary.horizons["15"]
    >>> sorted(h15.metrics.mean.model_dump())
    ['accuracy', 'auc', 'directional_accuracy', 'log_loss']
    >>> stable = [f.feature for f in h15.stable]
    >>> planted = manifest["pairs"]["eurusd"]["horizons"]["15"]["informative"]
    >>> len(stable) > 0 and set(stable) <= set(planted)  # the warehouse's planted signal, nothing else
    True
    >>> list(result.ledger.columns[:7])  # every feature x horizon, and each one's verdict
    ['pair', 'horizon', 'feature', 'frequency', 'selected', 'excluded', 'confirmed']
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(step: str) -> None:
        timings[step] = time.perf_counter() - started - sum(timings.values())

    with MemoryWatch(settings.memory_budget_bytes) as memory, threadpool_limits(threads):
        days = days if days is not None else pair_days(source, pair, settings)
        fetched = fetch_run_pair(source, pair, settings, days, run_id)
        lap("query_s")
        rows_fetched = fetched.frame.rows
        cost = fetched.cost
        prepared = prepare_pair(fetched.frame, exclusions=fetched.excluded)
        del fetched  # the prepared matrix now holds the only reference to the fetched values
        horizons, failed = usable_horizons(prepared, list(settings.horizons))
        lap("prepare_s")
        with contextlib.ExitStack() as scratch:  # the spilled matrix lives until the models have read their columns
            selection = select_features(prepared, settings, horizons, threads, scratch)
            lap("selection_s")
            # horizons side by side, one thread each: a horizon's models train on a few stable
            # features, where LightGBM gains nothing from a second thread (model_threads)
            workers = max(1, min(threads, len(horizons)))
            model_threads = max(1, threads // workers)

            def one_horizon(horizon: int) -> HorizonOutcome:
                return analyse_horizon(prepared, selection, horizon, settings, model_threads)

            with threadpool_limits(model_threads), ThreadPoolExecutor(workers) as pool:
                horizon_results = {str(h): r for h, r in zip(horizons, pool.map(one_horizon, horizons), strict=True)}
        horizon_results |= {str(h): FailedHorizon(error=reason) for h, reason in failed.items()}
        lap("models_s")
    summary = PairSummary(
        pair=pair,
        status=PairStatus.OK,
        rows=rows_fetched,
        rows_used=len(prepared.rows),
        days=len(days),
        features_tested=prepared.tested,
        features_usable=len(prepared.features),
        features_in_selection=selection.entered,
        # family -> members that entered selection: the across-pair null model's family size
        families=family_sizes(
            (f for j, f in enumerate(prepared.features) if j not in selection.screened), settings.family_strip_tokens
        ),
        gram_storage=selection.storage,
        **cost,
        wall_s=round(time.perf_counter() - started, 3),
        timings={k: round(v, 3) for k, v in timings.items()},
        peak_rss_bytes=memory.peak_bytes,
        host=socket.gethostname(),
        pid=os.getpid(),
        horizons=horizon_results,
    )
    return PairResult(summary, pair_ledger(prepared, selection, horizon_results))
