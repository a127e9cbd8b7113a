"""Tables shared by every pair (tri_, mkt_, var_, csi_), fetched once per run instead of 28 times.

On a billable source (BigQuery) the producer runs the shared-table queries once, after the
manifest is written and before any pair is enqueued, and stores the rows (the run's sampled
days) as Parquet in the run folder: `shared/part-NNN.parquet` with `shared/index.json`. Each pair
then queries only its own tables and its targets, and joins the shared columns locally on
interval_time. A run without that index (the local process pool, a standalone call) keeps the
shared tables in each pair's query.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import tempfile
from collections.abc import Iterable
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bqx_queue.config import Settings
from bqx_queue.errors import DataError
from bqx_queue.storage import ArtifactPath, is_local, write_whole
from bqx_queue.store import RunStore, write_json_atomic
from bqx_queue.warehouse import billing
from bqx_queue.warehouse.catalog import KEY_COLUMN
from bqx_queue.warehouse.extract_cache import ExtractUse, billable_rows, summarize
from bqx_queue.warehouse.sql import (
    FEATURE_SEPARATOR,
    ROWS_AT_TIME,
    FeatureColumn,
    PairPlan,
    TablesPlan,
    split_pair_plan,
)

log = logging.getLogger(__name__)

SHARED_DIR = "shared"
INDEX_FILE = "index.json"
BATCH_ROWS = 16_384


def shared_once(source: Any, settings: Settings) -> bool:
    """Return whether a run on this source fetches the shared tables once (billable sources)."""
    return bool(settings.shared_tables_once and getattr(source, "billable", False))


def shared_index(settings: Settings) -> ArtifactPath | None:
    """Return the run's shared-table index, fetching the shared tables first if the run plans
    them and nobody has yet (the local process pool enqueues no producer step); None when the
    run keeps shared tables in each pair's query."""
    if not settings.run_id:
        return None
    store = RunStore(settings.runs_dir, settings.run_id)
    path = store.root / SHARED_DIR / INDEX_FILE
    if path.exists():
        return path
    if not store.manifest_path.exists() or not store.manifest().shared_tables:
        return None
    with _host_lock(path.parent, settings.run_id).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process on this host fetches, the others wait
        if not path.exists():
            prefetch_shared(store)
    return path


def _host_lock(folder: ArtifactPath, run_id: str) -> Path:
    """Return the lock file of a run's shared fetch on this host: in the run folder when it is
    local, in the system temp folder when the run folder is a bucket."""
    if is_local(folder):
        folder.mkdir(parents=True, exist_ok=True)
        return folder / ".lock"
    return Path(tempfile.gettempdir()) / f"bqx-{run_id}-shared.lock"


def fetch_shared(
    source: Any, plans: list[TablesPlan], days: list[date], settings: Settings, root: ArtifactPath
) -> dict[str, Any]:
    """Run each shared-table query once (capped, in the run's ledger), write its rows as Parquet
    under root/shared/, and return the index (also written as shared/index.json)."""
    folder = root / SHARED_DIR
    parts = []
    uses: list[ExtractUse] = []
    for number, plan in enumerate(plans):
        reader, job_bytes, used = billable_rows(source, plan, days, settings)
        uses += used
        table = _read_all(reader)
        times = table.column(KEY_COLUMN).cast(pa.int64()).to_numpy()
        if len(np.unique(times)) != len(times):
            raise DataError(
                f"shared tables of {plan.name}: {len(times) - len(np.unique(times))} duplicate interval_time rows"
            )
        file = folder / f"part-{number:03d}.parquet"
        write_whole(file, partial(pq.write_table, table))
        parts.append(
            {
                "file": file.name,
                "query": plan.name,
                "rows": table.num_rows,
                "tables": list(plan.tables),
                "features": [[f.alias, f.table, f.column, f.type] for f in plan.features],
                "excluded": [list(e) for e in plan.excluded],
                **job_bytes,
            }
        )
    billed = sum(p["bytes_billed"] for p in parts)
    index = {
        "queries": len(parts),
        "tables": sum(len(p["tables"]) for p in parts),
        "columns": sum(len(p["features"]) for p in parts),
        "bytes_processed": sum(p["bytes_processed"] for p in parts),
        "bytes_billed": billed,
        "cost_usd": billing.cost_usd(billed, settings.price_per_tib_usd),
        "queries_sent": sum(not use.hit for use in uses) if uses else len(parts),
        "extract_cache": summarize(uses),
        "parts": parts,
    }
    write_json_atomic(folder / INDEX_FILE, index)  # other processes poll for it
    log.info(
        "shared tables fetched",
        extra={"run": settings.run_id, "queries": len(parts), "bytes_billed": billed},
    )
    return index


