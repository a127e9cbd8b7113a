"""The extract cache: each query's rows kept in the artifact store (runs_dir/cache/), so a rerun or
a resume that needs the same rows sends no query and is billed nothing. CachedSource wraps any
warehouse source with it: a run fetches through the wrapper, a standalone query does not.

A query's rows are identified by what determines them: the warehouse, every referenced table with
its last modification time (BigQuery's lastModifiedTime; the file's mtime for DuckDB and Parquet),
the feature columns, the sampled days and the rule that keeps one row per minute. Selection
settings, horizons and other pairs do not enter, so a rerun that changes them still reads the
cache; a table written since invalidates its extracts. The targets are kept beside the key: an
extract holding more targets serves a request for fewer (its extra columns are not read) when
the targets table repeated no minute, so the kept rows cannot depend on which targets sort them.

Layout: cache/<key>/<targets>-<token>-part-NNN.parquet, streamed while the consumer reads the
rows, then cache/<key>/<targets>.json, the marker, written whole once every part is. Readers
trust only markers, so a writer killed mid-upload leaves at most an unreferenced object. The marker
records each part's size and SHA-256 (hashed as it is written): a marker that does not parse, or a
part that is missing, cut or changed, makes the entry a miss, queried again, never an error.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bqx_queue import artifacts
from bqx_queue.artifacts import ArtifactPath, artifact_root, children, is_local, remove, write_json_atomic
from bqx_queue.config import Settings
from bqx_queue.domain import HORIZONS, CostEstimate, DamagedArtifact, Record, Timestamp, target_column
from bqx_queue.warehouse import billing
from bqx_queue.warehouse.catalog import Catalog, Table
from bqx_queue.warehouse.fetch import QueryContext, QueryRows
from bqx_queue.warehouse.frame import BATCH_ROWS
from bqx_queue.warehouse.interface import WarehouseSource
from bqx_queue.warehouse.sql import DUPLICATE_RULE, PairPlan, QueryPlan, TablesPlan, rows_alias

log = logging.getLogger(__name__)

CACHE_DIR = "cache"
CACHED_METHOD = "extract-cache"  # an estimate's method when the cache holds the query's rows
FORMAT = 1  # bump when what a query returns for the same key changes
BILLED_KEYS = ("bytes_processed", "bytes_billed")
UNBILLED_KEYS = (*BILLED_KEYS, "maximum_bytes_billed", "estimated_bytes_billed")  # a billable hit's: no cap sent


class MarkerPart(Record):
    """One statement's rows: its file (None when it returned no columns), rows, size and SHA-256."""

    keep_none = frozenset({"file"})

    file: str | None
    rows: int
    bytes: int
    sha256: str | None = None  # absent in markers written before digests were recorded


class Marker(Record):
    """cache/<key>/<targets>.json: a whole extract, the targets it holds and what its query cost."""

    identity: dict[str, Any]  # what determines the rows (extract_identity); its digest names the folder
    targets: list[str]
    targets_repeat_free: bool
    parts: list[MarkerPart]
    bytes_processed: int
    bytes_billed: int
    cost_usd: float
    fetch_s: float
    created_at: Timestamp


class HashingFile(io.RawIOBase):
    """A binary file that hashes what is written through it: a part's SHA-256 without reading
    the part back (from a bucket, that would be a second download)."""

    def __init__(self, handle: Any) -> None:
        super().__init__()
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.digest.update(data)
        self.size += len(data)
        self.handle.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size


@dataclass
class ExtractUse:
    """What the cache did for one query: served it (hit) or stored its rows (miss)."""

    query: str
    hit: bool
    bytes_billed: int = 0  # a hit: what the query billed when it ran
    cost_usd: float = 0.0
    fetch_s: float = 0.0  # a hit: how long the query and its download took when it ran
    read_s: float | None = None  # a hit: how long reading the cached rows took (set when read)
    started: float = field(default_factory=time.monotonic)

    def saved_s(self) -> float:
        return max(0.0, self.fetch_s - (self.read_s or 0.0)) if self.hit else 0.0


