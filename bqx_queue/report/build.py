"""The run report: report.json (checked against the shipped JSON Schema), report.md, report.html,
the feature ledger (every tested feature x horizon) gathered from every pair's artifacts, and
feature_sets.json (what a training job reads; checked against its schema)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd

from bqx_queue.artifacts import RunStore
from bqx_queue.config import Settings
from bqx_queue.domain import (
    DataQuality,
    ExtractCacheSummary,
    FailedHorizonRow,
    FeatureAcrossPairs,
    MissingFamilies,
    PairStatus,
    PairSummary,
    Report,
    ReportPair,
    RunManifest,
    RunSection,
    SharedCost,
    Totals,
)
from bqx_queue.report import confirmation, families, pilot
from bqx_queue.report.feature_sets import export_text, feature_sets, feature_sets_schema
from bqx_queue.report.html import render_html
from bqx_queue.report.markdown import render_markdown
from bqx_queue.warehouse.sql import DUPLICATE_RULE

# reports of runs whose manifest predates the across-pair settings read the defaults
DEFAULT_STRIP_TOKENS = Settings.model_fields["family_strip_tokens"].default
DEFAULT_FDR = Settings.model_fields["family_fdr"].default
DEFAULT_DRAWS = Settings.model_fields["confirmation_draws"].default
DEFAULT_SEED = Settings.model_fields["seed"].default
DEFAULT_POOLED_UNIT = Settings.model_fields["pooled_unit"].default


def report_schema() -> dict[str, Any]:
    """Return the shipped JSON Schema of report.json (generated from models.Report)."""
    return json.loads(resources.files("bqx_queue.report").joinpath("report.schema.json").read_text())


def _cache_total(summaries: list[ExtractCacheSummary | None]) -> ExtractCacheSummary:
    """Return the sum of extract-cache summaries (pairs and shared tables of a run)."""
    kept = [summary for summary in summaries if summary is not None]
    return ExtractCacheSummary(
        hits=sum(s.hits for s in kept),
        misses=sum(s.misses for s in kept),
        saved_bytes_billed=sum(s.saved_bytes_billed for s in kept),
        saved_usd=round(sum(s.saved_usd for s in kept), 6),
        saved_s=round(sum(s.saved_s for s in kept), 3),
    )


def _shared_tables_cost(store: RunStore) -> SharedCost:
    """Return what the run's once-per-run shared-table queries cost (BigQuery runs only)."""
    if not store.shared_index_path.exists():
        return SharedCost(queries=0, tables=0, bytes_processed=0, bytes_billed=0, cost_usd=0)
    data = store.shared_index()
    return SharedCost(
        queries=data.queries_sent if data.queries_sent is not None else data.queries,  # a cached extract sent none
        tables=data.tables,
        bytes_processed=data.bytes_processed,
        bytes_billed=data.bytes_billed,
        cost_usd=data.cost_usd,
        extract_cache=data.extract_cache,
    )


def _unrecorded(pair: str) -> PairSummary:
    return PairSummary(pair=pair, status=PairStatus.FAILED, error="no result was recorded for this pair")


def report_data(store: RunStore) -> Report:
    """Return the report from the run's manifest and pair artifacts."""
    manifest = store.manifest()
    summaries = store.pair_summaries()
    shared = _shared_tables_cost(store)
    missing = [p for p in manifest.pairs if p not in summaries]
    damaged = [p for p in manifest.pairs if p in summaries and summaries[p].status is PairStatus.DAMAGED]
    pairs = [ReportPair.of(summaries.get(pair) or _unrecorded(pair)) for pair in manifest.pairs]
    ok = [p for p in pairs if p.ok]
    ends = [p.finished_at for p in pairs if p.finished_at]
    finished = max(ends) if ends else datetime.now(UTC)
    workers = manifest.workers or {}
    selected = Counter(s.feature for p in ok for h in p.horizons.values() for s in h.stable)
    held_out = confirmation.confirmation_section(ok)
    confirmed = Counter(r.feature for r in held_out.findings)
    horizons = [h for p in ok for h in p.horizons.values()]
    return Report(
        run=RunSection(
            run_id=manifest.run_id,
            created_at=manifest.created_at,
            duration_s=round(max(0.0, (finished - manifest.created_at).total_seconds()), 3),
            pairs=manifest.pairs,
            horizons=manifest.horizons,
            days=len(manifest.days),
            warehouse=manifest.warehouse,
            source=manifest.source,
            workers=workers,
            worker_count=len(workers),
            concurrency=manifest.slots,
            processes=len({(p.host, p.pid) for p in ok}),
            missing_pairs=missing,
            damaged_pairs=damaged or None,
        ),
        totals=Totals(
            pairs_ok=len(ok),
            pairs_failed=len(pairs) - len(ok),
            queries=sum(p.queries for p in pairs) + shared.queries,
            bytes_processed=sum(p.bytes_processed or 0 for p in pairs) + shared.bytes_processed,
            bytes_billed=sum(p.bytes_billed for p in pairs) + shared.bytes_billed,
            cost_usd=round(sum(p.cost_usd for p in pairs) + shared.cost_usd, 6),
            features_tested=sum(p.features_tested or 0 for p in pairs),
            stable_selections=sum(h.n_stable for h in horizons),
            # the MB bounds summed over pair-horizons: up to this many stable selections are expected false
            error_bound_sum=round(sum(h.error_bound for h in horizons), 4),
            confirmed_findings=len(held_out.findings),
            flagged_horizons=len(held_out.flagged_horizons),
            extract_cache=_cache_total([p.extract_cache for p in pairs] + [shared.extract_cache]),
        ),
        pairs=pairs,
        shared=shared,
        features_across_pairs=[
            FeatureAcrossPairs(feature=f, pair_horizons=n, confirmed_pair_horizons=confirmed[f])
            for f, n in selected.most_common(50)
        ],
        confirmation=held_out,
        data_quality=data_quality(pairs),
        **across_pairs(ok, manifest),
    )


