"""What crosses a boundary, as pydantic models: the run manifest, a cost estimate, a pair's summary
and the small message a task sends through Redis, a horizon's result, and the report.

The JSON files of a run folder (manifest.json, pairs/PAIR.json, report.json) are these models
dumped; report.schema.json is generated from `Report` (`python -m bqx_queue.report.schema`).
This module imports nothing from the rest of the package, so every layer may use it.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

# A failed pair's error in its task result (Redis); the artifact keeps the whole message.
SMALL_ERROR_CHARS = 500
# BigQuery refuses a job whose bill would pass maximum_bytes_billed; the cap adds this much per
# referenced table to the estimate, since each table is rounded up to its 10 MiB minimum.
CAP_MARGIN_PER_TABLE = 11 * 1024**2
# The format of the run folder's JSON artifacts (manifest, pair summaries): a reader refuses a
# newer one in one line rather than misreading it. Files written before it was recorded are 1.
ARTIFACT_FORMAT = 1

Fraction = Annotated[float, Field(ge=0, le=1)]
Count = Annotated[int, Field(ge=0)]
# the basis column through which a feature entered selection (analysis/basis.py Shape)
FeatureShape = Literal["linear", "absolute", "product", "gate"]


class Record(BaseModel):
    """A model that refuses keys it does not declare (a misspelt key fails where it is written,
    not silently downstream), and whose unset optional fields (None) stay out of its JSON; the
    fields named in `keep_none` are written even when None."""

    model_config = ConfigDict(extra="forbid")
    keep_none: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _without_absent(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        fields = type(self).model_fields
        return {
            key: value
            for key, value in data.items()
            if value is not None or key in self.keep_none or fields[key].is_required()
        }


class PairStatus(StrEnum):
    """How a pair (or one of its horizons) ended."""

    OK = "ok"
    FAILED = "failed"
    # never written: how a reader sees a pair whose artifacts are damaged (it is run again on resume)
    DAMAGED = "damaged"


class ArtifactDigest(Record):
    """What a pair summary records of a file it vouches for, so a reader can tell it is intact."""

    file: str
    bytes: Count
    sha256: str = Field(pattern="^[0-9a-f]{64}$")


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
    method: str = Field(
        description='"metadata" (types x rows per partition), "dry-run" (BigQuery\'s own figure) or '
        '"extract-cache" (the rows are cached: no query, nothing billed)'
    )

    @property
    def cap(self) -> int:
        """Return maximum_bytes_billed for the query: the estimate plus a margin per table."""
        return int(self.bytes_processed) + self.tables * CAP_MARGIN_PER_TABLE


class RunEstimate(Record):
    """The producer's estimate of a whole run: every pair, the shared tables once, and the budget."""

    method: str
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
    written_at: str
    approved_by: str
    approved_at: str
    fingerprints: dict[str, str]


class Resume(Record):
    at: str  # ISO time of `bqx-enqueue --resume`
    pairs: list[str]


class RunManifest(Record):
    """A run's plan, written before anything is enqueued: pairs, sampled days, settings, estimate."""

    keep_none = frozenset({"shared_tables"})

    format: int = ARTIFACT_FORMAT
    run_id: str
    created_at: str
    pairs: list[str]
    horizons: list[int]
    days: list[date]
    warehouse: str
    source: str
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
    confirmed: bool
    day_effects: list[float] | None = Field(
        default=None, description="the effect summed over each held-out day's rows (Confirmation.heldout_days)"
    )


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
    gain_lower_bound: float
    model_beats_baseline: bool
    flagged: bool
    flag_reason: str | None
    heldout_days: list[date] | None = Field(
        default=None, description="calendar days of the held-out rows, in order (absent in older summaries)"
    )
    heldout_day_rows: list[Annotated[int, Field(ge=1)]] | None = Field(
        default=None, description="held-out rows on each of heldout_days"
    )


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
    started_at: float | None = None
    finished_at: float | None = None
    extract_cache: ExtractCacheSummary | None = None
    data_quality: PairDataQuality | None = None
    families: dict[str, Annotated[int, Field(ge=1)]] | None = Field(
        default=None, description="feature family -> members that entered selection"
    )


