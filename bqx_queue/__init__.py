"""bqx-queue: test every BQX feature for every pair and horizon, one query per pair, on Celery."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bqx_queue.report.notebook import Run

__version__ = "0.1.0"


def open_run(run_id: str, runs_dir: Any = None) -> Run:
    """Return a finished run's answers as DataFrames (bqx_queue.report.notebook); imported when called, so
    `import bqx_queue` (every worker does) does not load pandas and the report."""
    from bqx_queue.report.notebook import open_run as open_notebook_run

    return open_notebook_run(run_id, runs_dir)
