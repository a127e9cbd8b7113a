"""The producer side of a run: broker and worker checks, the chord, and resuming a run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import redis
from celery import Celery, chord
from celery.exceptions import ChordError
from celery.result import AsyncResult
from kombu.exceptions import OperationalError

from bqx_queue.artifacts import RunStore
from bqx_queue.celery.config import check_safe_content, redis_client
from bqx_queue.config import redact_text, redact_url
from bqx_queue.domain import BrokerError, Resume, RunManifest


def check_broker(url: str, timeout_s: float = 3.0) -> None:
    """Raise BrokerError within `timeout_s` if the Redis broker does not answer a PING."""
    try:
        redis_client(url, timeout_s).ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        raise BrokerError(f"cannot reach broker {redact_url(url)}: {redact_text(str(exc), url)}") from None


def live_workers(app: Celery, timeout_s: float = 2.0) -> dict[str, int]:
    """Return worker node name -> pool size, for every worker that answers within the timeout."""
    stats = app.control.inspect(timeout=timeout_s).stats() or {}
    return {name: int(info.get("pool", {}).get("max-concurrency", 0)) for name, info in sorted(stats.items())}


class ReportResult:
    """The report task of a run as `watch_run` sees it: failed only when no report will come.

    A pair that Celery itself fails (hard time limit) turns the chord into ChordError; the
    callback's errback then builds the report under a second task id, which this follows.
    """

    def __init__(self, callback: AsyncResult) -> None:
        self.callback = callback

    @property
    def current(self) -> AsyncResult:
        from bqx_queue.celery.tasks import after_error_id

        if self.callback.failed() and isinstance(self.callback.result, ChordError):
            return AsyncResult(after_error_id(self.callback.id), app=self.callback.app)
        return self.callback

    def failed(self) -> bool:
        try:
            return bool(self.current.failed())
        except (redis.RedisError, OSError, OperationalError):
            return False  # Redis is away for now (restarting): the report file says when it is done

    @property
    def result(self) -> Any:
        return self.current.result

    @property
    def id(self) -> str:
        return str(self.callback.id)


def enqueue_run(manifest: RunManifest, pairs: list[str] | None = None) -> ReportResult:
    """Enqueue chord(process_pair per pair) -> build_report; returns the report's result.

    `pairs` narrows the header (a resumed run); the report always reads every pair's artifact.
    """
    from bqx_queue.celery.application import app
    from bqx_queue.celery.tasks import build_report, process_pair, report_after_chord_error

    check_safe_content(app.conf)
    run_id = manifest.run_id
    header = [process_pair.s(run_id, pair) for pair in (manifest.pairs if pairs is None else pairs)]
    # immutable: the report reads every pair's artifact, so the header's results stay out of the
    # callback's message, which stays small however many pairs the run has
    callback = build_report.si([], run_id).on_error(report_after_chord_error.s(run_id))
    return ReportResult(chord(header)(callback))


def unfinished_pairs(store: RunStore) -> list[str]:
    """Return the run's pairs without a completed (status ok) artifact, in manifest order."""
    summaries = store.pair_summaries()
    return [p for p in store.manifest().pairs if not ((summary := summaries.get(p)) and summary.ok)]


def prepare_resume(store: RunStore, broker_url: str) -> list[str]:
    """Return the pairs a resumed run must enqueue again, with their delivery counts reset,
    and note the resume in the manifest (so a report older than it no longer counts as done)."""
    from bqx_queue.celery.redelivery import reset_deliveries

    manifest = store.manifest()
    pending = unfinished_pairs(store)
    reset_deliveries(broker_url, store.run_id, pending)
    resumes = [*(manifest.resumes or []), Resume(at=datetime.now(UTC), pairs=pending)]
    store.write_manifest(manifest.model_copy(update={"resumes": resumes}))
    return pending
