"""The run layer: a run's life without Celery, called alike by the Celery tasks and the local pool.

- `run`: plan a run (`plan_run`, `write_manifest`), analyse one pair (`execute_pair`, or
  `failed_summary` for a pair that could not run), finish it (`finish_run` writes the report),
  and `run_parallel_testing`, the whole run in a local process pool without a broker.
- `approval`: the plan file, reviewed and approved (`write_plan`, `approve_plan`), then run only
  as planned (`read_plan`, `manifest_from_plan`).
- `pair`: one pair analysed (`process_pair_all_horizons`): its rows fetched (`pair_fetch`), the
  analysis's steps sequenced under a memory watch (`memory`), timed, and its summary built.
- `pair_fetch`, `extract_cache`, `cost_ledger`, `shared_tables`: how a run reads a pair's rows:
  through the extract cache (a source wrapping any source), its billable queries labelled with
  the run and reserved in its cost ledger in Redis, joined with the shared tables fetched once.
- `processes`: `stop_process`, stopping a child (a worker, a Redis) the same way everywhere.
"""

from bqx_queue.runner.approval import approve_plan, manifest_from_plan, read_plan, write_plan
from bqx_queue.runner.processes import stop_process
from bqx_queue.runner.run import (
    execute_pair,
    failed_summary,
    finish_run,
    new_run_id,
    plan_run,
    run_parallel_testing,
    write_manifest,
)

__all__ = [
    "approve_plan",
    "execute_pair",
    "failed_summary",
    "finish_run",
    "manifest_from_plan",
    "new_run_id",
    "plan_run",
    "read_plan",
    "run_parallel_testing",
    "stop_process",
    "write_manifest",
    "write_plan",
]
