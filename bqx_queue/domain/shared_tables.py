"""The shared-table index of a run (shared/index.json): the tables every pair reads (tri_, mkt_,
var_, csi_), fetched once on BigQuery, and what fetching them cost."""

from __future__ import annotations

from bqx_queue.domain.pair import ExtractCacheSummary
from bqx_queue.domain.record import ArtifactDigest, Record


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
