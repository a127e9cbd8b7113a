"""bqx-queue: test every BQX feature for every pair and horizon, one query per pair, on Celery."""

__version__ = "0.1.0"
