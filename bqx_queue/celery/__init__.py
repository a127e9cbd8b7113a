"""The Celery layer: thin tasks over the run layer, and what a producer and an operator need.

- `application`: the Celery `app` (`celery -A bqx_queue worker` finds it here, as
  `bqx_queue.celery.app`) and `use_settings`, pointing it at a producer's broker.
- `config`: the Celery settings derived from `Settings`, and the refusal of unsafe ones.
- `tasks`: the three tasks (a pair, the report, the report after a chord's error).
- `producer`: enqueue a run, resume one, check the broker and the live workers.
- `redelivery`: a pair delivered again after its worker died, counted and given up on.
- `status`: a run's progress from its store and broker (`bqx status`).
- `flower`, `embedded_redis`, `log_context`: the Flower command, the demo's private Redis, and
  the run/pair/horizon fields on every log line.

Only `app` and `use_settings` are re-exported: `celery -A bqx_queue` (every worker start and
liveness probe) imports this package, and should load the app, not the producer or the status.
The CLI imports the others from their modules.
"""

from bqx_queue.celery.application import app, use_settings

__all__ = ["app", "use_settings"]
