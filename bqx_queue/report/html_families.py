"""report.html's answers across pairs: the family x horizon heatmap of k with significant cells
marked, the run's error accounting, substitutes, era frequencies, effect sizes per pair x
horizon, and the approval and pilot projection (html.py places them on the page)."""

from __future__ import annotations

from html import escape
from typing import Any

from bqx_queue.report.families import era_frequencies_text
from bqx_queue.report.svg import heatmap

FAMILIES_SHOWN = 40  # heatmap rows: the families with the smallest p-values


def _interval(value: dict[str, float], signed: bool = False) -> str:
    form = "+.4f" if signed else ".3f"
    return f"{value['estimate']:{form}} <span class='note'>[{value['low']:{form}}, {value['high']:{form}}]</span>"


def families_section(data: dict[str, Any]) -> str:
    """Return the family x horizon heatmap of k (significant cells outlined and starred) and the
    table of the strongest cells."""
    section = data.get("families")
    if section is None:
        return "<p class='note'>This report was written before feature families were counted.</p>"
    accounting = data.get("error_accounting") or {}
    parts = [f"<p class='note'>{escape(section['note'])}</p>"]
    if accounting:
        parts.append(
            f"<p><b>Error accounting:</b> {accounting['stable_selections']} stable selections over "
            f"{accounting['pair_horizons']} pair-horizons; up to {accounting['error_bound_sum']:.1f} of them may be "
            "false (the sum of the pair-horizons' error bounds).</p>"
        )
    parts.append(
        f"<p>{section['families']} families x {len(data['run']['horizons'])} horizons = {section['tests']} tests over "
        f"{section['pairs']} pairs; <b>{section['significant']} significant</b> at FDR {section['fdr_level']} "
        "(Benjamini-Yekutieli).</p>"
    )
    cells = section["cells"]
    if not cells:
        return "".join(parts) + "<p>No family was confirmed in any pair.</p>"
    shown: list[str] = []
    for cell in cells:
        if cell["family"] not in shown:
            shown.append(cell["family"])
    shown = shown[:FAMILIES_SHOWN]
    columns = [f"h{h}" for h in data["run"]["horizons"]]
    values: dict[tuple[str, str], float | None] = {(f, c): 0 for f in shown for c in columns}
    tips: dict[tuple[str, str], str] = {(f, c): f"{f} {c}: confirmed in no pair" for f in shown for c in columns}
    marked = set()
    for cell in cells:
        key = (cell["family"], f"h{cell['horizon']}")
        if cell["family"] not in shown:
            continue
        values[key] = cell["k"]
        tips[key] = (
            f"{cell['family']} h{cell['horizon']}: confirmed in {cell['k']} of {cell['n_pairs']} pairs "
            f"({', '.join(cell['pairs'])}); expected under the null {cell['expected_under_null']:.2f}; "
            f"p {cell['p_value']:.3g}, BY q {cell['q_value']:.3g}" + ("; SIGNIFICANT" if cell["significant"] else "")
        )
        if cell["significant"]:
            marked.add(key)
    longest = max(len(f) for f in shown)
    parts.append(
        heatmap(
            shown,
            columns,
            values,
            "Pairs in which each family is confirmed (* significant at the FDR level)",
            tips,
            marked=marked,
            left=min(360, 12 + 7 * longest),
        )  # fmt: skip
    )
    head = (
        "<tr><th class='l'>family</th><th>horizon</th><th>k of N pairs</th><th>expected under null</th>"
        "<th>p-value</th><th>BY q</th><th class='l'>significant</th><th class='l'>pairs</th></tr>"
    )
    rows = "".join(
        f"<tr><td class='l'><code>{escape(c['family'])}</code></td><td>h{c['horizon']}</td>"
        f"<td>{c['k']} of {c['n_pairs']}</td><td>{c['expected_under_null']:.3f}</td><td>{c['p_value']:.3g}</td>"
        f"<td>{c['q_value']:.3g}</td><td class='l {'ok' if c['significant'] else ''}'>"
        f"{'yes' if c['significant'] else 'no'}</td><td class='l'>{escape(', '.join(c['pairs']))}</td></tr>"
        for c in cells[:FAMILIES_SHOWN]
    )
    parts.append(f"<table class='families'>{head}{rows}</table>")
    return "".join(parts)


