"""A pair's artifact as models: its horizons' results (or failures), what it measured, the summary
(pairs/PAIR.json) and the small message its task sends back through Redis."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from bqx_queue.domain.record import (
    ARTIFACT_FORMAT,
    ArtifactDigest,
    Count,
    FeatureShape,
    Fraction,
    PairOutcome,
    PairStatus,
    Record,
    Timestamp,
)

# How a pair's block Grams were held: whole, packed (one triangle, when whole ones would not fit
# the memory budget), or none (the LightGBM selector builds no Gram).
GramStorage = Literal["full", "packed", "none"]
# A failed pair's error in its task result (Redis); the artifact keeps the whole message.
SMALL_ERROR_CHARS = 500


# --- a horizon's result ----------------------------------------------------------------------


class Metrics(Record):
    auc: Fraction
    accuracy: Fraction
    directional_accuracy: Fraction
    log_loss: float = Field(ge=0)


class StableFeature(Record):
    """A stable feature, and how selection saw it: the shape of the basis column that entered it
    most often (analysis/basis.py) and, for a product or gate, the other feature of the pair."""

    feature: str
    frequency: Fraction
    shape: FeatureShape = "linear"
    partner: str | None = None
    cluster: list[str] | None = Field(
        default=None, description="stable as a cluster of substitutes: the other members, each below the threshold"
    )
    cluster_frequency: Fraction | None = Field(default=None, description="share of fits that selected any member")


class ShapFeature(Record):
    feature: str
    mean_abs_shap: float = Field(ge=0)


class Interval(Record):
    """Estimate and 95% circular block-bootstrap interval over the held-out rows."""

    estimate: float
    low: float
    high: float


class FeatureVerdict(Record):
    feature: str
    effect: float = Field(description="mean increase in held-out log loss when the column is permuted")
    effect_low: float
    effect_high: float
    lower_bound: float = Field(description="one-sided lower bound at the feature's level")
    level: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="its level in Holm's step-down over the horizon's k features, alpha / k to alpha "
        "(absent in older summaries: alpha / k)",
    )
    block_rows: int = Field(ge=1)
    dof: int | None = Field(
        default=None, ge=1, description="Student t degrees of freedom of its bounds (absent in older summaries)"
    )
    gate_lower_bound: float | None = Field(
        default=None,
        description="one-sided lower bound at alpha of the model's log-loss gain over the baseline, resampled "
        "in blocks as long as this feature's own; its verdict needs it above 0 (absent in older summaries: "
        "the horizon's gain_lower_bound)",
    )
    confirmed: bool
    day_effects: list[float] | None = Field(
        default=None, description="the effect summed over each held-out day's rows (Confirmation.heldout_days)"
    )
    day_target_noise: list[float] | None = Field(
        default=None,
        description="per held-out day, the summed part of the effect the target drives given the features: "
        "(up - p) x the permutation's change in log odds (absent in older summaries)",
    )
    block_target_noise: list[float] | None = Field(
        default=None,
        description="the same target-driven part summed per clock block (Confirmation.pooling_blocks; absent "
        "in older summaries)",
    )


class PoolingBlocks(Record):
    """The clock blocks a horizon's held-out rows fall in, for the pooled test across pairs."""

    minutes: int = Field(ge=1, description="block length (analysis/confirmation.py POOLING_BLOCK_MINUTES)")
    lag: int = Field(ge=1, description="blocks apart whose labels can still share rows: the labels' overlap, in blocks")
    starts: list[Timestamp] = Field(description="each block's start, in order")
    rows: list[Annotated[int, Field(ge=1)]] = Field(description="held-out rows in each block")