class PairMessage(BaseModel):
    """What a pair's task sends back through Redis: small and bounded (under 2 KB) whatever the
    pair's width; the whole summary is the pair's artifact in the run folder."""

    pair: str
    status: PairStatus
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
    status: PairStatus
    error: str | None = None
    ledger: ArtifactDigest | None = None  # the ledger's size and SHA-256, for an ok pair
    host: str = ""
    pid: int = 0
    queries: Count = 0
    bytes_billed: Count = 0
    cost_usd: float = 0.0
    gram_storage: str | None = None  # how the block Grams were held: "full", "packed" or "none"
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


# --- the report ------------------------------------------------------------------------------


class ReportHorizon(Record):
    stable: list[StableFeature]
    n_stable: Count
    q: int = Field(ge=1)
    threshold: float = Field(gt=0.5, le=1)
    fits: int = Field(ge=1)
    error_bound: float = Field(ge=0)
    metrics: Metrics
    baseline: Metrics
    folds: list[Metrics]
    shap_top: list[ShapFeature]
    confirmation: Confirmation | None = None
    substitutes: Substitutes | None = None
    eras: Eras | None = None
    dependence: list[DependenceCurve] = []

    @classmethod
    def of(cls, result: HorizonResult) -> ReportHorizon:
        return cls(
            stable=result.stable,
            n_stable=len(result.stable),
            q=result.q,
            threshold=result.threshold,
            fits=result.fits,
            error_bound=result.error_bound,
            metrics=result.metrics.mean,
            baseline=result.metrics.baseline,
            folds=result.metrics.folds,
            shap_top=result.shap_top,
            confirmation=result.confirmation,
            substitutes=result.substitutes,
            eras=result.eras,
            dependence=result.dependence,
        )


class ReportPair(PairMeasures):
    """A pair in the report: what it measured, and its horizons (analysed or failed)."""

    keep_none = frozenset({"error"})

    pair: str = Field(pattern="^[a-z]{6}$")
    status: PairStatus
    error: str | None
    queries: Count
    bytes_billed: Count
    cost_usd: float = Field(ge=0)
    host: str
    pid: int
    horizons: dict[str, ReportHorizon]
    failed_horizons: dict[str, str] = Field(
        description="horizon -> why it could not be analysed (the pair's other horizons went on)"
    )

    @property
    def ok(self) -> bool:
        return self.status is PairStatus.OK

    @classmethod
    def of(cls, summary: PairSummary) -> ReportPair:
        measures = {name: getattr(summary, name) for name in PairMeasures.model_fields}
        return cls(
            **measures,
            pair=summary.pair,
            status=summary.status,
            error=summary.error,
            queries=summary.queries,
            bytes_billed=summary.bytes_billed,
            cost_usd=summary.cost_usd,
            host=summary.host,
            pid=summary.pid,
            horizons={h: ReportHorizon.of(r) for h, r in summary.horizons.items() if isinstance(r, HorizonResult)},
            failed_horizons={h: r.error for h, r in summary.horizons.items() if isinstance(r, FailedHorizon)},
        )


class RunSection(Record):
    run_id: str
    created_at: str
    duration_s: float = Field(ge=0)
    pairs: list[str]
    horizons: list[int]
    days: int = Field(ge=1)
    warehouse: str
    source: str
    workers: dict[str, int]
    worker_count: Count
    concurrency: Count
    processes: Count
    missing_pairs: list[str] | None = None
    damaged_pairs: list[str] | None = Field(
        default=None, description="pairs whose artifacts were damaged: `bqx-enqueue --resume` runs them again"
    )


