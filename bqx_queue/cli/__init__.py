"""The command-line layer, the top of the package: `bqx` (`main`, cli/bqx.py) and `bqx-enqueue`
(`enqueue_main`, cli/enqueue.py), thin over the Celery layer, the run layer and the report;
`bqx demo` in cli/demo.py, and what every command shares in cli/common.py."""

from bqx_queue.cli.bqx import main
from bqx_queue.cli.enqueue import enqueue_main

__all__ = ["enqueue_main", "main"]
