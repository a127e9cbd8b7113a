"""The Celery app, found by `celery -A bqx_queue worker`. Settings come from BQX_* variables."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from celery import Celery
from celery.signals import celeryd_init

from bqx_queue.celeryconfig import celery_config, check_worker_config
from bqx_queue.config import Settings, load_settings
from bqx_queue.errors import ConfigError


def _refuse(exc: ConfigError) -> None:
    """Stop with one line instead of a traceback: a worker must not start on unsafe settings."""
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2)


app = Celery("bqx_queue", include=["bqx_queue.tasks"])
try:
    app.conf.update(celery_config(load_settings()))
except ConfigError as exc:
    _refuse(exc)


def use_settings(settings: Settings) -> Celery:
    """Return the app pointed at these settings' broker and backend. A producer process (a
    notebook, a test session) may start runs on different brokers over its life, while the app
    was configured once at import."""
    config = celery_config(settings)
    if (app.conf.broker_url, app.conf.result_backend) != (config["broker_url"], config["result_backend"]):
        app.close()  # drops the broker connection pool
        app._local = threading.local()  # and the per-thread result backend (Celery caches it there)
    app.conf.update(config)
    return app


@celeryd_init.connect
def _check_worker_config(conf: Any = None, **_: Any) -> None:
    """Check the configuration the worker really runs with (a `--config` module or `-O` may have
    changed it): JSON only, and a visibility timeout above the hard time limit."""
    try:
        check_worker_config(conf if conf is not None else app.conf)
    except ConfigError as exc:
        _refuse(exc)


@celeryd_init.connect
def _threads_per_child(conf: Any = None, options: dict[str, Any] | None = None, **_: Any) -> None:
    """Give each prefork child cores / concurrency threads (LightGBM, BLAS, DuckDB), and keep
    OpenMP out of the parent before it forks (it can hang the children)."""
    concurrency = int((options or {}).get("concurrency") or app.conf.worker_concurrency or 1)
    threads = max(1, (os.cpu_count() or 1) // concurrency)
    os.environ["BQX_THREADS_PER_CHILD"] = str(threads)
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(threads)