class Totals(Record):
    pairs_ok: Count
    pairs_failed: Count
    queries: Count
    bytes_processed: Count
    bytes_billed: Count
    cost_usd: float = Field(ge=0)
    features_tested: Count
    stable_selections: Count
    error_bound_sum: float | None = Field(
        default=None,
        ge=0,
        description="sum of the pair-horizons' MB error bounds: up to this many stable selections are expected false",
    )
    confirmed_findings: Count | None = None
    flagged_horizons: Count | None = None
    extract_cache: ExtractCacheSummary | None = None


class SharedCost(Record):
    """Tables shared by every pair, queried once per run (BigQuery); zeros otherwise."""

    queries: Count
    tables: Count
    bytes_processed: Count
    bytes_billed: Count
    cost_usd: float = Field(ge=0)
    extract_cache: ExtractCacheSummary | None = None


class FeatureAcrossPairs(Record):
    feature: str
    pair_horizons: Count
    confirmed_pair_horizons: Count


class ErrorAccounting(Record):
    stable_selections: Count
    error_bound_sum: float = Field(ge=0)
    pair_horizons: Count


class PooledFamilyEffect(Record):
    """A family's held-out effect pooled over the pairs where it had a stable member, and its
    one-sided test of "pooled effect > 0" (analysis/pooled.py)."""

    estimate: float = Field(description="mean increase in held-out log loss per row when the member is permuted")
    low: float = Field(description="95% interval")
    high: float
    method: Literal["days", "worst-case correlation"] = Field(
        description='"days": whole held-out days resampled jointly in every pair; "worst-case correlation": '
        "summaries without days, standard errors added as if the pairs were perfectly correlated"
    )
    days: Count | None = Field(default=None, description="held-out days resampled")
    pairs: list[str] = Field(description="pairs pooled: those with a stable member of the family")
    positive: list[str] = Field(description="pooled pairs whose own estimate is above zero")
    features: dict[str, str] = Field(description="pair -> the member pooled (its most frequently selected)")
    p_value: Fraction
    q_value: Fraction = Field(description="Benjamini-Yekutieli over every cell with a pooled test")
    significant: bool


class FamilyCell(Record):
    family: str
    horizon: int
    k: Count = Field(description="pairs in which a member is confirmed alone")
    n_pairs: Count
    pairs: list[str]
    members: dict[str, list[str]]
    expected_under_null: float = Field(ge=0)
    p_value: Fraction
    q_value: Fraction
    significant: bool
    pooled: PooledFamilyEffect | None = None


class FamilyFinding(Record):
    """A family found across pairs, once, with the horizons where it holds (analysis/family_findings.py)."""

    family: str
    horizons: list[int]
    tested_horizons: list[int]
    p_value: Fraction = Field(description="the smallest pooled p-value adjusted over the tested horizons")
    across_horizons: Literal["max-T", "Bonferroni", "one horizon"] = Field(
        default="Bonferroni",
        description="how: max-T with the horizons' dependence from a shared day resampling, or Bonferroni "
        "(absent in older reports: Bonferroni)",
    )
    q_value: Fraction = Field(description="Benjamini-Yekutieli over the families tested")


class FamiliesSection(Record):
    """Feature families confirmed in k of N pairs per horizon, p-values against chance at each
    pair's error bound, Benjamini-Yekutieli FDR; their held-out effects pooled over pairs, and the
    families found counted once across horizons."""

    note: str
    strip_tokens: list[str]
    fdr_level: float = Field(gt=0, lt=1)
    method: str
    tests: Count
    families: Count
    pairs: Count
    significant: Count = Field(description="cells significant by the count test")
    cells: list[FamilyCell]
    pooled_note: str | None = None
    pooled_tests: Count | None = Field(default=None, description="cells with a pooled test")
    pooled_significant: Count | None = Field(default=None, description="cells significant by the pooled test")
    families_tested: Count | None = Field(default=None, description="families with a pooled test")
    findings: list[FamilyFinding] | None = Field(default=None, description="families found, each once")


