"""One delivery of a pair, and the cap on how often a pair is delivered.

Pairs are acknowledged late: a child killed mid-pair (by the OOM killer, its memory cap, the hard
time limit) puts its pair back on the queue. Each delivery is counted in Redis, so a pair that
kills its child every time is recorded as failed after `max_deliveries` instead of looping
forever (README, "Failure modes").
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from celery.exceptions import TimeLimitExceeded

from bqx_queue.artifacts import RunStore
from bqx_queue.celery.config import redis_client
from bqx_queue.config import Settings
from bqx_queue.domain import PairMessage, PairSummary, deliveries_key
from bqx_queue.runner import execute_pair, failed_summary

log = logging.getLogger(__name__)

# A pair does not fail because Redis is restarting: its delivery count retries this long.
REDIS_RETRY_S = 20.0


def count_delivery(broker_url: str, run_id: str, pair: str, expires_s: int) -> int:
    """Count this delivery of a pair in Redis and return the count."""
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


def deliver_pair(store: RunStore, pair: str, settings: Settings) -> PairMessage:
    """Run one delivery of a pair with the run's settings and return its message: a pair that
    finished before its child died is not analysed twice, and past `max_deliveries` it is
    recorded as failed."""
    existing = store.pair_summary(pair)
    if existing and existing.ok:
        return existing.message()
    delivery = count_delivery(settings.broker_url, store.run_id, pair, settings.result_expires_s)
    if delivery > settings.max_deliveries:
        log.error("giving up on a pair", extra={"run": store.run_id, "pair": pair, "deliveries": delivery - 1})
        reason = (
            f"gave up after {delivery - 1} deliveries: the worker child died each time "
            "(killed, out of memory, or past its memory cap)"
        )
        return record_failure(store, pair, reason).message()
    return execute_pair(store, pair, settings)


def failure_reason(exc: BaseException, time_limit_s: int) -> str:
    """Return why Celery failed a pair, for its summary."""
    if isinstance(exc, TimeLimitExceeded):
        return f"hard time limit exceeded ({time_limit_s} s): the child was killed"
    return f"{type(exc).__name__}: {exc}"


def record_failure(store: RunStore, pair: str, reason: str) -> PairSummary:
    """Write a failed summary for a pair unless it already finished; return its summary."""
    existing = store.pair_summary(pair)
    if existing and existing.ok:
        return existing
    summary = failed_summary(pair, reason, finished_at=datetime.now(UTC))
    store.write_pair_summary(summary)
    return summary
