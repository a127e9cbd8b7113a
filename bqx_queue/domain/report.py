"""The run report (report.json) as models, built from the run's manifest and pair artifacts;
report.schema.json is generated from `Report`."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from bqx_queue.domain.manifest import ApprovedPlan
from bqx_queue.domain.pair import (
    Confirmation,
    DependenceCurve,
    Eras,
    ExtractCacheSummary,
    FailedHorizon,
    HorizonResult,
    Interval,
    Metrics,
    ModelPartner,
    NonFinite,
    PairMeasures,
    PairSummary,
    ShapFeature,
    StableFeature,
    Substitutes,
    TableRows,
)
from bqx_queue.domain.record import Count, Fraction, PairOutcome, PairStatus, Record, SourceKind, Timestamp

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
    model_partners: list[ModelPartner] = []

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
            model_partners=result.model_partners,
        )


class ReportPair(PairMeasures):
    """A pair in the report: what it measured, and its horizons (analysed or failed)."""

    keep_none = frozenset({"error"})

    pair: str = Field(pattern="^[a-z]{6}$")
    status: PairOutcome
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
    created_at: Timestamp
    duration_s: float = Field(ge=0)
    pairs: list[str]
    horizons: list[int]
    days: int = Field(ge=1)
    warehouse: str
    source: SourceKind
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
    method: Literal["blocks, given the features", "days, given the features", "days", "worst-case correlation"] = Field(
        description="\"blocks, given the features\": the effect's target-driven part (up - p) x the permutation's "
        "change in log odds summed per clock block over the pairs, its standard error from the blocks' variance "
        "and their covariances with the blocks up to the labels' overlap later; "
        '"days, given the features": whole held-out days of the effect\'s target-driven part '
        "(up - p) x the permutation's change in log odds resampled jointly in every pair, the spread of the "
        "target given the features' values; \"days\": the days' effect sums resampled (summaries without the "
        'target-driven part); "worst-case correlation": summaries without days, standard errors added as if '
        "the pairs were perfectly correlated"
    )
    days: Count | None = Field(default=None, description="held-out days pooled")
    blocks: Count | None = Field(default=None, description="clock blocks of the standard error (method blocks)")
    dof: Count | None = Field(default=None, description="degrees of freedom of the Student t of interval and p-value")
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


class VerdictRow(StableFeature):
    """A stable feature of a pair-horizon as selection saw it, with its held-out verdict."""

    pair: str
    horizon: int
    model_partner: str | None = Field(default=None, description="strongest interaction partner in the final model")
    model_partner_share: Fraction | None = Field(
        default=None, description="that partner's share of the feature's off-diagonal SHAP interaction mass"
    )
    model_interaction: Fraction | None = Field(
        default=None, description="the feature's off-diagonal SHAP interaction mass over its whole row"
    )
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
