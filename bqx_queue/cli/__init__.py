"""The command-line layer, the top of the package: `bqx` (`main`) and `bqx-enqueue`
(`enqueue_main`), thin over the Celery layer, the run layer and the report."""

from bqx_queue.cli.cli import enqueue_main, main

__all__ = ["enqueue_main", "main"]