def across_pairs(ok: list[ReportPair], manifest: RunManifest) -> dict[str, Any]:
    """Return the report's answers across pairs: error accounting, families, substitutes, eras,
    effect sizes, the pilot's projection (a one-pair run) and the plan's approval."""
    settings = manifest.settings
    strip_tokens = tuple(settings.get("family_strip_tokens") or DEFAULT_STRIP_TOKENS)
    entries = [p.model_dump(mode="json") for p in ok]  # the section builders read report.json's entries
    return {
        "error_accounting": families.error_accounting(entries),
        "families": families.families_section(
            entries,
            list(manifest.horizons),
            strip_tokens,
            float(settings.get("family_fdr", DEFAULT_FDR)),
            int(settings.get("confirmation_draws", DEFAULT_DRAWS)),
            int(settings.get("seed", DEFAULT_SEED)),
            settings.get("pooled_unit", DEFAULT_POOLED_UNIT),
        ),
        "substitutes": families.substitutes_section(entries),
        "eras": families.eras_section(entries),
        "effect_sizes": families.effect_sizes(entries),
        "pilot": pilot.pilot_projection(ok, manifest),
        "approval": manifest.plan,
    }


def data_quality(pairs: list[ReportPair]) -> DataQuality:
    """Return the run's data-quality section: what each pair's warehouse hazards did."""
    quality = {p.pair: p.data_quality for p in pairs if p.data_quality is not None}
    return DataQuality(
        duplicate_rule=DUPLICATE_RULE,
        tables=[table.model_copy(update={"pair": pair}) for pair, q in quality.items() for table in q.tables],
        non_finite=[column.model_copy(update={"pair": pair}) for pair, q in quality.items() for column in q.non_finite],
        missing_families=[
            MissingFamilies(pair=pair, families=q.missing_families) for pair, q in quality.items() if q.missing_families
        ],
        failed_horizons=[
            FailedHorizonRow(pair=p.pair, horizon=int(h), error=error)
            for p in pairs
            for h, error in p.failed_horizons.items()
        ],
    )


def write_report(store: RunStore) -> Path:
    """Write report.json, report.md, report.html, ledger.parquet and feature_sets.json; return the
    report.json path.

    report.json is written last: its presence means the run's report is complete."""
    report = report_data(store)
    data = report.model_dump(mode="json")
    jsonschema.validate(data, report_schema())
    manifest = store.manifest()
    summaries = store.pair_summaries()  # checked: a damaged pair's ledger is not read
    ledgers = [store.ledger(summaries[p.pair]) for p in report.pairs if p.ok]
    if ledgers:
        strip_tokens = tuple(manifest.settings.get("family_strip_tokens") or DEFAULT_STRIP_TOKENS)
        ledger = families.ledger_columns(pd.concat(ledgers, ignore_index=True), data["pairs"], strip_tokens)
        store.write_parquet(store.root / "ledger.parquet", ledger)
    sets = feature_sets(report, manifest)
    jsonschema.validate(sets.model_dump(mode="json"), feature_sets_schema())
    store.write_text(store.root / "feature_sets.json", export_text(sets, "json"))
    store.write_text(store.root / "report.md", render_markdown(report))
    store.write_text(store.root / "report.html", render_html(report, manifest))
    store.write_report(report)
    return store.report_path
