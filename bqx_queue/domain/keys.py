"""Every Redis key bqx_queue writes (Celery's own keys aside), in one place: the README's failure
modes and the tests name them."""

from __future__ import annotations


def deliveries_key(run_id: str, pair: str) -> str:
    """The count of a pair's deliveries in a run (bqx_queue.celery.redelivery)."""
    return f"bqx:deliveries:{run_id}:{pair}"


def ledger_key(run_id: str) -> str:
    """The hash of a run's billed and reserved bytes (bqx_queue.runner.cost_ledger)."""
    return f"bqx:ledger:{run_id}"
