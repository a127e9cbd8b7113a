"""report.html: the run report as one self-contained page (inline CSS, SVG and one small script,
no external file), for people, the answer first: the families that hold across pairs (k of N
pairs per horizon) and the confirmed findings on the first screen; then every pair one click away
(a pair x horizon heatmap whose cells open the pair's section: its confirmed and unconfirmed
features with effects and intervals, SHAP, substitutes, eras, data quality); the families table;
the shapes of nonlinear findings; and Operations at the end (cost, timeline, workers, approval).

The markup is templates/report.html (autoescaped); this module lays out its plots and groups the
report's rows by pair. The page reads without its script, which only sorts, filters and opens the
pair a link points at."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from markupsafe import Markup

from bqx_queue.domain import (
    EffectSize,
    EraRow,
    NonFinite,
    Report,
    ReportHorizon,
    ReportPair,
    RunManifest,
    SubstituteCluster,
    TableRows,
    UnconfirmedRow,
    VerdictRow,
)
from bqx_queue.report.answer import run_answer, significant
from bqx_queue.report.svg import FAILED_COLOUR, Bar, Series, Span, bar_chart, heatmap, line_chart, timeline
from bqx_queue.report.templating import HTML, anchor, shape_text

SHAP_FEATURES_PER_HORIZON = 8
DEPENDENCE_PLOTS_SHOWN = 60  # the page stays light; report.json keeps every curve
STABLE_FEATURES_SHOWN = 20
FAMILIES_SHOWN = 40  # families table rows: the family x horizon cells with the strongest evidence
ANSWER_FAMILIES = 12  # the first screen's heatmap: the significant families, then the next strongest


def pair_anchor(pair: str, horizon: int | str | None = None) -> str:
    """Return the id of a pair's section ("pair-eurusd") or of one of its horizons ("pair-eurusd-h15")."""
    return f"pair-{pair}" + (f"-h{horizon}" if horizon is not None else "")


def family_anchor(family: str, horizon: int) -> str:
    return f"family-{anchor(family)}-h{horizon}"


def shape_anchor(pair: str, horizon: int | str, feature: str) -> str:
    return f"shape-{pair}-h{horizon}-{anchor(feature)}"


def worker_label(pair: ReportPair) -> str:
    """Return who ran a pair: the Celery node name when the summary has it, else host; and pid."""
    who = pair.worker or pair.host or "?"
    return f"{who} pid {pair.pid}"


def cost_chart(report: Report, estimates: dict[str, float]) -> Markup:
    """Return the cost per pair: a bar for the actual cost, a tick for the producer's estimate."""
    bars = [
        Bar(
            p.pair,
            p.cost_usd,
            marker=estimates.get(p.pair),
            colour="#2f6fb3" if p.ok else FAILED_COLOUR,
            tooltip=f"{p.pair}: actual ${p.cost_usd:.6f}, {p.bytes_billed:,} bytes billed"
            + (f", estimate ${estimates[p.pair]:.6f}" if p.pair in estimates else ""),
        )
        for p in report.pairs
    ]
    return bar_chart(bars, "Cost per pair, USD (bar: actual; tick: estimate)", "${:,.4f}", "estimate")


def pairs_heatmap(report: Report) -> Markup:
    """Return the pairs x horizons heatmap of confirmed features (stable ones where a horizon has
    no held-out verdict), each cell's tooltip its evidence and its link the pair's findings there."""
    horizons = [str(h) for h in report.run.horizons]
    values: dict[tuple[str, str], float | None] = {}
    tips: dict[tuple[str, str], str] = {}
    links: dict[tuple[str, str], str] = {}
    for p in report.pairs:
        for h in horizons:
            result = p.horizons.get(h)
            key = (p.pair, f"h{h}")
            links[key] = "#" + pair_anchor(p.pair, h if result is not None else None)
            values[key] = None
            if result is not None:
                names = ", ".join(s.feature for s in result.stable[:6])
                tips[key] = (
                    f"{p.pair} h{h}: {result.n_stable} stable (AUC {result.metrics.auc:.3f} vs "
                    f"baseline {result.baseline.auc:.3f}; error bound {result.error_bound}) {names}"
                )
                verdict = result.confirmation
                values[key] = result.n_stable if verdict is None else len(verdict.confirmed)
                if verdict is not None:
                    tips[key] += f"; {len(verdict.confirmed)} confirmed on held-out rows"
                    tips[key] += f"; FLAGGED: {verdict.flag_reason}" if verdict.flagged else ""
            elif h in p.failed_horizons:
                tips[key] = f"{p.pair} h{h}: horizon failed: {p.failed_horizons[h]}"
            else:
                tips[key] = f"{p.pair} h{h}: no result ({p.status.value})"
    title = "Confirmed features per pair and horizon (a cell opens the pair's findings)"
    return heatmap([p.pair for p in report.pairs], [f"h{h}" for h in horizons], values, title, tips, links=links)


