"""A pair's rows from any source: its planned queries sent, the parts joined back on
interval_time, read into a PairFrame with what the queries cost.

A source only queries (WarehouseSource.query); what a caller adds to each query, labels and a
reservation against a shared budget, comes in a QueryContext, so the warehouse never knows which
run it serves. Rows kept between runs (the extract cache) come from a source that wraps another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bqx_queue.config import Settings
from bqx_queue.domain import DataError, target_column
from bqx_queue.warehouse import billing
from bqx_queue.warehouse.catalog import KEY_COLUMN, Catalog, missing_families
from bqx_queue.warehouse.frame import BATCH_ROWS, PairFrame, read_pair_frame
from bqx_queue.warehouse.sampling import sample_days
from bqx_queue.warehouse.sql import FEATURE_SEPARATOR, ROWS_AT_TIME, FeatureColumn, PairPlan

if TYPE_CHECKING:
    from bqx_queue.warehouse.interface import WarehouseSource

Parts = list[Iterable[pa.RecordBatch]]  # one stream per statement, lined up on interval_time
# a reservation of a billable query's cap (bytes) under a description; the block sets ["billed"]
Reservation = Callable[[int, str], AbstractContextManager[dict[str, int]]]


@dataclass(frozen=True)
class QueryContext:
    """What a caller adds to every query of a fetch: BigQuery job labels, and a reservation held
    around each billable query so that processes sharing a budget never overspend it."""

    labels: Mapping[str, str] = field(default_factory=dict)
    reservation: Reservation | None = None


@dataclass(frozen=True)
class QueryRows:
    """One query's rows and the bytes it processed and billed (with BigQuery's cap and estimate)."""

    parts: Parts
    job_bytes: dict[str, int]


@dataclass(frozen=True)
class JoinPart:
    """Another query's rows, joined to a pair's on interval_time: a split part or the shared tables."""

    table: pa.Table
    features: list[FeatureColumn]
    excluded: list[tuple[str, str]]
    tables: list[str]


@dataclass
class PairFetch:
    """One pair's rows and what fetching them cost."""

    frame: PairFrame
    # the pair summary's cost fields: queries, tables, columns, bytes processed and billed (and
    # BigQuery's cap and estimate), cost_usd, data_quality
    cost: dict[str, Any]
    excluded: dict[str, str]  # column -> why it is not a feature (by the plan, or by the frame)


def fetch_pair(
    source: WarehouseSource,
    pair: str,
    settings: Settings,
    days: list[date],
    context: QueryContext | None = None,
    shared: list[JoinPart] | None = None,
) -> PairFetch:
    """Return the pair's rows on these days as a PairFrame, and what its queries cost: one query,
    or the parts a source's limits split it into, joined back on interval_time. `shared`: the
    shared tables' rows, fetched once for many pairs and left out of the pair's own query."""
    context = context or QueryContext()
    catalog = source.catalog()
    plan, split = source.pair_plans(pair, catalog, settings, include_shared=shared is None)
    rows = source.query(plan, days, settings, context)
    job_bytes = dict(rows.job_bytes)
    joined = []
    for part in split:
        part_rows = source.query(part, days, settings, context)
        (stream,) = part_rows.parts
        joined.append(JoinPart(read_all(stream), list(part.features), list(part.excluded), list(part.tables)))
        job_bytes = {key: job_bytes[key] + part_rows.job_bytes[key] for key in job_bytes}
    joined += shared or []
    parts = rows.parts
    if joined:
        (stream,) = parts
        reader, plan = join_parts(stream, plan, joined)
        parts = [reader]
    fetched = read_pair_fetch(
        pair, settings, catalog, plan, parts, job_bytes, 1 + len(split), source.frame_rows(plan, days, settings)
    )
    source.close()  # what it holds (DuckDB's block cache) would count against the pair's memory budget
    return fetched