def summarize(uses: list[ExtractUse]) -> dict[str, Any]:
    """Return hits, misses and what the hits saved ($, bytes billed, seconds): a pair's or run's."""
    hits = [u for u in uses if u.hit]
    return {
        "hits": len(hits),
        "misses": len(uses) - len(hits),
        "saved_bytes_billed": sum(u.bytes_billed for u in hits),
        "saved_usd": round(sum(u.cost_usd for u in hits), 6),
        "saved_s": round(sum(u.saved_s() for u in hits), 3),
    }


def extract_identity(source: WarehouseSource, plan: QueryPlan, days: list[date]) -> dict[str, Any]:
    """Return everything that determines a query's rows, except its targets (see the docstring)."""
    modified = source.tables_modified(plan.tables)
    return {
        "format": FORMAT,
        "rule": DUPLICATE_RULE,
        "warehouse": source.describe(),
        "tables": [[table, modified[table]] for table in plan.tables],
        "features": [[f.alias, f.table, f.column, f.type] for f in plan.features],
        "days": [day.isoformat() for day in days],
    }


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:32]


class ExtractCache:
    """The cache folder of one artifact store (runs_dir/cache)."""

    def __init__(self, settings: Settings) -> None:
        self.root = artifact_root(settings.runs_dir) / CACHE_DIR
        self.price_per_tib_usd = settings.price_per_tib_usd
        self.refresh = settings.refresh_extracts

    def rows(
        self, source: WarehouseSource, plan: QueryPlan, days: list[date], send: Callable[[], QueryRows]
    ) -> tuple[QueryRows, ExtractUse]:
        """Return the query's rows and the bytes this call billed, and what the cache did: the
        cached rows when an extract matches (nothing billed), otherwise send()'s rows, stored as
        they are read."""
        identity = extract_identity(source, plan, days)
        folder = self.root / _digest(identity)
        targets = list(plan.targets)
        if not self.refresh:
            marker = self._find(folder, targets, verify=True)
            if marker is not None:
                use = ExtractUse(plan.pair, True, marker.bytes_billed, marker.cost_usd, marker.fetch_s)
                log.info("extract cache hit", extra={"query": plan.pair, "key": folder.name})
                unbilled = dict.fromkeys(UNBILLED_KEYS if source.billable else BILLED_KEYS, 0)
                return QueryRows(list(self._read(folder, marker, targets, use)), unbilled), use
        use = ExtractUse(plan.pair, False)
        sent = send()
        stored = self._store(folder, identity, targets, sent.parts, sent.job_bytes, use)
        return QueryRows(list(stored), sent.job_bytes), use

    def covers(self, source: WarehouseSource, plan: QueryPlan, days: list[date]) -> bool:
        """Return whether a whole extract holds the plan's rows: a query a run would not send.
        An empty cache answers without asking the warehouse for modification times. Parts are
        checked by size only (the fetch hashes them before trusting them)."""
        if self.refresh or next(children(self.root, "*"), None) is None:
            return False
        folder = self.root / _digest(extract_identity(source, plan, days))
        return self._find(folder, list(plan.targets), verify=False) is not None

    def _find(self, folder: ArtifactPath, targets: list[str], verify: bool) -> Marker | None:
        """Return the marker of a whole extract holding these targets' rows, or None; with
        `verify`, only one whose parts have the SHA-256 the marker recorded."""
        for path in children(folder, "*.json"):
            try:
                marker = artifacts.read_model(path, Marker, "extract-cache marker")
            except DamagedArtifact as exc:
                log.warning("extract cache entry damaged: a miss", extra={"error": str(exc)})
                continue
            if not set(targets) <= set(marker.targets):
                continue
            if set(targets) != set(marker.targets) and not marker.targets_repeat_free:
                continue
            if all(_whole(folder, part, verify) for part in marker.parts):
                return marker
        return None

    def _read(
        self, folder: ArtifactPath, marker: Marker, targets: list[str], use: ExtractUse
    ) -> list[Iterator[pa.RecordBatch]]:
        extra = set(marker.targets) - set(targets)
        remaining = [len(marker.parts)]

        def stream(part: MarkerPart) -> Iterator[pa.RecordBatch]:
            if part.file is not None:
                with (folder / part.file).open("rb") as handle:
                    parquet = pq.ParquetFile(handle)
                    columns = [name for name in parquet.schema_arrow.names if name not in extra]
                    yield from parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns)
            remaining[0] -= 1
            if not remaining[0]:
                use.read_s = time.monotonic() - use.started

        return [stream(part) for part in marker.parts]

    def _store(
        self,
        folder: ArtifactPath,
        identity: dict[str, Any],
        targets: list[str],
        parts: list[Iterable[pa.RecordBatch]],
        job_bytes: dict[str, int],
        use: ExtractUse,
    ) -> list[Iterator[pa.RecordBatch]]:
        """Return the parts as streams that also write each to the cache; the marker follows the
        last part's last batch."""
        prefix = f"{_digest(targets)}-{secrets.token_hex(4)}"
        written: list[MarkerPart | None] = [None] * len(parts)
        repeats = [False]
        rows_column = rows_alias(identity["tables"][0][0].split(".", 1)[1])

        def publish() -> None:
            billed = int(job_bytes.get("bytes_billed", 0))
            marker = Marker(
                identity=identity,
                targets=targets,
                targets_repeat_free=not repeats[0],
                parts=[part for part in written if part is not None],
                bytes_processed=int(job_bytes.get("bytes_processed", 0)),
                bytes_billed=billed,
                cost_usd=billing.cost_usd(billed, self.price_per_tib_usd),
                fetch_s=round(time.monotonic() - use.started, 3),
                created_at=datetime.now(UTC),
            )
            write_json_atomic(folder / f"{_digest(targets)}.json", marker)

        def stream(number: int, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            path = folder / f"{prefix}-part-{number:03d}.parquet"
            handle, hashing, writer, rows = None, None, None, 0

            def open_writer(schema: pa.Schema) -> pq.ParquetWriter:
                nonlocal handle, hashing
                if is_local(path):
                    path.parent.mkdir(parents=True, exist_ok=True)
                handle = path.open("wb")
                hashing = HashingFile(handle)
                # no dictionaries: float features rarely repeat, and trying made writing 3x slower
                return pq.ParquetWriter(hashing, schema, use_dictionary=False)

            try:
                for batch in batches:
                    if writer is None:
                        writer = open_writer(batch.schema)
                    writer.write_batch(batch)
                    rows += batch.num_rows
                    if number == 0 and rows_column in batch.schema.names:
                        most = pc.max(batch.column(rows_column)).as_py()
                        repeats[0] = repeats[0] or (most or 0) > 1
                    yield batch
                if writer is None and isinstance(batches, pa.RecordBatchReader):
                    writer = open_writer(batches.schema)  # no rows, but the columns are known
                if writer is not None and handle is not None:
                    writer.close()
                    handle.close()
            except BaseException:
                if handle is not None:
                    handle.close()
                    remove(path)
                raise
            written[number] = MarkerPart(
                file=path.name if writer else None,
                rows=rows,
                bytes=hashing.size if hashing else 0,
                sha256=hashing.digest.hexdigest() if hashing else None,
            )
            if all(w is not None for w in written):
                publish()

        return [_keep_schema(part, stream(number, part)) for number, part in enumerate(parts)]


def _keep_schema(part: Iterable[pa.RecordBatch], stream: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Return the stream as a RecordBatchReader when the part was one (its schema survives no rows)."""
    if isinstance(part, pa.RecordBatchReader):
        return pa.RecordBatchReader.from_batches(part.schema, stream)
    return stream


def _size(path: ArtifactPath) -> int:
    try:
        return int(path.stat().st_size)
    except FileNotFoundError:
        return -1


def _whole(folder: ArtifactPath, part: MarkerPart, verify: bool) -> bool:
    """Return whether a part is the one its marker recorded: its size, and with `verify` its
    SHA-256, hashed as it streams (a part can be gigabytes). A damaged part is logged: a miss."""
    if part.file is None:
        return True
    path = folder / part.file
    size = _size(path)
    if size != part.bytes:
        problem = "missing" if size < 0 else f"{size:,} bytes where its marker recorded {part.bytes:,}"
        log.warning("extract cache part damaged: a miss", extra={"error": f"{path}: {problem}"})
        return False
    if not verify or part.sha256 is None:
        return True
    with path.open("rb") as handle:
        if hashlib.file_digest(handle, "sha256").hexdigest() == part.sha256:
            return True
    log.warning("extract cache part damaged: a miss", extra={"error": f"{path}: SHA-256 differs from its marker's"})
    return False


def cached_estimate(estimate: CostEstimate) -> CostEstimate:
    """Return the estimate of a query the extract cache answers: not sent, nothing billed."""
    return estimate.model_copy(
        update={"queries": 0, "bytes_processed": 0, "bytes_billed": 0, "cost_usd": 0.0, "method": CACHED_METHOD}
    )


def every_target_settings(source: WarehouseSource, pair: str, settings: Settings) -> Settings:
    """Return the settings a cached run plans its queries with: every horizon whose target the
    targets table has, so a rerun with other horizons needs the same rows. The extra targets are
    a few FLOAT64 columns of one table, billed at its 10 MiB minimum at the usual row counts; the
    frame reads only the run's own (fetch.read_pair_fetch)."""
    targets_table = source.catalog().table(settings.analytics_dataset, settings.targets_table.format(pair=pair))
    present = set(targets_table.column_names())
    every = tuple(h for h in HORIZONS if h in settings.horizons or target_column(h) in present)
    return settings if every == tuple(settings.horizons) else settings.model_copy(update={"horizons": every})


class CachedSource:
    """A warehouse source whose queries go through the extract cache: any WarehouseSource wrapped.
    It plans every horizon's target (every_target_settings) and records what the cache did for
    each query (`uses`); everything else is the wrapped source's."""

    def __init__(self, source: WarehouseSource, cache: ExtractCache) -> None:
        self.source = source
        self.cache = cache
        self.kind = source.kind
        self.billable = source.billable
        self.uses: list[ExtractUse] = []

    def query(self, plan: QueryPlan, days: list[date], settings: Settings, context: QueryContext) -> QueryRows:
        """Return the cached rows of the query (nothing billed), or the wrapped source's, stored."""
        rows, use = self.cache.rows(self.source, plan, days, lambda: self.source.query(plan, days, settings, context))
        self.uses.append(use)
        return rows

    def pair_plans(
        self, pair: str, catalog: Catalog, settings: Settings, include_shared: bool = True
    ) -> tuple[PairPlan, list[TablesPlan]]:
        """Return the wrapped source's plans with every horizon's target (the cache's keys)."""
        wide = every_target_settings(self.source, pair, settings)
        return self.source.pair_plans(pair, catalog, wide, include_shared=include_shared)

    def describe(self) -> str:
        return self.source.describe()

    def catalog(self) -> Catalog:
        return self.source.catalog()

    def day_counts(self, table: Table) -> dict[date, int]:
        return self.source.day_counts(table)

    def tables_modified(self, tables: Iterable[str]) -> dict[str, str]:
        return self.source.tables_modified(tables)

    def location_settings(self) -> dict[str, str]:
        return self.source.location_settings()

    def estimate(self, plan: QueryPlan, days: list[date], settings: Settings) -> CostEstimate:
        return self.source.estimate(plan, days, settings)

    def frame_rows(self, plan: PairPlan, days: list[date], settings: Settings) -> int:
        return self.source.frame_rows(plan, days, settings)

    def close(self) -> None:
        self.source.close()


def through_cache(source: WarehouseSource, settings: Settings) -> WarehouseSource:
    """Return the source a run queries: wrapped in its store's extract cache, unless extract_cache
    is off. A standalone query_pair_all_horizons reads the warehouse directly."""
    return CachedSource(source, ExtractCache(settings)) if settings.extract_cache else source


def cache_uses(source: WarehouseSource) -> list[ExtractUse]:
    """Return what the extract cache did for the source's queries (none: a source it does not wrap)."""
    return source.uses if isinstance(source, CachedSource) else []