def prefetch_shared(store: RunStore) -> dict[str, Any] | None:
    """Fetch a run's shared tables once if its manifest plans it; return the index or None."""
    from bqx_queue.run import run_settings
    from bqx_queue.warehouse.source import open_source
    from bqx_queue.warehouse.sql import plan_shared_tables

    manifest = store.manifest()
    if not manifest.shared_tables:
        return None
    settings = run_settings(manifest)
    source = open_source(settings)
    plans = plan_shared_tables(source.catalog(), settings)
    return fetch_shared(source, plans, manifest.days, settings, store.root)


def attach_shared(
    reader: pa.RecordBatchReader | Iterable[pa.RecordBatch], plan: PairPlan, index_path: ArtifactPath
) -> tuple[pa.RecordBatchReader, PairPlan]:
    """Return the pair's rows with every shared column joined on interval_time (NULL where the
    shared tables lack a minute), and the plan that describes all of them."""
    index = json.loads(index_path.read_text())
    parts = []
    for part in index["parts"]:
        features = [FeatureColumn(*feature) for feature in part["features"]]
        excluded = [(alias, reason) for alias, reason in part["excluded"]]
        parts.append((_read_parquet(index_path.parent / part["file"]), features, excluded, part["tables"]))
    return join_parts(reader, plan, parts)


def join_parts(
    reader: pa.RecordBatchReader | Iterable[pa.RecordBatch],
    plan: PairPlan,
    parts: list[tuple[pa.Table, list[FeatureColumn], list[tuple[str, str]], list[str]]],
) -> tuple[pa.RecordBatchReader, PairPlan]:
    """Return the plan's rows with the columns of other queries' results joined on interval_time
    (left join: the pair's minutes, NULL where a part lacks one), and the plan covering all."""
    own = reader.read_all() if isinstance(reader, pa.RecordBatchReader) else pa.Table.from_batches(list(reader))
    times = own.column(KEY_COLUMN).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()
    columns = {name: own.column(name) for name in own.column_names}
    features = list(plan.features)
    excluded = list(plan.excluded)
    tables = list(plan.tables)
    for table, part_features, part_excluded, part_tables in parts:
        part_times = table.column(KEY_COLUMN).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()
        if len(np.unique(part_times)) != len(part_times):
            raise DataError(f"pair {plan.pair}: tables {', '.join(part_tables)} repeat interval_time values")
        position = np.minimum(np.searchsorted(part_times, times), max(len(part_times) - 1, 0))
        found = (part_times[position] == times) if len(part_times) else np.zeros(len(times), bool)
        take = pa.array(position, mask=~found, type=pa.int64())
        for feature in part_features:
            columns[feature.alias] = pc.take(table.column(feature.alias), take)
            features.append(feature)
        for name in table.column_names:  # each table's row count per minute (NULL: it lacks the minute)
            if name.startswith(ROWS_AT_TIME + FEATURE_SEPARATOR):
                columns[name] = pc.take(table.column(name), take)
        excluded += part_excluded
        tables += part_tables
    joined = pa.table(columns)
    combined = PairPlan(plan.pair, plan.sql, tuple(tables), tuple(features), plan.targets, tuple(excluded))
    return pa.RecordBatchReader.from_batches(joined.schema, joined.to_batches(BATCH_ROWS)), combined


def fetch_billable(
    pair: str, settings: Settings, days: list[date], source: Any
) -> tuple[Any, PairPlan, dict[str, int], list[ExtractUse]]:
    """Return the pair's rows, the plan describing them, what BigQuery billed and what the extract
    cache did, from a billable source: its own tables and targets in as few capped, ledgered
    queries as BigQuery's limits allow (one, normally; none when cached), joined with the run's
    shared tables fetched once."""
    shared = shared_index(settings)
    plan, parts = split_pair_plan(pair, source.catalog(), settings, include_shared=shared is None)
    reader, job_bytes, uses = billable_rows(source, plan, days, settings)
    results = []
    for part in parts:
        part_reader, part_bytes, used = billable_rows(source, part, days, settings)
        uses += used
        results.append((_read_all(part_reader), list(part.features), list(part.excluded), list(part.tables)))
        job_bytes = {key: job_bytes[key] + part_bytes[key] for key in job_bytes}
    if results:
        reader, plan = join_parts(reader, plan, results)
    if shared is not None:
        reader, plan = attach_shared(reader, plan, shared)
    sent = sum(not use.hit for use in uses) if uses else 1 + len(parts)  # a cached query is not sent
    return reader, plan, job_bytes | {"queries": sent}, uses


def _read_parquet(path: ArtifactPath) -> pa.Table:
    return pq.read_table(io.BytesIO(path.read_bytes()))


def _read_all(batches: pa.RecordBatchReader | Iterable[pa.RecordBatch]) -> pa.Table:
    if isinstance(batches, pa.RecordBatchReader):
        return batches.read_all()
    listed = list(batches)
    if not listed:
        raise DataError("a query returned no record batches, so not even its columns are known")
    return pa.Table.from_batches(listed)
