"""The run's answer in a few lines: the families significant across pairs (k of N pairs per
horizon), the confirmed findings and the pairs they are in, the flagged horizons, and what the
numbers cover. report.html's first screen, the top of report.md and the last lines of
`bqx-enqueue --wait` and `bqx demo` all say this, so a researcher reads the same answer anywhere."""

from __future__ import annotations

from dataclasses import dataclass

from bqx_queue.domain import FamilyCell, Report

FAMILIES_LISTED = 12  # the terminal and report.md name at most this many families


@dataclass(frozen=True)
class FamilyAnswer:
    """A family that holds across pairs, with the horizons where it holds."""

    family: str
    n_pairs: int
    pairs_by_horizon: dict[int, int]  # horizon -> pairs in which a member is confirmed alone
    significant_horizons: list[int]

    def horizons_text(self) -> str:
        """Return "h15 3/28*, h45 5/28" (k of N pairs per horizon, * where significant)."""
        return ", ".join(
            f"h{h} {k}/{self.n_pairs}" + ("*" if h in self.significant_horizons else "")
            for h, k in sorted(self.pairs_by_horizon.items())
        )


@dataclass(frozen=True)
class RunAnswer:
    """What a run found, strongest family first."""

    families: list[FamilyAnswer]
    confirmed_findings: int
    pairs_with_findings: list[str]
    pairs_ok: int
    pairs: int
    flagged: list[str]  # "eurusd h60"
    stable_selections: int
    error_bound_sum: float | None
    coverage: str

    @property
    def findings_text(self) -> str:
        return (
            f"{self.confirmed_findings} confirmed findings in {len(self.pairs_with_findings)} of "
            f"{self.pairs} pairs (held-out rows)"
        )

    @property
    def stable_text(self) -> str:
        """Return the stable count with its error-bound sum, in words."""
        text = f"{self.stable_selections} stable selections"
        if self.error_bound_sum is None:
            return text
        return (
            f"{text}, of which up to {self.error_bound_sum:.1f} may be chance (the sum of the error bounds: "
            "in-sample selection only; the held-out test above is what confirms)"
        )


def significant(cell: FamilyCell) -> bool:
    """Return whether a family x horizon cell holds across pairs: by its pooled test, or by the
    count test in reports written before pooling."""
    return cell.significant if cell.pooled is None else cell.pooled.significant


def run_answer(report: Report) -> RunAnswer:
    """Return what the run found, from its report: the families found (one finding per family
    across its horizons, starred at the horizons it lists), or in reports written before findings
    the families with a significant cell."""
    families: dict[str, FamilyAnswer] = {}
    section = report.families
    cells = section.cells if section else []
    if section is not None and section.findings is not None:
        listed = {f.family: f.horizons for f in section.findings}
    else:
        listed = {}
        for c in cells:
            if significant(c):
                listed.setdefault(c.family, []).append(c.horizon)
    n_pairs = {c.family: c.n_pairs for c in cells}
    for family in listed:  # strongest first, as the findings (or the cells) are ordered
        families[family] = FamilyAnswer(family, n_pairs.get(family, len(report.run.pairs)), {}, [])
    for cell in cells:
        if cell.family in families:
            answer = families[cell.family]
            answer.pairs_by_horizon[cell.horizon] = cell.k
            if cell.horizon in listed[cell.family]:
                answer.significant_horizons.append(cell.horizon)
    confirmation = report.confirmation
    findings = confirmation.findings if confirmation else []
    run, totals = report.run, report.totals
    days = f"{run.days} sampled days of {run.source} {run.warehouse}"
    features = f"{totals.features_tested:,} features tested"
    return RunAnswer(
        families=list(families.values()),
        confirmed_findings=len(findings),
        pairs_with_findings=sorted({r.pair for r in findings}),
        pairs_ok=totals.pairs_ok,
        pairs=len(run.pairs),
        flagged=[f"{f.pair} h{f.horizon}" for f in confirmation.flagged_horizons] if confirmation else [],
        stable_selections=totals.stable_selections,
        error_bound_sum=totals.error_bound_sum,
        coverage=(
            f"{totals.pairs_ok} of {len(run.pairs)} pairs x {len(run.horizons)} horizons, {days}, {features}; "
            "confirmed: a held-out permutation effect above zero at its Holm level within its pair-horizon "
            "(family-wise alpha); families: pooled over pairs and horizons, Benjamini-Yekutieli FDR"
        ),
    )


def answer_lines(report: Report) -> list[str]:
    """Return the answer as a few plain lines for a terminal."""
    answer = run_answer(report)
    shown = answer.families[:FAMILIES_LISTED]
    lines = [f"Families that hold across pairs: {len(answer.families)}" + (":" if shown else "")]
    width = max((len(f.family) for f in shown), default=0)
    lines += [f"  {f.family:<{width}}  {f.horizons_text()}" for f in shown]
    if len(answer.families) > len(shown):
        lines.append(f"  ... and {len(answer.families) - len(shown)} more in the report")
    lines.append(f"Confirmed: {answer.findings_text}")
    flagged = f" ({', '.join(answer.flagged)})" if answer.flagged else ""
    lines.append(f"Flagged horizons: {len(answer.flagged)}{flagged}")
    lines.append(f"Stable: {answer.stable_text}")
    if answer.pairs_ok < answer.pairs:
        lines.append(f"Failed pairs: {answer.pairs - answer.pairs_ok} (see the report)")
    lines.append(f"Covers: {answer.coverage}")
    return lines
