"""The Celery tasks, each a call into plain functions: one delivery of a pair
(bqx_queue.celery.redelivery), and the run's report (bqx_queue.runner.run), which a run gets whatever happened
to its pairs (README, "Failure modes")."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task

from bqx_queue.artifacts import RunStore
from bqx_queue.celery.application import app
from bqx_queue.celery.redelivery import deliver_pair, failure_reason, record_failure
from bqx_queue.config import load_settings, run_settings
from bqx_queue.domain import BqxError
from bqx_queue.runner import finish_run

log = logging.getLogger(__name__)

# How long a report built after a chord error waits for the failed pair's own failure record.
ARTIFACT_GRACE_S = 10.0
# How often a report that fired before every pair had an artifact looks again.
REPORT_RETRY_S = 5


class PairTask(Task):
    """process_pair's class: a pair that Celery itself failed (hard time limit, a broker error
    before the analysis) still gets a failed summary naming the reason."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        run_id = kwargs.get("run_id", args[0] if args else None)
        pair = kwargs.get("pair", args[1] if len(args) > 1 else None)
        if not run_id or not pair:
            return
        try:
            settings = load_settings()
            record_failure(RunStore(settings.runs_dir, run_id), pair, failure_reason(exc, settings.task_time_limit_s))
        except (OSError, BqxError):
            log.exception("could not record the failure of a pair", extra={"run": run_id, "pair": pair})


@app.task(base=PairTask, name="bqx.process_pair", acks_late=True, reject_on_worker_lost=True)
def process_pair(run_id: str, pair: str) -> dict[str, Any]:
    """Analyse one pair of a run with the run's settings; returns its small message (the
    artifacts go to the run folder)."""
    host = load_settings()
    store = RunStore(host.runs_dir, run_id)
    return deliver_pair(store, pair, run_settings(store.manifest().settings, host)).model_dump(mode="json")


@app.task(bind=True, name="bqx.build_report", max_retries=None)
def build_report(self: Task, results: list[dict[str, Any]], run_id: str, chord_error: str | None = None) -> str:
    """Chord callback: write the run's report from every pair's artifacts; returns its path.

    The chord can fire before every pair has an artifact: after a Redis restart a pair may be
    delivered twice and counted twice. Then the report waits (retries) until every pair has
    one, for at most the hard time limit, and after that reports the missing ones as such.
    After a chord error (a pair Celery failed itself) it only gives that pair's on_failure a
    moment to record why.
    """
    settings = load_settings()
    store = RunStore(settings.runs_dir, run_id)
    missing = [p for p in store.manifest().pairs if not store.pair_path(p).exists()]
    if missing and chord_error:
        log.warning("building the report after a chord error", extra={"run": run_id, "error": chord_error})
        deadline = time.monotonic() + ARTIFACT_GRACE_S
        while time.monotonic() < deadline and any(not store.pair_path(p).exists() for p in missing):
            time.sleep(0.2)
    elif missing and self.request.retries * REPORT_RETRY_S < settings.task_time_limit_s:
        log.warning("the report waits for pairs", extra={"run": run_id, "pairs": missing})
        raise self.retry(countdown=REPORT_RETRY_S)
    return str(finish_run(store))


@app.task(name="bqx.report_after_chord_error")
def report_after_chord_error(request: Any, exc: BaseException, traceback: Any, run_id: str) -> None:
    """Errback of the chord callback: a failed pair turns the chord into ChordError and the
    callback never runs, so enqueue the report anyway (it reads artifacts, not results)."""
    build_report.apply_async(([], run_id), {"chord_error": str(exc)[:500]}, task_id=after_error_id(request.id))


def after_error_id(callback_id: str) -> str:
    """Return the task id of the report built after the chord with this callback failed."""
    return f"{callback_id}-after-chord-error"
