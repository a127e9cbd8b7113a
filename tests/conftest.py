"""Real parts for the tests: a private redis-server, tiny synthetic warehouses, and real
prefork Celery workers started as subprocesses."""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import time
import unittest.mock
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import redis

from bqx_queue.artifacts.run_folder import RunStore
from bqx_queue.celery.embedded_redis import EmbeddedRedis
from bqx_queue.config import load_settings
from bqx_queue.runner.processes import stop_process
from bqx_queue.runner.run import run_parallel_testing
from bqx_queue.warehouse.synthetic import WarehouseSpec, build_warehouse

# Small enough to build in seconds, big enough that the planted signal is found.
# the plumbing tests' warehouse: 10 days of linear signal (the nonlinear kinds need weeks of rows
# to be found; tests/test_nonlinear.py builds its own)
SMALL_SPEC = WarehouseSpec(days=10, features_per_pair=40, signal_r2=0.5, nonlinear_r2=0, seed=11)
_databases = itertools.count(1)


def python_path(*folders: str | Path) -> str:
    """Return a child's PYTHONPATH with these folders, after the one this process has (a checkout
    tested without installing it), so the child imports the same bqx_queue as the test."""
    return os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH", ""), *map(str, folders)]))


# bqx's worker app with the BQX_FAULT_* faults (tests/support/fault_worker.py), for `celery -A`
FAULT_APP = "support.fault_worker"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """URL of a Redis server: BQX_TEST_REDIS_URL, or a private one on a free port."""
    if os.environ.get("BQX_TEST_REDIS_URL"):
        yield os.environ["BQX_TEST_REDIS_URL"].rstrip("/")
        return
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture()
def queue_env(redis_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for one test's run: its own Redis databases and run folder."""
    db = next(_databases) % 15
    client = redis.Redis.from_url(f"{redis_server}/{db}")
    client.flushdb()
    redis.Redis.from_url(f"{redis_server}/15").flushdb()
    env = {
        "BQX_BROKER_URL": f"{redis_server}/{db}",
        "BQX_RESULT_BACKEND": f"{redis_server}/15",
        "BQX_RUNS_DIR": str(tmp_path / "runs"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture(scope="session")
def small_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("warehouse") / "small.duckdb"
    build_warehouse(path, SMALL_SPEC)
    return path


@pytest.fixture(scope="session")
def finished_run(small_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    """A real three-pair run (local pool of two processes) with its report written: what the
    report's tests read (report.html, feature_sets.json); built once per session."""
    runs = tmp_path_factory.mktemp("runs")
    settings = load_settings(warehouse=small_warehouse, runs_dir=runs, horizons=(15, 30, 60, 105))
    report_path = run_parallel_testing("eurusd,gbpusd,usdjpy", max_workers=2, settings=settings)
    return RunStore(runs, report_path.parent.name)


class Worker:
    """A real `celery -A bqx_queue worker` process (prefork), or one of the fault app."""

    def __init__(
        self,
        env: dict[str, str],
        name: str,
        concurrency: int,
        log: Path,
        cwd: Path | None = None,
        app: str = "bqx_queue",
    ) -> None:
        self.name = f"{name}@{os.uname().nodename}"
        self.log = log
        tests_path = {"PYTHONPATH": python_path(Path(__file__).parent)} if app == FAULT_APP else {}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", app, "worker", f"--concurrency={concurrency}",
             "-n", f"{name}@%h", "--loglevel=INFO", "--without-mingle", "--without-gossip"],
            env=os.environ | env | tests_path,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )  # fmt: skip

    def wait_ready(self, env: dict[str, str], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log.read_text()[-2000:]}")
            if "ready." in self.log.read_text():
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready: {self.log.read_text()[-2000:]}")

    def stop(self, timeout_s: float = 60) -> None:
        stop_process(self.process, timeout_s)


def run_worker_with_app(app_source: str, queue_env: dict[str, str], folder: Path) -> subprocess.CompletedProcess[str]:
    """Start `celery worker` on an app module holding `app_source` (which changes bqx's app
    after import) and return how it ended: for workers that must refuse to start."""
    (folder / "customapp.py").write_text(app_source)
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "customapp", "worker", "--concurrency=1", "-n", "custom@%h"],
        env=os.environ | queue_env | {"PYTHONPATH": python_path(folder)},
        capture_output=True, text=True, timeout=60, cwd=folder,
    )  # fmt: skip


@pytest.fixture()
def start_worker(queue_env: dict[str, str], tmp_path: Path) -> Iterator:
    """Factory: start_worker(name='w1', concurrency=2, cwd=None, app='bqx_queue', **extra_env) -> a
    ready Worker (app=FAULT_APP for a worker that reads BQX_FAULT_*)."""
    workers: list[Worker] = []

    def start(
        name: str = "w1", concurrency: int = 2, cwd: Path | None = None, app: str = "bqx_queue", **extra_env: str
    ) -> Worker:
        env = queue_env | extra_env
        worker = Worker(env, name, concurrency, tmp_path / f"{name}.log", cwd=cwd, app=app)
        workers.append(worker)
        worker.wait_ready(env)
        return worker

    yield start
    for worker in workers:
        worker.stop()


# The tiers of pyproject.toml's markers: every test carries exactly one.
TIERS = ("unit", "integration", "e2e")
# Doctests (pytest --doctest-modules) cannot carry a marker: their tier is set here. The examples
# that build a warehouse (and the local pool's, which starts a process pool) are integration; the
# others run in-process on arrays in well under a second.
DOCTEST_TIERS = {
    "bqx_queue.runner.run.run_parallel_testing": "integration",
    "bqx_queue.runner.pair.process_pair_all_horizons": "integration",
    "bqx_queue.analysis.pair.run_stability_selection_local": "integration",
    "bqx_queue.warehouse.source.query_pair_all_horizons": "integration",
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give each doctest its tier, then refuse the session, naming them, if any test has no tier
    or more than one (tryfirst: before `-m` deselects, so `pytest -m unit` checks every test)."""
    for item in items:
        if isinstance(item, pytest.DoctestItem):
            item.add_marker(DOCTEST_TIERS.get(item.name, "unit"))
    problems = []
    for item in items:
        tiers = [mark.name for mark in item.iter_markers() if mark.name in TIERS]
        if len(tiers) != 1:
            problems.append(f"{item.nodeid}: tier markers {tiers or 'none'}, not exactly one of {', '.join(TIERS)}")
    if problems:
        raise pytest.UsageError("every test needs exactly one tier marker:\n" + "\n".join(problems))


@contextlib.contextmanager
def _no_warehouse_in_unit_tests(item: pytest.Item) -> Iterator[None]:
    """In a unit test, its fixtures included (a session's warehouse is built in the setup of the
    first test that asks for it), opening a DuckDB file fails the test: the unit tier builds and
    reads no warehouse. In-memory DuckDB stays allowed."""
    if item.get_closest_marker("unit") is None:
        yield
        return
    connect = duckdb.connect

    def refuse_files(database: Any = ":memory:", *args: Any, **kwargs: Any) -> Any:
        if str(database) not in (":memory:", ""):
            raise AssertionError(f"a unit test opened the DuckDB file {database}: a built warehouse is integration")
        return connect(database, *args, **kwargs)

    with unittest.mock.patch.object(duckdb, "connect", refuse_files):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    with _no_warehouse_in_unit_tests(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with _no_warehouse_in_unit_tests(item):
        yield
