"""How a worker is set up: the run's settings from its manifest, threads per child, an import that
never exits, and log lines that carry the run and pair."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from bqx_queue.celery.log_context import ContextFormatter, record_context
from bqx_queue.config import HOST_SETTINGS, load_settings, run_settings


@pytest.mark.unit
def test_a_manifest_none_is_not_refilled_from_the_worker_hosts_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    planned = load_settings(selection_max_features=None, max_rows=3000)
    manifest_settings = planned.model_dump(mode="json", exclude=HOST_SETTINGS)
    monkeypatch.setenv("BQX_SELECTION_MAX_FEATURES", "500")  # the worker host's environment
    monkeypatch.setenv("BQX_MAX_ROWS", "9000")
    monkeypatch.setenv("BQX_RUNS_DIR", "/srv/runs")
    monkeypatch.setenv("BQX_THREADS_PER_CHILD", "3")
    host = load_settings()
    assert host.selection_max_features == 500
    settings = run_settings(manifest_settings, host)
    assert settings.selection_max_features is None  # the run's None, not the host's 500
    assert settings.max_rows == 3000
    # where the broker, the files and the cores are is the host's
    assert (settings.runs_dir, settings.threads_per_child) == ("/srv/runs", 3)


@pytest.mark.unit
def test_threads_per_child_are_a_setting_or_the_cores_shared_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert load_settings().child_threads(4) == 2
    assert load_settings().child_threads(16) == 1
    assert load_settings(threads_per_child=3).child_threads(4) == 3


@pytest.mark.integration
def test_importing_the_app_with_bad_settings_does_not_exit() -> None:
    bad = {"BQX_VISIBILITY_TIMEOUT_S": "10", "BQX_TASK_TIME_LIMIT_S": "10"}
    imported = subprocess.run(
        [sys.executable, "-c", "import bqx_queue.celery.tasks, bqx_queue.celery; print(bqx_queue.celery.app.main)"],
        env=os.environ | bad,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "bqx_queue"


def _record(name: str, message: str, **extra: object) -> logging.LogRecord:
    return logging.makeLogRecord({"name": name, "msg": message, "levelname": "ERROR", **extra})


@pytest.mark.unit
def test_a_log_line_carries_the_run_and_pair_the_code_passes() -> None:
    formatter = ContextFormatter("[%(levelname)s] %(message)s", use_color=False)
    record = _record("bqx_queue.celery.redelivery", "giving up on a pair", deliveries=2, pair="gbpusd", run="r1")
    assert formatter.format(record) == "[ERROR] giving up on a pair [run=r1 pair=gbpusd deliveries=2]"
    assert formatter.format(_record("bqx_queue.runner.run", "no context")) == "[ERROR] no context"
    # Celery's own records carry an `extra` of theirs, already in their message
    assert record_context(_record("celery.app.trace", "Task succeeded", data={"id": "x"})) == ""


@pytest.mark.unit
def test_the_context_comes_before_a_traceback() -> None:
    formatter = ContextFormatter("%(message)s", use_color=False)
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "bqx_queue.runner.run", logging.ERROR, __file__, 1, "pair crashed", None, sys.exc_info()
        )
    record.__dict__.update(run="r1", pair="eurusd")
    first, *rest = formatter.format(record).splitlines()
    assert first == "pair crashed [run=r1 pair=eurusd]"
    assert rest[-1] == "ValueError: boom"