def read_pair_fetch(
    pair: str,
    settings: Settings,
    catalog: Catalog,
    plan: PairPlan,
    parts: Parts,
    job_bytes: dict[str, int],
    queries: int,
    capacity: int,
) -> PairFetch:
    """Return the pair's frame read from its parts (one stream per statement, lined up on
    interval_time) and the fetch's cost; only the settings' horizons' targets are read."""
    plan = replace(plan, targets=tuple(target_column(h) for h in settings.horizons))  # the rows may hold more
    frame = read_pair_frame(parts, plan, capacity=capacity)
    # the query keeps one row per interval_time per table; its counts say what that dropped
    frame.quality.check_duplicates(pair, settings.on_duplicate_timestamps)
    if len(np.unique(frame.times)) != frame.rows:  # cannot happen unless the query's rule is lost
        raise DataError(f"pair {pair}: the result repeats interval_time values after one row per table was kept")
    cost = {
        "queries": queries,  # more than one only past BigQuery's limits
        "tables": len(plan.tables),
        "columns": len(plan.features) + len(plan.targets) + 1,
        **job_bytes,
        "cost_usd": billing.cost_usd(job_bytes["bytes_billed"], settings.price_per_tib_usd),
        "data_quality": frame.quality.summary(
            settings.on_duplicate_timestamps, missing_families(catalog, pair, settings)
        ),
    }
    return PairFetch(frame, cost, dict(plan.excluded) | frame.excluded)


def join_parts(
    reader: pa.RecordBatchReader | Iterable[pa.RecordBatch], plan: PairPlan, parts: list[JoinPart]
) -> tuple[pa.RecordBatchReader, PairPlan]:
    """Return the plan's rows with the columns of other queries' results joined on interval_time
    (left join: the pair's minutes, NULL where a part lacks one), and the plan covering all."""
    own = reader.read_all() if isinstance(reader, pa.RecordBatchReader) else pa.Table.from_batches(list(reader))
    times = own.column(KEY_COLUMN).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()
    columns = {name: own.column(name) for name in own.column_names}
    features = list(plan.features)
    excluded = list(plan.excluded)
    tables = list(plan.tables)
    for part in parts:
        table = part.table
        part_times = table.column(KEY_COLUMN).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()
        if len(np.unique(part_times)) != len(part_times):
            raise DataError(f"pair {plan.pair}: tables {', '.join(part.tables)} repeat interval_time values")
        position = np.minimum(np.searchsorted(part_times, times), max(len(part_times) - 1, 0))
        found = (part_times[position] == times) if len(part_times) else np.zeros(len(times), bool)
        take = pa.array(position, mask=~found, type=pa.int64())
        for feature in part.features:
            columns[feature.alias] = pc.take(table.column(feature.alias), take)
            features.append(feature)
        for name in table.column_names:  # each table's row count per minute (NULL: it lacks the minute)
            if name.startswith(ROWS_AT_TIME + FEATURE_SEPARATOR):
                columns[name] = pc.take(table.column(name), take)
        excluded += part.excluded
        tables += part.tables
    joined = pa.table(columns)
    combined = PairPlan(plan.pair, plan.sql, tuple(tables), tuple(features), plan.targets, tuple(excluded))
    return pa.RecordBatchReader.from_batches(joined.schema, joined.to_batches(BATCH_ROWS)), combined


def read_all(batches: pa.RecordBatchReader | Iterable[pa.RecordBatch]) -> pa.Table:
    """Return a query's whole result as one table."""
    if isinstance(batches, pa.RecordBatchReader):
        return batches.read_all()
    listed = list(batches)
    if not listed:
        raise DataError("a query returned no record batches, so not even its columns are known")
    return pa.Table.from_batches(listed)


def pair_days(source: WarehouseSource, pair: str, settings: Settings) -> list[date]:
    """Return sampled days from this pair's own calendar (a run samples once for all pairs)."""
    targets = source.catalog().table(settings.analytics_dataset, settings.targets_table.format(pair=pair))
    return sample_days(source.day_counts(targets), settings.max_rows, settings.seed)
