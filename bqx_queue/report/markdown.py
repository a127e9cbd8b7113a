"""report.md: the run report as Markdown, for a terminal, a notebook or a pull request. The
markup is templates/report.md; the environment escapes every value for Markdown (feature and
table names, errors and reasons come from the warehouse)."""

from __future__ import annotations

from bqx_queue.domain import Report
from bqx_queue.report.answer import FAMILIES_LISTED, run_answer
from bqx_queue.report.templating import MARKDOWN


def render_markdown(report: Report) -> str:
    """Return report.md for a report."""
    run = report.run
    return MARKDOWN.get_template("report.md").render(
        report=report,
        run=run,
        totals=report.totals,
        horizons=[str(h) for h in run.horizons],
        answer=run_answer(report),
        families_listed=FAMILIES_LISTED,
    )