class SubstituteCluster(Record):
    pair: str
    horizon: int
    level: float
    members: list[str] = Field(min_length=2)


class EraRow(Record):
    pair: str
    horizon: int
    feature: str
    eras: list[str]
    frequencies: list[float | None]
    era_dependent: bool
    collapsed_eras: list[str]
    collapse_frequency: float


class ErasSection(Record):
    note: str
    era_dependent: Count
    features: list[EraRow]


class EffectSize(Record):
    pair: str
    horizon: int
    auc: Interval
    log_loss_gain: Interval
    flagged: bool


class PilotMeasured(Record):
    bytes_processed: int | None = None
    bytes_billed: Count
    cost_usd: float = Field(ge=0)
    wall_s: float = Field(ge=0)
    peak_rss_bytes: int | None = None
    features_tested: int | None = None


class PilotProjected(Record):
    pairs: int = Field(ge=1)
    bytes_billed: Count
    cost_usd: float = Field(ge=0)
    slots: int = Field(ge=1)
    waves: int = Field(ge=1)
    wall_s: float = Field(ge=0)


class Pilot(Record):
    """A one-pair run: measured cost and time, and the full run projected."""

    note: str
    pair: str
    measured: PilotMeasured
    projected: PilotProjected


class VerdictRow(Record):
    pair: str
    horizon: int
    feature: str
    frequency: Fraction
    shape: FeatureShape = "linear"
    partner: str | None = None
    cluster: list[str] | None = Field(
        default=None, description="stable as a cluster of substitutes: the other members, each below the threshold"
    )
    cluster_frequency: Fraction | None = Field(default=None, description="share of fits that selected any member")
    effect: float
    effect_low: float
    effect_high: float
    lower_bound: float
    k: int = Field(ge=1)
    level: float = Field(gt=0, lt=1)
    why: str | None = None


class UnconfirmedRow(VerdictRow):
    why: str


class FlaggedHorizon(Record):
    pair: str
    horizon: int
    reason: str
    auc: Interval
    log_loss_gain: Interval


class ConfirmationSection(Record):
    """Findings (stable and confirmed on held-out rows), stable features not confirmed with their
    evidence, flagged horizons."""

    note: str = Field(description="what the error bound and the intervals cover")
    horizons_evaluated: Count
    findings: list[VerdictRow]
    unconfirmed: list[UnconfirmedRow]
    flagged_horizons: list[FlaggedHorizon]


class MissingFamilies(Record):
    pair: str
    families: list[str]


class FailedHorizonRow(Record):
    pair: str
    horizon: int
    error: str


class DataQuality(Record):
    """The run's warehouse hazards: repeated timestamps and missing minutes per table, non-finite
    values, missing table families, failed horizons."""

    duplicate_rule: str
    tables: list[TableRows]
    non_finite: list[NonFinite]
    missing_families: list[MissingFamilies]
    failed_horizons: list[FailedHorizonRow]


class Report(Record):
    """The run report (report.json), built from the run's manifest and pair artifacts."""

    model_config = ConfigDict(extra="forbid", title="bqx-queue run report")
    keep_none = frozenset({"pilot", "approval"})

    run: RunSection
    totals: Totals
    pairs: list[ReportPair]
    shared: SharedCost | None = None
    features_across_pairs: list[FeatureAcrossPairs] | None = None
    error_accounting: ErrorAccounting | None = None
    families: FamiliesSection | None = None
    substitutes: list[SubstituteCluster] | None = None
    eras: ErasSection | None = None
    effect_sizes: list[EffectSize] | None = None
    pilot: Pilot | None = None
    approval: ApprovedPlan | None = None
    confirmation: ConfirmationSection | None = None
    data_quality: DataQuality | None = None

    @property
    def ok_pairs(self) -> list[ReportPair]:
        return [p for p in self.pairs if p.ok]

    @property
    def failed_pairs(self) -> list[ReportPair]:
        return [p for p in self.pairs if not p.ok]
