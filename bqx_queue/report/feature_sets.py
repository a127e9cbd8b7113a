"""feature_sets.json: what a training pipeline reads from a run. Per pair and horizon, the
confirmed features in order of held-out effect with their intervals, the stable-but-unconfirmed
ones apart, and the run id, warehouse, sampled days and settings they came from. Written beside
the report; `bqx export RUN --format json|csv|yaml` writes it anywhere. Its schema,
feature_sets.schema.json, is generated from `FeatureSets` (`python -m bqx_queue.report.schema`).

Example (a training job)::

    sets = FeatureSets.model_validate_json(Path("runs/RUN/feature_sets.json").read_text())
    columns = [f.feature for f in sets.for_pair("eurusd", 45).confirmed]
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field

from bqx_queue.domain import FeatureShape, Fraction, Record, Report, RunManifest, SourceKind, Timestamp, target_column
from bqx_queue.report.confirmation import why_unconfirmed


class SetFeature(Record):
    """A feature of a training feature set, with its held-out evidence."""

    feature: str
    shape: FeatureShape = "linear"
    partner: str | None = Field(default=None, description="the other feature of a product or gate, as selection saw it")
    model_partner: str | None = Field(
        default=None,
        description="confirmed: its strongest interaction partner in the final model (SHAP, held-out rows)",
    )
    model_partner_share: Fraction | None = Field(
        default=None, description="that partner's share of the feature's off-diagonal SHAP interaction mass"
    )
    frequency: Fraction = Field(description="selection frequency (stability selection)")
    effect: float = Field(description="held-out: mean increase in log loss when the column is permuted")
    effect_low: float = Field(description="95% interval of the effect")
    effect_high: float
    lower_bound: float = Field(description="one-sided lower bound at its Holm level (alpha / k to alpha)")


class UnconfirmedSetFeature(SetFeature):
    why: str = Field(description="why held-out rows did not confirm it")


class FeatureSet(Record):
    """One pair and horizon: what a model of its target should read."""

    pair: str = Field(pattern="^[a-z]{6}$")
    horizon: int
    target: str = Field(description="the target column the features were tested on")
    flagged: bool = Field(description="the horizon's model was worse than the constant baseline on held-out rows")
    confirmed: list[SetFeature] = Field(description="confirmed on held-out rows, largest held-out effect first")
    unconfirmed: list[UnconfirmedSetFeature] = Field(description="stable but not confirmed, apart")


class FeatureSets(Record):
    """feature_sets.json: per pair and horizon the confirmed features a training job reads, and
    the run, warehouse, sampled days and settings they came from, so the job can pin them."""

    model_config = ConfigDict(extra="forbid", title="bqx-queue feature sets")

    run_id: str
    created_at: Timestamp
    warehouse: str
    source: SourceKind
    days: list[date]
    horizons: list[int]
    pairs: list[str]
    settings: dict[str, Any]
    sets: list[FeatureSet]

    def for_pair(self, pair: str, horizon: int) -> FeatureSet:
        """Return the set of one pair and horizon; KeyError when the run has none."""
        for feature_set in self.sets:
            if feature_set.pair == pair and feature_set.horizon == horizon:
                return feature_set
        raise KeyError(f"no feature set for {pair} h{horizon} in run {self.run_id}")


ExportFormat = Literal["json", "csv", "yaml"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("json", "csv", "yaml")
# one row per feature of a set: the run id pins it; days and settings are in the json and yaml forms
CSV_COLUMNS = (
    "run_id", "pair", "horizon", "target", "flagged", "status", "rank", "feature", "shape", "partner",
    "model_partner", "model_partner_share", "frequency", "effect", "effect_low", "effect_high", "lower_bound", "why",
)  # fmt: skip


def feature_sets_schema() -> dict[str, Any]:
    """Return the shipped JSON Schema of feature_sets.json (generated from `FeatureSets`)."""
    return json.loads(resources.files("bqx_queue.report").joinpath("feature_sets.schema.json").read_text())


def feature_sets(report: Report, manifest: RunManifest) -> FeatureSets:
    """Return the run's feature sets: one per pair and horizon with a held-out verdict, pairs in
    the run's order, then horizons."""
    sets = []
    for pair in report.ok_pairs:
        for horizon, result in sorted(pair.horizons.items(), key=lambda item: int(item[0])):
            verdict = result.confirmation
            if verdict is None:  # a summary written before held-out verdicts: nothing to train on
                continue
            stable = {s.feature: s for s in result.stable}
            partners = {m.feature: m for m in result.model_partners}
            confirmed, unconfirmed = [], []
            for feature in sorted(verdict.features, key=lambda f: -f.effect):
                selected = stable.get(feature.feature)
                model = partners.get(feature.feature)
                row = SetFeature(
                    feature=feature.feature,
                    shape=selected.shape if selected else "linear",
                    partner=selected.partner if selected else None,
                    model_partner=model.partner if model else None,
                    model_partner_share=model.share if model else None,
                    frequency=selected.frequency if selected else 0.0,
                    effect=feature.effect,
                    effect_low=feature.effect_low,
                    effect_high=feature.effect_high,
                    lower_bound=feature.lower_bound,
                )
                if feature.confirmed:
                    confirmed.append(row)
                else:
                    why = why_unconfirmed(feature, verdict)
                    unconfirmed.append(UnconfirmedSetFeature(**row.model_dump(), why=why))
            sets.append(
                FeatureSet(
                    pair=pair.pair,
                    horizon=int(horizon),
                    target=target_column(int(horizon)),
                    flagged=verdict.flagged,
                    confirmed=confirmed,
                    unconfirmed=unconfirmed,
                )
            )
    return FeatureSets(
        run_id=manifest.run_id,
        created_at=manifest.created_at,
        warehouse=manifest.warehouse,
        source=manifest.source,
        days=manifest.days,
        horizons=manifest.horizons,
        pairs=manifest.pairs,
        settings=manifest.settings,
        sets=sets,
    )


def export_text(sets: FeatureSets, export_format: ExportFormat) -> str:
    """Return the feature sets as JSON, YAML (the same document) or CSV (a row per feature)."""
    data = sets.model_dump(mode="json")
    if export_format == "json":
        return json.dumps(data, indent=2) + "\n"
    if export_format == "yaml":
        return yaml.safe_dump(data, sort_keys=False)
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for feature_set in sets.sets:
        head = {
            "run_id": sets.run_id, "pair": feature_set.pair, "horizon": feature_set.horizon,
            "target": feature_set.target, "flagged": feature_set.flagged,
        }  # fmt: skip
        for status, rows in (("confirmed", feature_set.confirmed), ("unconfirmed", feature_set.unconfirmed)):
            for rank, row in enumerate(rows, start=1):
                writer.writerow(head | {"status": status, "rank": rank} | row.model_dump(mode="json"))
    return out.getvalue()
