"""Tables shared by every pair (tri_, mkt_, var_, csi_), fetched once per run instead of 28 times.

On a billable source (BigQuery) the producer runs the shared-table queries once, after the
manifest is written and before any pair is enqueued, and stores the rows (the run's sampled
days) as Parquet in the run folder: `shared/part-NNN.parquet` with `shared/index.json`. Each pair
then queries only its own tables and its targets, and joins the shared columns locally on
interval_time. A run without that index (the local process pool, a standalone call) keeps the
shared tables in each pair's query. The index records each part's size and SHA-256: a damaged
index or part is fetched again by the next pair that needs it, as if it had never been written.
"""

from __future__ import annotations

import fcntl
import logging
import tempfile
from collections.abc import Iterable
from datetime import date
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bqx_queue import artifacts
from bqx_queue.artifacts import ArtifactPath, RunStore, is_local, write_json_atomic, write_whole
from bqx_queue.config import Settings
from bqx_queue.domain import ArtifactDigest, DamagedArtifact, DataError, ExtractCacheSummary, Record
from bqx_queue.warehouse import billing
from bqx_queue.warehouse.budget import billable_rows
from bqx_queue.warehouse.catalog import KEY_COLUMN
from bqx_queue.warehouse.extract_cache import ExtractUse, summarize
from bqx_queue.warehouse.frame import BATCH_ROWS
from bqx_queue.warehouse.sql import (
    FEATURE_SEPARATOR,
    ROWS_AT_TIME,
    FeatureColumn,
    PairPlan,
    TablesPlan,
    plan_shared_tables,
)

if TYPE_CHECKING:
    from bqx_queue.warehouse.bigquery_source import BigQuerySource
    from bqx_queue.warehouse.interface import WarehouseSource

log = logging.getLogger(__name__)

SHARED_DIR = "shared"
INDEX_FILE = "index.json"


class SharedPart(Record):
    """One shared-table query's rows in shared/: which tables and features, and what it billed."""

    file: str
    digest: ArtifactDigest | None = None  # absent in indexes written before digests were recorded
    query: str
    rows: int
    tables: list[str]
    features: list[tuple[str, str, str, str]]  # alias, table, column, type
    excluded: list[tuple[str, str]]
    bytes_processed: int
    bytes_billed: int
    # the cap sent and the dry run's estimate (0 when the extract cache served the rows; absent
    # in indexes written before they were recorded)
    maximum_bytes_billed: int | None = None
    estimated_bytes_billed: int | None = None


class SharedIndex(Record):
    """shared/index.json: the run's shared-table parts and what fetching them cost."""

    queries: int
    tables: int
    columns: int
    bytes_processed: int
    bytes_billed: int
    cost_usd: float
    queries_sent: int | None = None
    extract_cache: ExtractCacheSummary | None = None
    parts: list[SharedPart]


def shared_index_path(store: RunStore) -> ArtifactPath:
    """Return where a run's shared-table index is (whether or not the run has one)."""
    return store.root / SHARED_DIR / INDEX_FILE


def read_shared_index(path: ArtifactPath) -> SharedIndex:
    """Return the run's shared-table index; DamagedArtifact naming the file when it is damaged."""
    return artifacts.read_model(path, SharedIndex, "shared-table index")


def _intact(path: ArtifactPath) -> bool:
    """Return whether the index and every part it names are whole; a damaged one is logged."""
    try:
        index = read_shared_index(path)
        for part in index.parts:
            part_path = path.parent / part.file
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


def shared_index(settings: Settings, run_id: str | None, source: BigQuerySource) -> ArtifactPath | None:
    """Return the run's shared-table index, fetching the shared tables first (with the run's
    settings, from this source) if the run plans them and nobody has yet (the local process pool
    enqueues no producer step); None outside a run or when the run keeps shared tables in each
    pair's query."""
    if not run_id:
        return None
    store = RunStore(settings.runs_dir, run_id)
    path = shared_index_path(store)
    if path.exists() and _intact(path):
        return path
    if not store.manifest_path.exists() or not store.manifest().shared_tables:
        return None
    with _host_lock(path.parent, run_id).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process on this host fetches, the others wait
        if not (path.exists() and _intact(path)):
            prefetch_shared(store, settings, source)
    return path


def _host_lock(folder: ArtifactPath, run_id: str) -> Path:
    """Return the lock file of a run's shared fetch on this host: in the run folder when it is
    local, in the system temp folder when the run folder is a bucket."""
    if is_local(folder):
        folder.mkdir(parents=True, exist_ok=True)
        return folder / ".lock"
    return Path(tempfile.gettempdir()) / f"bqx-{run_id}-shared.lock"


def fetch_shared(
    source: BigQuerySource, plans: list[TablesPlan], days: list[date], settings: Settings, store: RunStore
) -> SharedIndex:
    """Run each shared-table query once (capped, in the run's ledger), write its rows as Parquet
    under the run folder's shared/, and return the index (also written as shared/index.json)."""
    folder = shared_index_path(store).parent
    parts = []
    uses: list[ExtractUse] = []
    for number, plan in enumerate(plans):
        reader, job_bytes, used = billable_rows(source, plan, days, settings, store.run_id)
        uses += used
        table = read_all(reader)
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
                **job_bytes,
            )
        )
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
    write_json_atomic(folder / INDEX_FILE, index)  # other processes poll for it
    log.info(
        "shared tables fetched",
        extra={"run": store.run_id, "queries": len(parts), "bytes_billed": billed},
    )
    return index


def prefetch_shared(store: RunStore, settings: Settings, source: BigQuerySource | None = None) -> SharedIndex | None:
    """Fetch a run's shared tables once if its manifest plans it; return the index or None.
    `settings` are the run's (run_settings of its manifest) and `source` the warehouse they name
    (opened from them when not given: only a BigQuery run plans shared tables)."""
    manifest = store.manifest()
    if not manifest.shared_tables:
        return None
    if source is None:
        from bqx_queue.warehouse.bigquery_source import BigQuerySource

        source = BigQuerySource(settings)
    plans = plan_shared_tables(source.catalog(), settings)
    return fetch_shared(source, plans, manifest.days, settings, store)


def attach_shared(
    reader: pa.RecordBatchReader | Iterable[pa.RecordBatch], plan: PairPlan, index_path: ArtifactPath
) -> tuple[pa.RecordBatchReader, PairPlan]:
    """Return the pair's rows with every shared column joined on interval_time (NULL where the
    shared tables lack a minute), and the plan that describes all of them."""
    index = read_shared_index(index_path)
    parts = []
    for part in index.parts:
        features = [FeatureColumn(*feature) for feature in part.features]
        table = artifacts.read_table(index_path.parent / part.file, part.digest)
        parts.append((table, features, list(part.excluded), part.tables))
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


def _write_bytes(data: bytes, handle: IO[bytes]) -> None:
    handle.write(data)


def read_all(batches: pa.RecordBatchReader | Iterable[pa.RecordBatch]) -> pa.Table:
    if isinstance(batches, pa.RecordBatchReader):
        return batches.read_all()
    listed = list(batches)
    if not listed:
        raise DataError("a query returned no record batches, so not even its columns are known")
    return pa.Table.from_batches(listed)
