"""The Celery app, found by `celery -A bqx_queue worker`. Settings come from BQX_* variables.

Importing this module never exits: a producer (a notebook, a test session) imports it and points
the app at its own settings (use_settings). Bad settings stop a worker when it starts, in one line.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, celeryd_init

from bqx_queue.celery.config import celery_config, check_worker_config
from bqx_queue.celery.log_context import install_context_formatter
from bqx_queue.config import Settings, load_settings
from bqx_queue.domain import ConfigError

# Threads of the native libraries a child runs (LightGBM's OpenMP, BLAS, MKL).
NATIVE_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def create_app(settings: Settings | None) -> Celery:
    """Return bqx's Celery app on these settings' broker, backend and limits (None: Celery's
    defaults, for a process that points it at its settings later); raises ConfigError for
    settings under which a pair could run twice."""
    app = Celery("bqx_queue", include=["bqx_queue.celery.tasks"])
    if settings is not None:
        app.conf.update(celery_config(settings))
    return app


def _app_of_this_host() -> Celery:
    """Return the app on this host's BQX_* settings, or on Celery's defaults if they are bad (a
    worker then refuses to start, in _check_worker_settings)."""
    try:
        return create_app(load_settings())
    except ConfigError:
        return create_app(None)


app = _app_of_this_host()


def use_settings(settings: Settings) -> Celery:
    """Return the app pointed at these settings' broker and backend. A producer process (a
    notebook, a test session) may start runs on different brokers over its life, while the app
    was configured once at import."""
    config = celery_config(settings)
    if (app.conf.broker_url, app.conf.result_backend) != (config["broker_url"], config["result_backend"]):
        _forget_broker(app)
    app.conf.update(config)
    return app


def _forget_broker(celery_app: Celery) -> None:
    """Drop what the app bound to its last broker and backend: its connection pool, the producer
    pool that publishes tasks, the control mailbox's copy of it (kept, `inspect` asked the first
    run's broker for the second run's workers and heard none), and the per-thread result backend.
    `app.close()` drops only the first. The pools themselves are kombu's, shared per broker, and
    stay open for whoever uses that broker again."""
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    del celery_app.control.mailbox.producer_pool  # as Celery's own after-fork cleanup does
    celery_app._local = threading.local()


def _refuse(exc: ConfigError) -> None:
    """Stop with one line instead of a traceback: a worker must not start on unsafe settings."""
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2)


@celeryd_init.connect
def _check_worker_settings(conf: Any = None, options: dict[str, Any] | None = None, **_: Any) -> None:
    """Refuse to start a worker on bad BQX_* settings (a bucket runs_dir without its extra), or
    on a configuration (a `--config` module or `-O` may have changed it) that is not JSON only or
    whose visibility timeout is not above the hard time limit. Then give each prefork child its
    threads."""
    # here, not at the top: the artifact store loads pandas, which `celery -A bqx_queue inspect
    # ping` (a liveness probe imports this module) has no use for
    from bqx_queue.artifacts import artifact_root

    try:
        settings = load_settings()
        celery_config(settings)
        check_worker_config(conf if conf is not None else app.conf)
        artifact_root(settings.runs_dir)  # a bucket's filesystem must be installed (its extra)
    except ConfigError as exc:
        _refuse(exc)
        return
    concurrency = int((options or {}).get("concurrency") or app.conf.worker_concurrency or 1)
    _export_threads(settings.child_threads(concurrency))


def _export_threads(threads: int) -> None:
    """Set each child's threads in the environment it inherits: its settings read
    BQX_THREADS_PER_CHILD, and the native libraries read theirs. Set before the children fork,
    OpenMP stays out of the parent (it can hang the children)."""
    os.environ["BQX_THREADS_PER_CHILD"] = str(threads)
    for variable in NATIVE_THREAD_VARIABLES:
        os.environ[variable] = str(threads)


@after_setup_logger.connect
@after_setup_task_logger.connect
def _log_context(logger: logging.Logger, colorize: bool = False, **_: Any) -> None:
    """Worker log lines carry the run and pair (and other facts) the code passes in `extra`."""
    install_context_formatter(logger, colorize=bool(colorize))