def families_heatmap(report: Report) -> Markup | None:
    """Return the family x horizon heatmap of k for the first screen: the families significant
    across pairs (outlined and starred: by the pooled test, or by the count test in reports written
    before it), then the next strongest up to ANSWER_FAMILIES rows; None when no family had a
    stable member. A cell links to its row of the families table."""
    section = report.families
    if section is None or not section.cells:
        return None
    shown = [f.family for f in run_answer(report).families][:ANSWER_FAMILIES]
    for cell in section.cells:
        if len(shown) >= ANSWER_FAMILIES:
            break
        if cell.family not in shown:
            shown.append(cell.family)
    in_table = {(c.family, f"h{c.horizon}") for c in section.cells[:FAMILIES_SHOWN]}
    columns = [f"h{h}" for h in report.run.horizons]
    values: dict[tuple[str, str], float | None] = {(f, c): 0 for f in shown for c in columns}
    tips: dict[tuple[str, str], str] = {(f, c): f"{f} {c}: stable in no pair" for f in shown for c in columns}
    marked = set()
    for cell in section.cells:
        key = (cell.family, f"h{cell.horizon}")
        if cell.family not in shown:
            continue
        values[key] = cell.k
        pooled = cell.pooled
        tips[key] = (
            f"{cell.family} h{cell.horizon}: confirmed alone in {cell.k} of {cell.n_pairs} pairs "
            f"({', '.join(cell.pairs)}); expected under the null {cell.expected_under_null:.2f}; "
            f"count p {cell.p_value:.3g}, BY q {cell.q_value:.3g}"
        )
        if pooled is not None:
            tips[key] += (
                f"; pooled effect over {len(pooled.pairs)} pairs {pooled.estimate:+.4f} "
                f"[{pooled.low:+.4f}, {pooled.high:+.4f}], positive in {len(pooled.positive)}; "
                f"pooled p {pooled.p_value:.3g}, BY q {pooled.q_value:.3g}"
            )
        if significant(cell):
            tips[key] += "; SIGNIFICANT"
            marked.add(key)
    links = {(family, column): "#" + family_anchor(family, int(column[1:])) for family, column in in_table}
    longest = max(len(f) for f in shown)
    return heatmap(shown, columns, values, "Pairs in which each family is confirmed alone (* significant across pairs)",
                   tips, marked=marked, left=min(360, 12 + 7 * longest), links=links)  # fmt: skip


def stable_across_chart(report: Report) -> Markup | None:
    """Return the features stable in most pair-horizons as bars (None when no feature was stable)."""
    rows = (report.features_across_pairs or [])[:STABLE_FEATURES_SHOWN]
    if not rows:
        return None
    possible = sum(len(p.horizons) for p in report.ok_pairs)
    bars = [
        Bar(r.feature, r.pair_horizons, tooltip=f"{r.feature}: stable in {r.pair_horizons} of {possible} pair-horizons")
        for r in rows
    ]
    title = f"Pair-horizons (of {possible}) in which each feature is stable"
    return bar_chart(bars, title, "{:,.0f}", width=760, integer=True)


def shap_by_horizon(report: Report) -> dict[str, list[tuple[str, float, int]]]:
    """Return horizon -> [(feature, mean |SHAP| over the ok pairs, pairs where it is in the top)],
    strongest first; a pair without the feature in its top list counts as 0."""
    result = {}
    for h in (str(h) for h in report.run.horizons):
        totals: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        pairs_with = 0
        for p in report.ok_pairs:
            horizon = p.horizons.get(h)
            if horizon is None:
                continue
            pairs_with += 1
            for entry in horizon.shap_top:
                totals[entry.feature] += entry.mean_abs_shap
                counts[entry.feature] += 1
        ranked = sorted(totals, key=lambda f: -totals[f])[:SHAP_FEATURES_PER_HORIZON]
        result[h] = [(f, totals[f] / max(pairs_with, 1), counts[f]) for f in ranked]
    return result


def shap_charts(report: Report) -> dict[str, Markup | None]:
    """Return horizon -> its mean |SHAP| bars (None when no model of the horizon was trained)."""
    charts: dict[str, Markup | None] = {}
    for h, ranked in shap_by_horizon(report).items():
        bars = [
            Bar(f, v, tooltip=f"{f}: mean |SHAP| {v:.4f} over pairs; in the top list of {n} pairs")
            for f, v, n in ranked
        ]
        charts[h] = bar_chart(bars, f"h{h}: mean |SHAP|", "{:,.3f}", width=520) if ranked else None
    return charts


def timeline_chart(report: Report) -> Markup | None:
    """Return a lane per worker process and a bar per pair task (None when no pair recorded its
    start and end)."""
    created_at = report.run.created_at
    spans = [
        Span(
            worker_label(p),
            p.pair,
            (p.started_at - created_at).total_seconds(),
            (p.finished_at - created_at).total_seconds(),
            not p.ok,
        )
        for p in report.pairs
        if p.started_at and p.finished_at
    ]
    if not spans:
        return None
    lanes = len({s.lane for s in spans})
    return timeline(spans, f"Pair tasks per worker process ({lanes} processes), seconds since the run was created")


