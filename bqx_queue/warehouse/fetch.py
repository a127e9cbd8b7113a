"""A pair's fetched rows read into a PairFrame, with what the fetch cost: the step every source's
fetch_pair ends with, whichever way its rows came (a query, several, or the extract cache)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from bqx_queue.config import Settings
from bqx_queue.domain import DataError
from bqx_queue.warehouse import billing
from bqx_queue.warehouse.catalog import Catalog, missing_families
from bqx_queue.warehouse.extract_cache import ExtractUse, narrow_targets, summarize
from bqx_queue.warehouse.frame import PairFrame, read_pair_frame
from bqx_queue.warehouse.sampling import sample_days
from bqx_queue.warehouse.sql import PairPlan

if TYPE_CHECKING:
    from bqx_queue.warehouse.interface import WarehouseSource


@dataclass
class PairFetch:
    """One pair's rows and what fetching them cost."""

    frame: PairFrame
    # the pair summary's cost fields: queries, tables, columns, bytes processed and billed (and
    # BigQuery's cap and estimate), cost_usd, extract_cache, data_quality
    cost: dict[str, Any]
    excluded: dict[str, str]  # column -> why it is not a feature (by the plan, or by the frame)


def read_pair_fetch(
    pair: str,
    settings: Settings,
    catalog: Catalog,
    plan: PairPlan,
    parts: list[Iterable[pa.RecordBatch]],
    job_bytes: dict[str, int],
    queries: int,
    extract_uses: list[ExtractUse],
    capacity: int,
) -> PairFetch:
    """Return the pair's frame read from its parts (one stream per statement, lined up on
    interval_time) and the fetch's cost; `queries` counts only queries sent (not cache hits)."""
    plan = narrow_targets(plan, settings)  # a cached run's rows hold every horizon's target
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
        "extract_cache": summarize(extract_uses),
        "data_quality": frame.quality.summary(
            settings.on_duplicate_timestamps, missing_families(catalog, pair, settings)
        ),
    }
    return PairFetch(frame, cost, dict(plan.excluded) | frame.excluded)


def pair_days(source: WarehouseSource, pair: str, settings: Settings) -> list[date]:
    """Return sampled days from this pair's own calendar (a run samples once for all pairs)."""
    targets = source.catalog().table(settings.analytics_dataset, settings.targets_table.format(pair=pair))
    return sample_days(source.day_counts(targets), settings.max_rows, settings.seed)