class Confirmation(Record):
    """Held-out verdicts of a horizon's stable features (see the report's confirmation.note)."""

    keep_none = frozenset({"flag_reason"})

    k: Count = Field(description="stable features tested in this horizon")
    alpha: float = Field(gt=0, lt=1)
    level: float = Field(gt=0, lt=1, description="alpha / k: the strictest level of Holm's step-down")
    min_block_rows: int = Field(ge=1, description="horizon + 45 rows, or a quarter of the held-out rows if fewer")
    block_rows: int = Field(ge=1, description="block length for the AUC and log-loss gain intervals")
    heldout_rows: int = Field(ge=1)
    repeats: int | None = Field(default=None, ge=1)
    draws: int | None = Field(default=None, ge=2)
    features: list[FeatureVerdict]
    confirmed: list[str]
    auc: Interval
    log_loss_gain: Interval
    gain_lower_bound: float = Field(
        description="one-sided lower bound at alpha of the model's log-loss gain, in the blocks of the horizon's "
        "most persistent feature: the horizon as a whole (each feature's verdict uses its own gate_lower_bound)"
    )
    model_beats_baseline: bool = Field(description="gain_lower_bound above 0")
    flagged: bool
    flag_reason: str | None
    heldout_days: list[date] | None = Field(
        default=None, description="calendar days of the held-out rows, in order (absent in older summaries)"
    )
    heldout_day_rows: list[Annotated[int, Field(ge=1)]] | None = Field(
        default=None, description="held-out rows on each of heldout_days"
    )
    pooling_blocks: PoolingBlocks | None = Field(default=None, description="absent in older summaries")


class Substitutes(Record):
    """Stable features clustered by |correlation| >= level on the selection rows."""

    level: float = Field(gt=0, lt=1)
    clusters: list[Annotated[list[str], Field(min_length=1)]]


class EraRows(Record):
    era: str
    rows: Count


class EraFeature(Record):
    keep_none = frozenset({"min_frequency"})

    feature: str
    frequencies: list[Fraction | None]
    min_frequency: float | None
    era_dependent: bool
    collapsed_eras: list[str]
    confirmed: bool | None = None


class Eras(Record):
    """Per-era selection frequency of the horizon's stable features."""

    eras: list[EraRows]
    candidates: int = Field(ge=1)
    q: int = Field(ge=1)
    fits: int = Field(ge=1)
    collapse_frequency: Fraction
    features: list[EraFeature]


class HorizonMetrics(Record):
    folds: list[Metrics]
    mean: Metrics
    baseline: Metrics


class DependenceCurve(Record):
    """A confirmed nonlinear feature's mean target per decile of its held-out values (one series,
    or one per side of its partner's median)."""

    feature: str
    shape: Literal["absolute", "product", "gate"]
    partner: str | None = None
    x: list[float]
    series: dict[str, list[float | None]]


class ModelPartner(Record):
    """A confirmed feature's strongest interaction partner as the horizon's final model sees it:
    mean |SHAP interaction value| on held-out rows (analysis/explain.py interaction_partners)."""

    feature: str
    partner: str
    share: Fraction = Field(description="the partner's share of the feature's off-diagonal |interaction| mass")
    interaction: Fraction = Field(
        description="that off-diagonal mass over the feature's whole |interaction| row (its main effect included)"
    )


class HorizonResult(Record):
    """One horizon of a pair that was analysed: stable features, the model beside a baseline,
    held-out verdicts, SHAP, substitutes and eras."""

    keep_none = frozenset({"eras"})

    stable: list[StableFeature]
    q: int = Field(ge=1)
    threshold: float = Field(gt=0.5, le=1)
    fits: int = Field(ge=1)
    error_bound: float = Field(ge=0)
    metrics: HorizonMetrics
    confirmation: Confirmation | None = None
    shap_top: list[ShapFeature]
    substitutes: Substitutes | None = None
    eras: Eras | None = None  # None when nothing was confirmed
    dependence: list[DependenceCurve] = []  # confirmed features selected through a nonlinear column
    model_partners: list[ModelPartner] = []  # confirmed features' partners in the final model

    @property
    def ok(self) -> bool:
        return True


class FailedHorizon(Record):
    """A horizon that could not be analysed (its target unusable); the pair's others went on."""

    status: Literal[PairStatus.FAILED] = PairStatus.FAILED
    error: str

    @property
    def ok(self) -> bool:
        return False


# a failed horizon says so ("status"); anything else is a result
HorizonOutcome = Annotated[FailedHorizon | HorizonResult, Field(union_mode="left_to_right")]