def dependence_plots(report: Report) -> dict[str, Markup]:
    """Return a small plot per confirmed nonlinear feature by its id (shape_anchor): its held-out
    mean target per decile (for a pair, one line per side of the partner), pairs in order, then
    horizons; the first DEPENDENCE_PLOTS_SHOWN."""
    plots: dict[str, Markup] = {}
    for p in report.pairs:
        for horizon, result in p.horizons.items():
            for curve in result.dependence:
                if len(plots) == DEPENDENCE_PLOTS_SHOWN:
                    return plots
                title = f"{p.pair} h{horizon}: {curve.feature} ({shape_text(curve)})"
                series = [Series(label, values) for label, values in curve.series.items()]
                plot = line_chart(curve.x, series, title, width=max(300, 6 * len(title)))
                plots[shape_anchor(p.pair, horizon, curve.feature)] = plot
    return plots


@dataclass(frozen=True)
class HorizonView:
    """One horizon of a pair's section: its result (None when it failed) and the report's rows for it."""

    horizon: str
    result: ReportHorizon | None
    failed: str | None = None
    confirmed: list[VerdictRow] = field(default_factory=list)
    unconfirmed: list[UnconfirmedRow] = field(default_factory=list)
    effect: EffectSize | None = None
    eras: dict[str, EraRow] = field(default_factory=dict)  # confirmed feature -> its era frequencies
    substitutes: list[SubstituteCluster] = field(default_factory=list)


@dataclass(frozen=True)
class PairView:
    """A pair's section of the page: what the run found in it, horizon by horizon, and its data quality."""

    pair: ReportPair
    horizons: list[HorizonView]
    tables: list[TableRows]
    non_finite: list[NonFinite]

    @property
    def confirmed(self) -> int:
        return sum(len(h.confirmed) for h in self.horizons)

    @property
    def stable(self) -> int:
        return sum(h.result.n_stable for h in self.horizons if h.result is not None)

    @property
    def flagged(self) -> list[str]:
        return [h.horizon for h in self.horizons if h.effect is not None and h.effect.flagged]


def pair_views(report: Report) -> list[PairView]:
    """Return every pair's section, in the run's order, from the report's run-wide rows."""
    confirmation = report.confirmation
    effects = {(e.pair, str(e.horizon)): e for e in report.effect_sizes or []}
    keyed: dict[tuple[str, str], HorizonView] = {}
    views = []
    for p in report.pairs:
        horizons = []
        for h in (str(h) for h in report.run.horizons):
            if h in p.horizons or h in p.failed_horizons:
                view = HorizonView(h, p.horizons.get(h), p.failed_horizons.get(h), effect=effects.get((p.pair, h)))
                keyed[(p.pair, h)] = view
                horizons.append(view)
        quality = report.data_quality
        tables = [t for t in quality.tables if t.pair == p.pair] if quality else []
        non_finite = [c for c in quality.non_finite if c.pair == p.pair] if quality else []
        views.append(PairView(p, horizons, tables, non_finite))
    for row in confirmation.findings if confirmation else []:
        keyed[(row.pair, str(row.horizon))].confirmed.append(row)
    for unconfirmed in confirmation.unconfirmed if confirmation else []:
        keyed[(unconfirmed.pair, str(unconfirmed.horizon))].unconfirmed.append(unconfirmed)
    for era in report.eras.features if report.eras else []:
        keyed[(era.pair, str(era.horizon))].eras[era.feature] = era
    for cluster in report.substitutes or []:
        keyed[(cluster.pair, str(cluster.horizon))].substitutes.append(cluster)
    return views


def render_html(report: Report, manifest: RunManifest) -> str:
    """Return report.html for a report and its run manifest."""
    estimate = manifest.estimate  # the producer's, when the manifest has one
    per_pair_usd = estimate.per_pair_usd if estimate else {}
    plots = dependence_plots(report)
    return HTML.get_template("report.html").render(
        report=report,
        run=report.run,
        totals=report.totals,
        answer=run_answer(report),
        estimated_usd=estimate.cost_usd if estimate else None,
        per_pair_usd=per_pair_usd,
        worker_label=worker_label,
        families_shown=FAMILIES_SHOWN,
        family_anchor=family_anchor,
        pair_anchor=pair_anchor,
        shape_anchor=shape_anchor,
        cost_chart=cost_chart(report, per_pair_usd),
        pairs_heatmap=pairs_heatmap(report),
        pair_views=pair_views(report),
        families_heatmap=families_heatmap(report),
        stable_across_chart=stable_across_chart(report),
        shap_charts=shap_charts(report),
        timeline_chart=timeline_chart(report),
        dependence_plots=plots,
        dependence_plots_shown=DEPENDENCE_PLOTS_SHOWN,
    )
