"""What changed between two runs (`bqx compare RUN_A RUN_B`): the features and families that
became confirmed or stopped being confirmed, per pair and horizon; the families whose verdict
across pairs changed; and the settings, sampled days, pairs, horizons and tables that differ:
what a researcher asks after adding feature tables or changing a setting. Read from each run's
manifest, report.json and ledger; printed as lines and written as a small HTML page.

Only pair-horizons evaluated on held-out rows in both runs are compared feature by feature: a
pair that one run never tested changed nothing, it is listed among the pairs that differ.

Example::

    changes = compare_runs(RunStore(runs_dir, "RUN_A"), RunStore(runs_dir, "RUN_B"))
    print("\\n".join(comparison_lines(changes)))
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import Field

from bqx_queue import artifacts
from bqx_queue.analysis.families import feature_family
from bqx_queue.artifacts import RunStore
from bqx_queue.config import Settings
from bqx_queue.domain import BqxError, Confirmation, FeatureVerdict, Record, Report, RunManifest
from bqx_queue.report.answer import significant
from bqx_queue.report.confirmation import why_unconfirmed
from bqx_queue.report.templating import HTML
from bqx_queue.warehouse.sql import FEATURE_SEPARATOR

Change = Literal["confirmed", "no longer confirmed"]
DEFAULT_STRIP_TOKENS = Settings.model_fields["family_strip_tokens"].default
FEATURES_LISTED = 60  # the terminal names at most this many changed features; the page has them all


class FeatureChange(Record):
    """A feature confirmed at a pair-horizon in one run and not in the other."""

    pair: str
    horizon: int
    feature: str
    family: str
    change: Change = Field(description="what happened to it from RUN_A to RUN_B")
    effect_a: float | None = Field(description="held-out effect in RUN_A; None where it was not stable")
    effect_b: float | None = Field(description="held-out effect in RUN_B; None where it was not stable")
    why: str = Field(description="why the run where it is not confirmed did not confirm it")


class FamilyChange(Record):
    """A family at one horizon whose confirmed pairs or whose verdict across pairs changed."""

    family: str
    horizon: int
    confirmed_in: list[str] = Field(description="pairs where a member became confirmed")
    no_longer_in: list[str] = Field(description="pairs where no member is confirmed any more")
    significant_a: bool = Field(description="the family holds across pairs in RUN_A (report's test)")
    significant_b: bool


class SettingChange(Record):
    name: str
    a: Any = None  # None: the setting is absent from that run's manifest
    b: Any = None


class RunComparison(Record):
    """RUN_A to RUN_B: what their inputs differ in, then what their answers differ in."""

    run_a: str
    run_b: str
    settings: list[SettingChange]
    days_only_a: list[date]
    days_only_b: list[date]
    pairs_only_a: list[str]
    pairs_only_b: list[str]
    horizons_only_a: list[int]
    horizons_only_b: list[int]
    tables_only_a: list[str]
    tables_only_b: list[str]
    pair_horizons_compared: int
    families: list[FamilyChange]
    features: list[FeatureChange]

    def listed_differences(self) -> list[tuple[str, list[Any], list[Any]]]:
        """Return (what, only in A, only in B) for the days, pairs, horizons and tables that differ."""
        listed: list[tuple[str, list[Any], list[Any]]] = [
            ("sampled days", list(self.days_only_a), list(self.days_only_b)),
            ("pairs", list(self.pairs_only_a), list(self.pairs_only_b)),
            ("horizons", list(self.horizons_only_a), list(self.horizons_only_b)),
            ("tables", list(self.tables_only_a), list(self.tables_only_b)),
        ]
        return [(what, only_a, only_b) for what, only_a, only_b in listed if only_a or only_b]

    @property
    def same_inputs(self) -> bool:
        return not self.settings and not self.listed_differences()


def run_tables(store: RunStore) -> set[str]:
    """Return the tables the run tested features of (from its ledger's feature names)."""
    path = store.root / "ledger.parquet"
    if not path.exists():
        return set()
    features = artifacts.read_table(path).column("feature").to_pylist()
    return {str(f).partition(FEATURE_SEPARATOR)[0] for f in features if FEATURE_SEPARATOR in str(f)}


def finished(store: RunStore) -> tuple[RunManifest, Report]:
    """Return a run's manifest and report; one line when the run is unknown or has no report."""
    manifest = store.manifest()
    if not store.report_path.exists():
        raise BqxError(f"run {store.run_id} has no report yet: `bqx report {store.run_id}` builds it")
    return manifest, store.report()


def compare_runs(run_a: RunStore, run_b: RunStore) -> RunComparison:
    """Return what changed from run_a to run_b (both with their reports written)."""
    manifest_a, report_a = finished(run_a)
    manifest_b, report_b = finished(run_b)
    return comparison(manifest_a, report_a, run_tables(run_a), manifest_b, report_b, run_tables(run_b))


def _verdicts(report: Report) -> dict[tuple[str, int], Confirmation]:
    """Return (pair, horizon) -> its held-out verdicts, for the pair-horizons evaluated on held-out rows."""
    return {
        (pair.pair, int(h)): result.confirmation
        for pair in report.ok_pairs
        for h, result in pair.horizons.items()
        if result.confirmation is not None
    }


def _why_not(feature: FeatureVerdict | None, verdict: Confirmation) -> str:
    return "not stable" if feature is None else why_unconfirmed(feature, verdict)


def _significant_cells(report: Report) -> set[tuple[str, int]]:
    return {(c.family, c.horizon) for c in (report.families.cells if report.families else []) if significant(c)}


def comparison(
    manifest_a: RunManifest,
    report_a: Report,
    tables_a: set[str],
    manifest_b: RunManifest,
    report_b: Report,
    tables_b: set[str],
) -> RunComparison:
    """Return what changed from run A to run B, from their manifests, reports and tables."""
    strip_tokens = tuple(manifest_b.settings.get("family_strip_tokens") or DEFAULT_STRIP_TOKENS)
    verdicts_a, verdicts_b = _verdicts(report_a), _verdicts(report_b)
    features = []
    for pair_horizon in sorted(verdicts_a.keys() & verdicts_b.keys()):
        verdict_a, verdict_b = verdicts_a[pair_horizon], verdicts_b[pair_horizon]
        in_a = {f.feature: f for f in verdict_a.features}
        in_b = {f.feature: f for f in verdict_b.features}
        for feature in sorted(in_a.keys() | in_b.keys()):
            a, b = in_a.get(feature), in_b.get(feature)
            confirmed_b = b is not None and b.confirmed
            if (a is not None and a.confirmed) == confirmed_b:
                continue
            features.append(
                FeatureChange(
                    pair=pair_horizon[0], horizon=pair_horizon[1], feature=feature,
                    family=feature_family(feature, strip_tokens),
                    change="confirmed" if confirmed_b else "no longer confirmed",
                    effect_a=a.effect if a else None, effect_b=b.effect if b else None,
                    why=_why_not(a, verdict_a) if confirmed_b else _why_not(b, verdict_b),
                )
            )  # fmt: skip
    significant_a, significant_b = _significant_cells(report_a), _significant_cells(report_b)
    return RunComparison(
        run_a=manifest_a.run_id,
        run_b=manifest_b.run_id,
        settings=[
            SettingChange(name=name, a=manifest_a.settings.get(name), b=manifest_b.settings.get(name))
            for name in sorted(manifest_a.settings.keys() | manifest_b.settings.keys())
            if manifest_a.settings.get(name) != manifest_b.settings.get(name)
        ],
        days_only_a=sorted(set(manifest_a.days) - set(manifest_b.days)),
        days_only_b=sorted(set(manifest_b.days) - set(manifest_a.days)),
        pairs_only_a=[p for p in manifest_a.pairs if p not in manifest_b.pairs],
        pairs_only_b=[p for p in manifest_b.pairs if p not in manifest_a.pairs],
        horizons_only_a=sorted(set(manifest_a.horizons) - set(manifest_b.horizons)),
        horizons_only_b=sorted(set(manifest_b.horizons) - set(manifest_a.horizons)),
        tables_only_a=sorted(tables_a - tables_b),
        tables_only_b=sorted(tables_b - tables_a),
        pair_horizons_compared=len(verdicts_a.keys() & verdicts_b.keys()),
        families=_family_changes(features, significant_a, significant_b),
        features=features,
    )


def _family_changes(
    features: list[FeatureChange], significant_a: set[tuple[str, int]], significant_b: set[tuple[str, int]]
) -> list[FamilyChange]:
    """Return the families whose confirmed pairs (a member confirmed there in one run, none in the
    other) or whose verdict across pairs changed, by family and horizon."""
    changed: dict[tuple[str, int], tuple[set[str], set[str]]] = {}
    by_pair: dict[tuple[str, int, str], set[str]] = {}
    for change in features:
        by_pair.setdefault((change.family, change.horizon, change.pair), set()).add(change.change)
    for (family, horizon, pair), changes in by_pair.items():
        if len(changes) == 1:  # a member swapped for another of its family changed nothing here
            gained, lost = changed.setdefault((family, horizon), (set(), set()))
            (gained if changes == {"confirmed"} else lost).add(pair)
    for cell in significant_a ^ significant_b:
        changed.setdefault(cell, (set(), set()))
    return [
        FamilyChange(
            family=family, horizon=horizon, confirmed_in=sorted(gained), no_longer_in=sorted(lost),
            significant_a=(family, horizon) in significant_a, significant_b=(family, horizon) in significant_b,
        )
        for (family, horizon), (gained, lost) in sorted(changed.items())
    ]  # fmt: skip


def _effect(value: float | None) -> str:
    return "not stable" if value is None else f"{value:+.4f}"


def _listed(values: list[Any]) -> str:
    return ", ".join(str(v) for v in values) or "-"


def input_lines(changes: RunComparison) -> list[str]:
    """Return what the two runs' inputs differ in, a line each (none when they are the same)."""
    lines = [f"  setting {s.name}: {s.a!r} -> {s.b!r}" for s in changes.settings]
    for what, only_a, only_b in changes.listed_differences():
        only = f"only in {changes.run_a}: {_listed(only_a)}; only in {changes.run_b}: {_listed(only_b)}"
        lines.append(f"  {what}: {only}")
    return lines


def comparison_lines(changes: RunComparison) -> list[str]:
    """Return the comparison as plain lines for a terminal."""
    lines = [f"{changes.run_a} -> {changes.run_b}"]
    inputs = input_lines(changes)
    lines.append("Inputs: the same settings, sampled days, pairs, horizons and tables" if not inputs else "Inputs:")
    lines += inputs
    lines.append(f"Families ({len(changes.families)} changed):")
    for family in changes.families:
        verdict = "" if family.significant_a == family.significant_b else (
            "; now holds across pairs" if family.significant_b else "; no longer holds across pairs"
        )  # fmt: skip
        gained = f"; confirmed in {_listed(family.confirmed_in)}" if family.confirmed_in else ""
        lost = f"; no longer in {_listed(family.no_longer_in)}" if family.no_longer_in else ""
        lines.append(f"  {family.family} h{family.horizon}{gained}{lost}{verdict}")
    lines.append(
        f"Features ({len(changes.features)} changed in {changes.pair_horizons_compared} pair-horizons compared):"
    )
    for feature in changes.features[:FEATURES_LISTED]:
        effects = f"effect {_effect(feature.effect_a)} -> {_effect(feature.effect_b)}"
        lines.append(
            f"  {feature.pair} h{feature.horizon} {feature.feature}: {feature.change} ({effects}; {feature.why})"
        )
    if len(changes.features) > FEATURES_LISTED:
        lines.append(f"  ... and {len(changes.features) - FEATURES_LISTED} more on the page")
    return lines


def render_comparison_html(changes: RunComparison) -> str:
    """Return the comparison as a small self-contained HTML page."""
    return HTML.get_template("compare.html").render(changes=changes)
