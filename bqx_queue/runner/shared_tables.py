"""Tables shared by every pair (tri_, mkt_, var_, csi_), fetched once per run instead of 28 times.

On a billable source (BigQuery) the producer runs the shared-table queries once, after the
manifest is written and before any pair is enqueued, and stores the rows (the run's sampled
days) as Parquet in the run folder: `shared/part-NNN.parquet` with `shared/index.json`. Each pair
then queries only its own tables and its targets, and joins the shared columns locally on
interval_time. A run whose manifest plans no shared fetch (DuckDB) and a standalone call keep
the shared tables in each pair's query. The index records each part's size and SHA-256: a
damaged index or part is fetched again by the next pair that needs it, as if it had never been
written.
"""

from __future__ import annotations

import fcntl
import logging
import tempfile
from datetime import date
from functools import partial
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bqx_queue import artifacts
from bqx_queue.artifacts import ArtifactPath, RunStore, is_local, write_json_atomic, write_whole
from bqx_queue.config import Settings
from bqx_queue.domain import DamagedArtifact, DataError, ExtractCacheSummary, SharedIndex, SharedPart
from bqx_queue.runner.cost_ledger import run_context
from bqx_queue.runner.extract_cache import cache_uses, summarize, through_cache
from bqx_queue.warehouse import billing
from bqx_queue.warehouse.catalog import KEY_COLUMN
from bqx_queue.warehouse.fetch import JoinPart, read_all
from bqx_queue.warehouse.interface import WarehouseSource
from bqx_queue.warehouse.source import open_source
from bqx_queue.warehouse.sql import FeatureColumn, TablesPlan, plan_shared_tables

log = logging.getLogger(__name__)


def _intact(store: RunStore) -> bool:
    """Return whether the index and every part it names are whole; a damaged one is logged."""
    try:
        index = store.shared_index()
        for part in index.parts:
            part_path = store.shared_index_path.parent / part.file
            data = artifacts.read_bytes(part_path)
            if part.digest is not None:
                artifacts.check_digest(part_path, data, part.digest)
    except DamagedArtifact as exc:
        log.warning("shared tables damaged: fetching them again", extra={"error": str(exc)})
        return False
    return True


def shared_once(source: WarehouseSource, settings: Settings) -> bool:
    """Return whether a run on this source fetches the shared tables once (billable sources)."""
    return settings.shared_tables_once and source.billable


def shared_parts(store: RunStore, settings: Settings, source: WarehouseSource) -> list[JoinPart] | None:
    """Return the run's shared-table rows for a pair to join, fetching them first (with the run's
    settings, from this source) if the run plans them and nobody has yet (the local process pool
    enqueues no producer step); None when the run keeps shared tables in each pair's query."""
    path = store.shared_index_path
    if not (path.exists() and _intact(store)):
        if not store.manifest_path.exists() or not store.manifest().shared_tables:
            return None
        with _host_lock(path.parent, store.run_id).open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one process on this host fetches, the others wait
            if not (path.exists() and _intact(store)):
                prefetch_shared(store, settings, source)
    index = store.shared_index()
    return [
        JoinPart(
            artifacts.read_table(path.parent / part.file, part.digest),
            [FeatureColumn(*feature) for feature in part.features],
            list(part.excluded),
            part.tables,
        )
        for part in index.parts
    ]


def _host_lock(folder: ArtifactPath, run_id: str) -> Path:
    """Return the lock file of a run's shared fetch on this host: in the run folder when it is
    local, in the system temp folder when the run folder is a bucket."""
    if is_local(folder):
        folder.mkdir(parents=True, exist_ok=True)
        return folder / ".lock"
    return Path(tempfile.gettempdir()) / f"bqx-{run_id}-shared.lock"


def fetch_shared(
    source: WarehouseSource,
    plans: list[TablesPlan],
    days: list[date],
    settings: Settings,
    store: RunStore,
) -> SharedIndex:
    """Run each shared-table query once as the run sends queries (through its extract cache,
    capped, in its cost ledger), write its rows as Parquet under the run folder's shared/, and
    return the index (also written as shared/index.json)."""
    folder = store.shared_index_path.parent
    context = run_context(source, settings, store.run_id)
    cached = through_cache(source, settings)
    parts = []
    for number, plan in enumerate(plans):
        rows = cached.query(plan, days, settings, context)
        (stream,) = rows.parts
        table = read_all(stream)
        times = table.column(KEY_COLUMN).cast(pa.int64()).to_numpy()
        if len(np.unique(times)) != len(times):
            raise DataError(
                f"shared tables of {plan.name}: {len(times) - len(np.unique(times))} duplicate interval_time rows"
            )
        file = folder / f"part-{number:03d}.parquet"
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        data: bytes = sink.getvalue().to_pybytes()
        write_whole(file, partial(_write_bytes, data))
        parts.append(
            SharedPart(
                file=file.name,
                digest=artifacts.digest_of(file, data),
                query=plan.name,
                rows=table.num_rows,
                tables=list(plan.tables),
                features=[(f.alias, f.table, f.column, f.type) for f in plan.features],
                excluded=list(plan.excluded),
                **rows.job_bytes,
            )
        )
    uses = cache_uses(cached)
    billed = sum(p.bytes_billed for p in parts)
    index = SharedIndex(
        queries=len(parts),
        tables=sum(len(p.tables) for p in parts),
        columns=sum(len(p.features) for p in parts),
        bytes_processed=sum(p.bytes_processed for p in parts),
        bytes_billed=billed,
        cost_usd=billing.cost_usd(billed, settings.price_per_tib_usd),
        queries_sent=sum(not use.hit for use in uses) if uses else len(parts),
        extract_cache=ExtractCacheSummary.model_validate(summarize(uses)),
        parts=parts,
    )
    write_json_atomic(store.shared_index_path, index)  # other processes poll for it
    log.info(
        "shared tables fetched",
        extra={"run": store.run_id, "queries": len(parts), "bytes_billed": billed},
    )
    return index


def prefetch_shared(store: RunStore, settings: Settings, source: WarehouseSource | None = None) -> SharedIndex | None:
    """Fetch a run's shared tables once if its manifest plans it; return the index or None.
    `settings` are the run's (run_settings of its manifest) and `source` the warehouse they name
    (opened from them when not given: only a BigQuery run plans shared tables)."""
    manifest = store.manifest()
    if not manifest.shared_tables:
        return None
    source = source or open_source(settings)
    plans = plan_shared_tables(source.catalog(), settings)
    return fetch_shared(source, plans, manifest.days, settings, store)


def _write_bytes(data: bytes, handle: IO[bytes]) -> None:
    handle.write(data)