# --- a pair ----------------------------------------------------------------------------------


class ExtractCacheSummary(Record):
    """Queries whose rows came from the extract cache (hits, nothing billed) or were sent (misses),
    and what the hits saved."""

    hits: Count
    misses: Count
    saved_bytes_billed: Count
    saved_usd: float = Field(ge=0)
    saved_s: float = Field(ge=0)


class TableRows(Record):
    pair: str | None = None
    table: str = Field(description="dataset.table")
    repeated_timestamps: Count = Field(description="minutes at which the table had more than one row")
    rows_dropped: Count = Field(description="rows beyond the one kept at those minutes")
    rows_missing: Count = Field(description="pair minutes at which the table had no row")


class NonFinite(Record):
    pair: str | None = None
    column: str
    values: int = Field(ge=1)


class PairDataQuality(Record):
    """What the warehouse's hazards did to this pair's rows."""

    on_duplicate_timestamps: Literal["drop", "fail"]
    tables: list[TableRows]
    non_finite: list[NonFinite]
    missing_families: list[str]


class PairMeasures(Record):
    """What a pair's run measured, where it ran and when; absent (None) for a pair that failed
    before measuring it."""

    rows: Count | None = None
    rows_used: Count | None = None
    days: Count | None = None
    features_tested: Count | None = None
    features_usable: Count | None = None
    features_in_selection: Count | None = None
    tables: Count | None = None
    columns: Count | None = None
    bytes_processed: Count | None = None
    maximum_bytes_billed: Count | None = Field(
        default=None,
        description="BigQuery: the caps sent as maximum_bytes_billed, summed over the pair's queries "
        "(0 for rows the extract cache served)",
    )
    estimated_bytes_billed: Count | None = Field(
        default=None, description="BigQuery: the dry runs' estimate of bytes billed, summed over the pair's queries"
    )
    wall_s: float | None = Field(default=None, ge=0)
    timings: dict[str, float] | None = None
    peak_rss_bytes: Count | None = None
    worker: str | None = Field(
        default=None, description="Celery node name of the worker that ran the pair, when the task records it"
    )
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    extract_cache: ExtractCacheSummary | None = None
    data_quality: PairDataQuality | None = None
    families: dict[str, Annotated[int, Field(ge=1)]] | None = Field(
        default=None, description="feature family -> members that entered selection"
    )


class PairMessage(BaseModel):
    """What a pair's task sends back through Redis: small and bounded (under 2 KB) whatever the
    pair's width; the whole summary is the pair's artifact in the run folder."""

    pair: str
    status: PairOutcome
    error: str | None
    wall_s: float | None
    host: str
    pid: int
    cost_usd: float
    queries: int
    stable_counts: dict[str, int]


class PairSummary(PairMeasures):
    """A pair's artifact (pairs/PAIR.json): one shape whether it ended ok or failed."""

    keep_none = frozenset({"error"})

    format: int = ARTIFACT_FORMAT
    pair: str
    status: PairOutcome
    error: str | None = None
    ledger: ArtifactDigest | None = None  # the ledger's size and SHA-256, for an ok pair
    host: str = ""
    pid: int = 0
    queries: Count = 0
    bytes_billed: Count = 0
    cost_usd: float = 0.0
    gram_storage: GramStorage | None = None
    horizons: dict[str, HorizonOutcome] = {}

    @property
    def ok(self) -> bool:
        return self.status is PairStatus.OK

    def message(self) -> PairMessage:
        error = self.error
        if error is not None and len(error) > SMALL_ERROR_CHARS:
            error = error[: SMALL_ERROR_CHARS - 1] + "…"  # the artifact keeps the whole message
        return PairMessage(
            pair=self.pair,
            status=self.status,
            error=error,
            wall_s=self.wall_s,
            host=self.host,
            pid=self.pid,
            cost_usd=self.cost_usd,
            queries=self.queries,
            stable_counts={h: len(r.stable) for h, r in self.horizons.items() if isinstance(r, HorizonResult)},
        )
