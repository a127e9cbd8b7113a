"""A run's plan as models: the cost estimates, the approved plan and the run manifest (manifest.json)."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import ConfigDict, Field

from bqx_queue.domain.record import ARTIFACT_FORMAT, Count, Record, SourceKind, Timestamp

# BigQuery refuses a job whose bill would pass maximum_bytes_billed; the cap adds this much per
# referenced table to the estimate, since each table is rounded up to its 10 MiB minimum.
CAP_MARGIN_PER_TABLE = 11 * 1024**2
# How an estimate was made: "metadata" (types x rows per partition), "dry-run" (BigQuery's own
# figure) or "extract-cache" (the rows are cached: no query, nothing billed).
EstimateMethod = Literal["metadata", "dry-run", "extract-cache"]


# --- cost ------------------------------------------------------------------------------------


class CostEstimate(Record):
    """What one pair's queries (or one shared-table query) are expected to process and be billed."""

    model_config = ConfigDict(frozen=True)

    pair: str
    queries: Count
    tables: Count
    columns: Count
    bytes_processed: Count
    bytes_billed: Count
    cost_usd: float = Field(ge=0)
    method: EstimateMethod = Field(
        description='"metadata" (types x rows per partition), "dry-run" (BigQuery\'s own figure) or '
        '"extract-cache" (the rows are cached: no query, nothing billed)'
    )

    @property
    def cap(self) -> int:
        """Return maximum_bytes_billed for the query: the estimate plus a margin per table."""
        return int(self.bytes_processed) + self.tables * CAP_MARGIN_PER_TABLE


class RunEstimate(Record):
    """The producer's estimate of a whole run: every pair, the shared tables once, and the budget."""

    method: EstimateMethod
    pairs: dict[str, CostEstimate]
    shared: list[CostEstimate] = []  # shared tables, once per run
    queries: Count
    bytes_processed: Count
    bytes_billed: Count
    cost_usd: float
    budget_usd: float

    @property
    def per_pair_usd(self) -> dict[str, float]:
        return {pair: estimate.cost_usd for pair, estimate in self.pairs.items()}

    @property
    def over_budget(self) -> bool:
        return self.cost_usd > self.budget_usd


# --- the run manifest ------------------------------------------------------------------------


class PairPlanSummary(Record):
    """What the manifest records of one pair's plan."""

    queries: Count
    tables: Count
    columns: Count
    predicted_peak_bytes: Count
    features_in_selection: Count


class SharedTablesPlan(Record):
    queries: Count
    tables: Count


class ApprovedPlan(Record):
    """The approved plan a run ran (bqx-enqueue --plan)."""

    path: str
    written_at: Timestamp
    approved_by: str
    approved_at: Timestamp
    fingerprints: dict[str, str]


class Resume(Record):
    at: Timestamp  # when `bqx-enqueue --resume` ran
    pairs: list[str]


class RunManifest(Record):
    """A run's plan, written before anything is enqueued: pairs, sampled days, settings, estimate."""

    keep_none = frozenset({"shared_tables"})

    format: int = ARTIFACT_FORMAT
    run_id: str
    created_at: Timestamp
    pairs: list[str]
    horizons: list[int]
    days: list[date]
    warehouse: str
    source: SourceKind
    plans: dict[str, PairPlanSummary]
    estimate: RunEstimate | None = None
    shared_tables: SharedTablesPlan | None = None  # BigQuery: the shared tables once, before any pair
    settings: dict[str, Any]  # the run's own settings (not this host's broker and files)
    workers: dict[str, int] | None = None  # worker node -> pool size, when the run was enqueued
    plan: ApprovedPlan | None = None
    resumes: list[Resume] | None = None

    @property
    def slots(self) -> int:
        return int(sum((self.workers or {}).values()))
