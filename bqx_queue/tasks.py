"""The two Celery tasks. Thin: they call bqx_queue.run and cap redeliveries of a pair."""

from __future__ import annotations

from typing import Any

import redis

from bqx_queue.analysis.pair import failed_summary
from bqx_queue.celery import app
from bqx_queue.config import load_settings
from bqx_queue.run import execute_pair, finish_run, small_summary, threads_per_child
from bqx_queue.store import RunStore


def _deliveries(run_id: str, pair: str) -> int:
    """Count deliveries of a pair in Redis: a child killed mid-pair requeues it (acks late),
    and a pair that kills its child every time must not loop forever."""
    settings = load_settings()
    client = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=5)
    key = f"bqx:deliveries:{run_id}:{pair}"
    count = int(client.incr(key))
    client.expire(key, settings.result_expires_s)
    return count


@app.task(name="bqx.process_pair", acks_late=True, reject_on_worker_lost=True)
def process_pair(run_id: str, pair: str) -> dict[str, Any]:
    """Analyse one pair of a run; returns a small summary (artifacts go to the run folder)."""
    settings = load_settings()
    store = RunStore(settings.runs_dir, run_id)
    delivery = _deliveries(run_id, pair)
    if delivery > settings.max_deliveries:
        summary = failed_summary(
            pair,
            f"gave up after {delivery - 1} deliveries: the worker died each time "
            "(killed, or past its memory cap)",
        )
        store.write_json(store.pair_path(pair), summary)
        return small_summary(summary)
    return execute_pair(store, pair, threads=threads_per_child())


@app.task(name="bqx.build_report")
def build_report(results: list[dict[str, Any]], run_id: str) -> str:
    """Chord callback: write the run's report from every pair's artifacts; returns its path."""
    store = RunStore(load_settings().runs_dir, run_id)
    return str(finish_run(store))