def substitutes_section(data: dict[str, Any]) -> str:
    clusters = data.get("substitutes")
    if clusters is None:
        return "<p class='note'>This report was written before substitutes were clustered.</p>"
    if not clusters:
        return "<p>No two stable features of a pair-horizon are correlated above the substitute level.</p>"
    items = "".join(
        f"<li>{escape(c['pair'])} h{c['horizon']} (|corr| &ge; {c['level']}): "
        + ", ".join(f"<code>{escape(m)}</code>" for m in c["members"])
        + "</li>"
        for c in clusters
    )
    return f"<p class='note'>A cluster counts once in the family counts.</p><ul>{items}</ul>"


def eras_section(data: dict[str, Any]) -> str:
    eras = data.get("eras")
    if eras is None:
        return "<p class='note'>This report was written before era frequencies were computed.</p>"
    parts = [f"<p class='note'>{escape(eras['note'])}</p>"]
    if not eras["features"]:
        return "".join(parts) + "<p>No confirmed feature, so no era frequencies.</p>"
    rows = "".join(
        f"<tr><td class='l'>{escape(e['pair'])}</td><td>h{e['horizon']}</td><td class='l'><code>"
        f"{escape(e['feature'])}</code></td><td class='l'>"
        + escape(era_frequencies_text(e))
        + f"</td><td class='l {'failed' if e['era_dependent'] else 'ok'}'>"
        + (f"era-dependent ({escape(', '.join(e['collapsed_eras']))})" if e["era_dependent"] else "held in every era")
        + "</td></tr>"
        for e in eras["features"]
    )
    head = (
        "<tr><th class='l'>pair</th><th>horizon</th><th class='l'>feature</th><th class='l'>frequency per era</th>"
        "<th class='l'>verdict</th></tr>"
    )
    return "".join(parts) + f"<table>{head}{rows}</table>"


def effect_sizes_section(data: dict[str, Any]) -> str:
    sizes = data.get("effect_sizes")
    if not sizes:
        return "<p class='note'>No held-out effect sizes in this report.</p>"
    rows = "".join(
        f"<tr><td class='l'>{escape(e['pair'])}</td><td>h{e['horizon']}</td><td>{_interval(e['auc'])}</td>"
        f"<td>{_interval(e['log_loss_gain'], True)}</td>"
        f"<td class='l failed'>{'FLAGGED' if e['flagged'] else ''}</td></tr>"
        for e in sizes
    )
    head = (
        "<tr><th class='l'>pair</th><th>horizon</th><th>held-out AUC [95% CI]</th>"
        "<th>log-loss gain over baseline [95% CI]</th><th class='l'></th></tr>"
    )
    return (
        "<p class='note'>Held-out walk-forward folds; 95% circular block-bootstrap intervals (the constant "
        f"baseline has AUC 0.5 and gain 0).</p><table>{head}{rows}</table>"
    )


def approval_section(data: dict[str, Any]) -> str:
    """Return who approved the plan the run ran, and a one-pair run's projection of the full run."""
    parts = []
    approved = data.get("approval")
    if approved:
        parts.append(
            f"<p>Ran plan <code>{escape(approved['path'])}</code> written {escape(approved['written_at'])}, "
            f"<b>approved by {escape(approved['approved_by'])}</b> at {escape(approved['approved_at'])}; catalog, "
            "sampled days and settings matched the plan when it was enqueued.</p>"
        )
    else:
        parts.append("<p class='note'>This run was not enqueued from an approved plan (bqx-enqueue --plan).</p>")
    pilot = data.get("pilot")
    if pilot:
        measured, projected = pilot["measured"], pilot["projected"]
        parts.append(
            "<table><tr><th class='l'></th><th>bytes billed</th><th>$</th><th>wall s</th><th class='l'>at</th></tr>"
            f"<tr><td class='l'>measured: {escape(pilot['pair'])}</td><td>{measured['bytes_billed']:,}</td>"
            f"<td>${measured['cost_usd']:.4f}</td><td>{measured['wall_s']:,.1f}</td>"
            f"<td class='l'>{measured['features_tested']:,} features</td></tr>"
            f"<tr><td class='l'>projected: {projected['pairs']} pairs</td><td>{projected['bytes_billed']:,}</td>"
            f"<td>${projected['cost_usd']:.4f}</td><td>{projected['wall_s']:,.0f}</td>"
            f"<td class='l'>{projected['slots']} slots, {projected['waves']} waves</td></tr></table>"
            f"<p class='note'>{escape(pilot['note'])}</p>"
        )
    return "".join(parts)
