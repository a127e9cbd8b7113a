"""report.md: the run report as Markdown, for a terminal, a notebook or a pull request. The
markup is templates/report.md; the environment escapes every value for Markdown (feature and
table names, errors and reasons come from the warehouse)."""

from __future__ import annotations

from typing import Any

from bqx_queue.report.templating import MARKDOWN


def render_markdown(data: dict[str, Any]) -> str:
    """Return report.md for a report (as written to report.json)."""
    run = data["run"]
    return MARKDOWN.get_template("report.md").render(
        report=data, run=run, totals=data["totals"], horizons=[str(h) for h in run["horizons"]]
    )
