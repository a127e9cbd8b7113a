"""report.html: the run report as one self-contained page (inline CSS and SVG, no script, no
external file), for people: run summary, cost per pair (estimate vs actual), stable features per
pair x horizon, features stable across pairs, SHAP top features per horizon, and a timeline of
pair tasks per worker process."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from html import escape
from typing import Any

from bqx_queue.report import html_families
from bqx_queue.report.estimate import cost_estimate
from bqx_queue.report.svg import FAILED_COLOUR, Bar, Span, bar_chart, heatmap, timeline

SHAP_FEATURES_PER_HORIZON = 8
STABLE_FEATURES_SHOWN = 20

CSS = """
body { font-family: 'DejaVu Sans', Helvetica, Arial, sans-serif; color: #1f2933; margin: 24px auto;
       max-width: 1100px; padding: 0 16px; background: #ffffff; line-height: 1.4; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 32px;
     border-bottom: 1px solid #e4e7eb; padding-bottom: 4px; }
.sub { color: #7b8794; margin-top: 0; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 16px 0; }
.card { border: 1px solid #e4e7eb; border-radius: 6px; padding: 8px 12px; min-width: 120px; }
.card b { display: block; font-size: 18px; } .card span { color: #7b8794; font-size: 12px; }
table { border-collapse: collapse; font-size: 12px; margin: 8px 0; }
th, td { border-bottom: 1px solid #e4e7eb; padding: 3px 8px; text-align: right; }
th { background: #f5f7fa; } td.l, th.l { text-align: left; }
.failed { color: #c0392b; } .ok { color: #2f7a46; }
.grid { display: flex; flex-wrap: wrap; gap: 18px; }
svg { max-width: 100%; height: auto; } code { font-size: 12px; }
.note { color: #7b8794; font-size: 12px; }
"""


def _card(value: str, label: str) -> str:
    return f"<div class='card'><b>{escape(value)}</b><span>{escape(label)}</span></div>"


def _gib(value: float) -> str:
    return f"{value / 1024**3:.2f}"


def _worker_label(pair: dict[str, Any]) -> str:
    """Return who ran a pair: the Celery node name when the summary has it, else host; and pid."""
    who = pair.get("worker") or pair.get("host") or "?"
    return f"{who} pid {pair.get('pid', '?')}"


def _summary(data: dict[str, Any], estimate_total: float | None) -> str:
    run, totals = data["run"], data["totals"]
    cost = f"${totals['cost_usd']:.4f}"
    cards = [
        _card(f"{totals['pairs_ok']} / {len(run['pairs'])}", "pairs ok"),
        _card(str(totals["pairs_failed"]), "pairs failed"),
        _card(
            f"{totals['queries']}",
            f"queries ({totals['queries'] / max(1, len(run['pairs'])):.1f} per pair)",
        ),
        _card(f"{_gib(totals['bytes_billed'])} GiB", "billed (BigQuery on-demand)"),
        _card(cost, "actual cost"),
        _card(f"${estimate_total:.4f}" if estimate_total is not None else "none", "estimated cost"),
        *(
            [
                _card(
                    f"{totals['extract_cache']['hits']} / ${totals['extract_cache']['saved_usd']:.4f} / "
                    f"{totals['extract_cache']['saved_s']:,.1f} s",
                    "extract cache hits / $ saved / time saved",
                )
            ]
            if totals.get("extract_cache")
            else []
        ),
        _card(f"{run['duration_s']:,.1f} s", "duration"),
        _card(f"{run['worker_count']} / {run['processes']}", "workers / processes that ran pairs"),
        _card(f"{totals['features_tested']:,}", "features tested"),
        _card(f"{totals['stable_selections']}", "stable selections"),
        *(
            [_card(f"{totals['error_bound_sum']:.1f}", "of them may be false (sum of error bounds)")]
            if "error_bound_sum" in totals
            else []
        ),
    ]
    workers = ", ".join(f"{name} ({slots})" for name, slots in run["workers"].items()) or "none recorded"
    return (
        f"<div class='cards'>{''.join(cards)}</div>"
        f"<p class='note'>Horizons {', '.join(map(str, run['horizons']))}; {run['days']} sampled days from "
        f"{escape(run['source'])} <code>{escape(run['warehouse'])}</code>; workers at enqueue: {escape(workers)}.</p>"
    )


def _cost_section(data: dict[str, Any], estimates: dict[str, float]) -> str:
    pairs = data["pairs"]
    bars = [
        Bar(
            p["pair"],
            p["cost_usd"],
            marker=estimates.get(p["pair"]),
            colour=FAILED_COLOUR if p["status"] != "ok" else "#2f6fb3",
            tooltip=f"{p['pair']}: actual ${p['cost_usd']:.6f}, {p['bytes_billed']:,} bytes billed"
            + (f", estimate ${estimates[p['pair']]:.6f}" if p["pair"] in estimates else ""),
        )
        for p in pairs
    ]
    chart = bar_chart(bars, "Cost per pair, USD (bar: actual; tick: estimate)", "${:,.4f}", "estimate")
    rows = []
    for p in pairs:
        estimate = estimates.get(p["pair"])
        status_class = "ok" if p["status"] == "ok" else "failed"
        rows.append(
            f"<tr><td class='l'>{escape(p['pair'])}</td><td class='l {status_class}'>{escape(p['status'])}</td>"
            f"<td>{'$' + format(estimate, '.4f') if estimate is not None else '-'}</td><td>${p['cost_usd']:.4f}</td>"
            f"<td>{_gib(p['bytes_billed'])}</td><td>{p['queries']}</td><td>{p.get('rows', 0):,}</td>"
            f"<td>{p.get('features_tested', 0):,}</td><td>{p.get('wall_s', 0):,.1f}</td>"
            f"<td>{_gib(p.get('peak_rss_bytes', 0))}</td><td class='l'>{escape(_worker_label(p))}</td>"
            f"<td class='l failed'>{escape(p.get('error') or '')}</td></tr>"
        )
    head = (
        "<tr><th class='l'>pair</th><th class='l'>status</th><th>estimate $</th><th>actual $</th><th>GiB billed</th>"
        "<th>queries</th><th>rows</th><th>features</th><th>wall s</th><th>peak RSS GiB</th><th class='l'>worker</th>"
        "<th class='l'>error</th></tr>"
    )
    note = "" if estimates else "<p class='note'>The run manifest has no cost estimate: actual cost only.</p>"
    return f"{chart}{note}<table>{head}{''.join(rows)}</table>"


def _heatmap_section(data: dict[str, Any]) -> str:
    horizons = [str(h) for h in data["run"]["horizons"]]
    values: dict[tuple[str, str], float | None] = {}
    tips: dict[tuple[str, str], str] = {}
    for p in data["pairs"]:
        for h in horizons:
            result = p["horizons"].get(h)
            key = (p["pair"], f"h{h}")
            values[key] = result["n_stable"] if result else None
            if result:
                names = ", ".join(s["feature"] for s in result["stable"][:6])
                tips[key] = (
                    f"{p['pair']} h{h}: {result['n_stable']} stable (AUC {result['metrics']['auc']:.3f} vs "
                    f"baseline {result['baseline']['auc']:.3f}; error bound {result['error_bound']}) {names}"
                )
                if "confirmation" in result:
                    verdict = result["confirmation"]
                    tips[key] += f"; {len(verdict['confirmed'])} confirmed on held-out rows"
                    tips[key] += f"; FLAGGED: {verdict['flag_reason']}" if verdict["flagged"] else ""
            elif h in p.get("failed_horizons", {}):
                tips[key] = f"{p['pair']} h{h}: horizon failed: {p['failed_horizons'][h]}"
            else:
                tips[key] = f"{p['pair']} h{h}: no result ({p['status']})"
    return heatmap([p["pair"] for p in data["pairs"]], [f"h{h}" for h in horizons], values,
                   "Stable features per pair and horizon", tips)  # fmt: skip


def _stable_across_section(data: dict[str, Any]) -> str:
    rows = data.get("features_across_pairs", [])[:STABLE_FEATURES_SHOWN]
    possible = sum(len(p["horizons"]) for p in data["pairs"] if p["status"] == "ok")
    if not rows:
        return "<p class='note'>No feature was stable in any pair and horizon.</p>"
    bars = [Bar(r["feature"], r["pair_horizons"], tooltip=f"{r['feature']}: stable in {r['pair_horizons']} of {possible} pair-horizons")
            for r in rows]  # fmt: skip
    return bar_chart(
        bars,
        f"Pair-horizons (of {possible}) in which each feature is stable",
        "{:,.0f}",
        width=760,
        integer=True,
    )


def shap_by_horizon(data: dict[str, Any]) -> dict[str, list[tuple[str, float, int]]]:
    """Return horizon -> [(feature, mean |SHAP| over the ok pairs, pairs where it is in the top)],
    strongest first; a pair without the feature in its top list counts as 0."""
    ok = [p for p in data["pairs"] if p["status"] == "ok"]
    result = {}
    for h in (str(h) for h in data["run"]["horizons"]):
        totals: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        pairs_with = 0
        for p in ok:
            top = (p["horizons"].get(h) or {}).get("shap_top") or []
            pairs_with += bool(p["horizons"].get(h))
            for entry in top:
                totals[entry["feature"]] += entry["mean_abs_shap"]
                counts[entry["feature"]] += 1
        ranked = sorted(totals, key=lambda f: -totals[f])[:SHAP_FEATURES_PER_HORIZON]
        result[h] = [(f, totals[f] / max(pairs_with, 1), counts[f]) for f in ranked]
    return result


def _shap_section(data: dict[str, Any]) -> str:
    charts = []
    for h, ranked in shap_by_horizon(data).items():
        if not ranked:
            charts.append(f"<p class='note'>h{escape(h)}: no SHAP values (no model was trained).</p>")
            continue
        bars = [
            Bar(f, v, tooltip=f"{f}: mean |SHAP| {v:.4f} over pairs; in the top list of {n} pairs")
            for f, v, n in ranked
        ]
        charts.append(bar_chart(bars, f"h{h}: mean |SHAP|", "{:,.3f}", width=520))
    return f"<div class='grid'>{''.join(charts)}</div>"


def _timeline_section(data: dict[str, Any], created_at: float) -> str:
    spans = [
        Span(
            _worker_label(p),
            p["pair"],
            p["started_at"] - created_at,
            p["finished_at"] - created_at,
            p["status"] != "ok",
        )
        for p in data["pairs"]
        if p.get("started_at") and p.get("finished_at")
    ]
    if not spans:
        return "<p class='note'>No pair recorded when it started and ended.</p>"
    lanes = len({s.lane for s in spans})
    chart = timeline(
        spans,
        f"Pair tasks per worker process ({lanes} processes), seconds since the run was created",
    )
    return chart


def _data_quality_section(data: dict[str, Any]) -> str:
    """Return what the warehouse's hazards did: repeated timestamps and missing minutes per table,
    +/-inf values, missing table families and failed horizons."""
    quality = data.get("data_quality")
    if quality is None:
        return "<p class='note'>This report was written before data-quality counts were recorded.</p>"
    parts = [f"<p class='note'>Repeated timestamps are resolved to {escape(quality['duplicate_rule'])}.</p>"]
    if quality["tables"]:
        head = (
            "<tr><th class='l'>pair</th><th class='l'>table</th><th>repeated timestamps</th><th>rows dropped</th>"
            "<th>minutes without a row</th></tr>"
        )
        rows = "".join(
            f"<tr><td class='l'>{escape(t['pair'])}</td><td class='l'><code>{escape(t['table'])}</code></td>"
            f"<td>{t['repeated_timestamps']:,}</td><td>{t['rows_dropped']:,}</td><td>{t['rows_missing']:,}</td></tr>"
            for t in quality["tables"]
        )
        parts.append(f"<table class='quality'>{head}{rows}</table>")
    else:
        parts.append("<p>No table repeats a timestamp or lacks a minute of its pair's targets.</p>")
    lists = [
        ("+/-inf values read as NULL", [f"{escape(c['pair'])} <code>{escape(c['column'])}</code>: {c['values']:,}"
                                        for c in quality["non_finite"]]),
        ("Table families other pairs have and these lack (analysed with the tables they have)",
         [f"{escape(m['pair'])}: {escape(', '.join(m['families']))}" for m in quality["missing_families"]]),
        ("Failed horizons (the pair's other horizons went on)",
         [f"{escape(f['pair'])} h{f['horizon']}: {escape(f['error'])}" for f in quality["failed_horizons"]]),
    ]  # fmt: skip
    for title, items in lists:
        if items:
            parts.append(f"<p>{escape(title)}:</p><ul>{''.join(f'<li>{item}</li>' for item in items)}</ul>")
    return "".join(parts)


def _verdict_table(rows: list[dict[str, Any]], with_why: bool) -> str:
    head = (
        "<tr><th class='l'>pair</th><th>horizon</th><th class='l'>feature</th><th>frequency</th>"
        "<th>held-out effect on log loss</th><th>95% CI</th><th>lower bound</th><th>level (alpha/k)</th>"
        + ("<th class='l'>why not confirmed</th>" if with_why else "")
        + "</tr>"
    )
    body = "".join(
        f"<tr><td class='l'>{escape(r['pair'])}</td><td>h{r['horizon']}</td><td class='l'><code>{escape(r['feature'])}"
        f"</code></td><td>{r['frequency']:.2f}</td><td>{r['effect']:+.4f}</td>"
        f"<td>{r['effect_low']:+.4f} to {r['effect_high']:+.4f}</td><td>{r['lower_bound']:+.4f}</td>"
        f"<td>{r['level']:.4g} (k={r['k']})</td>"
        + (f"<td class='l'>{escape(r['why'])}</td>" if with_why else "")
        + "</tr>"
        for r in rows
    )
    return f"<table>{head}{body}</table>"


def _confirmation_section(data: dict[str, Any]) -> str:
    """Return confirmed findings, stable features held-out rows did not confirm (with their
    evidence) and flagged horizons; empty for a report written before held-out verdicts."""
    section = data.get("confirmation")
    if section is None:
        return "<p class='note'>This run has no held-out verdicts.</p>"
    parts = [f"<p class='note'>{escape(section['note'])}</p>", "<h3>Confirmed findings</h3>"]
    parts.append(
        _verdict_table(section["findings"], with_why=False)
        if section["findings"]
        else "<p>No stable feature was confirmed on held-out rows.</p>"
    )
    parts.append("<h3>Stable but not confirmed</h3>")
    parts.append(
        _verdict_table(section["unconfirmed"], with_why=True)
        if section["unconfirmed"]
        else "<p>Every stable feature was confirmed.</p>"
    )
    if section["flagged_horizons"]:
        items = "".join(
            f"<li><b>FLAGGED</b> {escape(f['pair'])} h{f['horizon']}: {escape(f['reason'])}</li>"
            for f in section["flagged_horizons"]
        )
        parts.append(
            f"<h3>Flagged horizons: worse than the constant baseline on held-out rows</h3><ul class='failed'>{items}</ul>"
        )
    return "".join(parts)


def _failed_section(data: dict[str, Any]) -> str:
    failed = [p for p in data["pairs"] if p["status"] != "ok"]
    if not failed:
        return ""
    items = "".join(f"<li><b>{escape(p['pair'])}</b>: {escape(p.get('error') or '')}</li>" for p in failed)
    return f"<h2>Failed pairs</h2><ul class='failed'>{items}</ul>"


def render_html(data: dict[str, Any], manifest: dict[str, Any]) -> str:
    """Return report.html for a report (as written to report.json) and its run manifest."""
    run = data["run"]
    estimate = cost_estimate(manifest)
    created_at = datetime.fromisoformat(run["created_at"]).timestamp()
    sections = [
        ("Run", _summary(data, estimate.total_usd)),
        ("Cost per pair: estimate and actual", _cost_section(data, estimate.per_pair_usd)),
        ("Data quality", _data_quality_section(data)),
        ("Stable features: pairs x horizons", _heatmap_section(data)),
        ("Held-out confirmation: findings, unconfirmed, flagged horizons", _confirmation_section(data)),
        ("Feature families across pairs", html_families.families_section(data)),
        ("Effect sizes per pair and horizon", html_families.effect_sizes_section(data)),
        ("Substitutes: stable features clustered by correlation", html_families.substitutes_section(data)),
        ("Eras: confirmed features per era", html_families.eras_section(data)),
        ("Approval and pilot projection", html_families.approval_section(data)),
        ("Features stable across most pairs and horizons", _stable_across_section(data)),
        ("SHAP: top features per horizon", _shap_section(data)),
        ("Timeline: pair tasks per worker process", _timeline_section(data, created_at)),
    ]
    body = "".join(f"<section><h2>{escape(title)}</h2>{html}</section>" for title, html in sections)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>bqx-queue run {escape(run['run_id'])}</title><style>{CSS}</style></head><body>"
        f"<h1>bqx-queue run {escape(run['run_id'])}</h1>"
        f"<p class='sub'>created {escape(run['created_at'])}; {len(run['pairs'])} pairs x {len(run['horizons'])} horizons"
        " &middot; the feature ledger (every feature x horizon) is ledger.parquet beside this page</p>"
        f"{body}{_failed_section(data)}</body></html>\n"
    )
