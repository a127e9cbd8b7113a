"""The Celery tasks. Thin: they call bqx_queue.run, cap redeliveries of a pair, and make sure a
run ends with a report whatever happened to its pairs (README, "Failure modes").

Test-only fault injection, read from the *worker's* environment and never set in production
(each names pairs, comma-separated, optionally `pair:seconds`):
  BQX_FAULT_SLEEP=eurusd:5   sleep before analysing the pair (time to kill or stop the worker)
  BQX_FAULT_KILL=eurusd      the child SIGKILLs itself at the start of the pair, every delivery
                             (what the OOM killer does to a pair past the host's memory)
  BQX_FAULT_HANG=eurusd:30   sleep deaf to the soft time limit and SIGTERM, as C++ code
                             (LightGBM) that only the hard limit's SIGKILL stops
  BQX_FAULT_KILL_UPLOAD=eurusd  on the pair's first delivery, the child SIGKILLs itself halfway
                             through writing the pair's summary (its ledger already written)
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from typing import Any

from celery import Task
from celery.exceptions import TimeLimitExceeded

from bqx_queue.celery import app
from bqx_queue.celeryconfig import redis_client
from bqx_queue.config import load_settings
from bqx_queue.errors import BqxError
from bqx_queue.models import PairSummary
from bqx_queue.run import execute_pair, failed_summary, finish_run, run_settings, threads_per_child
from bqx_queue.storage import write_whole
from bqx_queue.store import RunStore

log = logging.getLogger(__name__)

# How long a report built after a chord error waits for the failed pair's own failure record.
ARTIFACT_GRACE_S = 10.0
# How often a report that fired before every pair had an artifact looks again.
REPORT_RETRY_S = 5
# A pair does not fail because Redis is restarting: its delivery count retries this long.
REDIS_RETRY_S = 20.0


def deliveries_key(run_id: str, pair: str) -> str:
    return f"bqx:deliveries:{run_id}:{pair}"


def count_delivery(broker_url: str, run_id: str, pair: str, expires_s: int) -> int:
    """Count this delivery of a pair in Redis and return the count: a child killed mid-pair
    requeues it (acks late), and a pair that kills its child every time must not loop forever."""
    client = redis_client(broker_url, retry_s=REDIS_RETRY_S)
    key = deliveries_key(run_id, pair)
    with client.pipeline() as pipe:
        pipe.incr(key)
        pipe.expire(key, expires_s)
        count, _ = pipe.execute()
    return int(count)


def reset_deliveries(broker_url: str, run_id: str, pairs: list[str]) -> None:
    """Forget the deliveries of pairs about to be enqueued again (`bqx-enqueue --resume`)."""
    if pairs:
        redis_client(broker_url).delete(*(deliveries_key(run_id, pair) for pair in pairs))


def _fault_seconds(variable: str, pair: str) -> float | None:
    for item in os.environ.get(variable, "").split(","):
        name, _, seconds = item.strip().partition(":")
        if name == pair:
            return float(seconds or 0)
    return None


def _inject_faults(pair: str) -> None:
    """Test-only faults named by BQX_FAULT_* in the worker's environment (see module docstring)."""
    if _fault_seconds("BQX_FAULT_KILL", pair) is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    sleep_s = _fault_seconds("BQX_FAULT_SLEEP", pair)
    if sleep_s:
        time.sleep(sleep_s)
    hang_s = _fault_seconds("BQX_FAULT_HANG", pair)
    if hang_s:
        # C++ holding the thread hears neither the soft limit (SIGUSR1) nor the pool's SIGTERM:
        # only the hard limit's SIGKILL ends it
        blocked = {signal.SIGUSR1, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        time.sleep(hang_s)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)


class _KilledWhileUploading(RunStore):
    """Test-only (BQX_FAULT_KILL_UPLOAD): the pair's summary, the artifact that marks it done, is
    half written through the real write path when the child is SIGKILLed."""

    def __init__(self, store: RunStore, pair: str) -> None:
        super().__init__(store.runs_root, store.run_id)
        self.pair = pair

    def write_json(self, path: Any, data: Any) -> None:
        if str(path) != str(self.pair_path(self.pair)):
            return super().write_json(path, data)

        def half_then_die(handle: Any) -> None:
            text = json.dumps(data).encode()
            handle.write(text[: len(text) // 2])
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        write_whole(path, half_then_die)


def _record_failure(store: RunStore, pair: str, reason: str) -> PairSummary:
    """Write a failed artifact for a pair unless it already finished; return its summary."""
    existing = store.pair_summary(pair)
    if existing and existing.ok:
        return existing
    summary = failed_summary(pair, reason, finished_at=time.time())
    store.write_pair_summary(summary)
    return summary


class PairTask(Task):
    """process_pair's class: a pair that Celery itself failed (hard time limit, a broker error
    before the analysis) still gets a failed artifact naming the reason."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        run_id = kwargs.get("run_id", args[0] if args else None)
        pair = kwargs.get("pair", args[1] if len(args) > 1 else None)
        if not run_id or not pair:
            return
        if isinstance(exc, TimeLimitExceeded):
            limit_s = load_settings().task_time_limit_s
            reason = f"hard time limit exceeded ({limit_s} s): the child was killed"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        try:
            _record_failure(RunStore(load_settings().runs_dir, run_id), pair, reason)
        except (OSError, BqxError):
            log.exception("could not record the failure of a pair", extra={"run": run_id, "pair": pair})


@app.task(base=PairTask, name="bqx.process_pair", acks_late=True, reject_on_worker_lost=True)
def process_pair(run_id: str, pair: str) -> dict[str, Any]:
    """Analyse one pair of a run; returns a small summary (artifacts go to the run folder)."""
    settings = load_settings()
    store = RunStore(settings.runs_dir, run_id)
    existing = store.pair_summary(pair)
    if existing and existing.ok:  # finished before its child died: not twice
        return existing.message().model_dump(mode="json")
    max_deliveries = run_settings(store.manifest()).max_deliveries
    delivery = count_delivery(settings.broker_url, run_id, pair, settings.result_expires_s)
    if delivery > max_deliveries:
        log.error("giving up on a pair", extra={"run": run_id, "pair": pair, "deliveries": delivery - 1})
        reason = (
            f"gave up after {delivery - 1} deliveries: the worker child died each time "
            "(killed, out of memory, or past its memory cap)"
        )
        return _record_failure(store, pair, reason).message().model_dump(mode="json")
    _inject_faults(pair)
    if delivery == 1 and _fault_seconds("BQX_FAULT_KILL_UPLOAD", pair) is not None:
        store = _KilledWhileUploading(store, pair)
    return execute_pair(store, pair, threads=threads_per_child()).model_dump(mode="json")


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
