"""What travels through Redis stays small: every task message, task result and everything the
chord gathers is under 2 KB whatever the pair's width. The pair's summary, which grows with its width, goes to
the run folder; Redis carries only a bounded digest of it (PairSummary.message())."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis

from bqx_queue.artifacts.run_folder import RunStore
from bqx_queue.domain import PairSummary
from bqx_queue.warehouse.synthetic import WarehouseSpec, build_warehouse

LIMIT = 2048
ENQUEUE = str(Path(sys.executable).with_name("bqx-enqueue"))
FAST = {"BQX_SELECTION_PAIRS": "4", "BQX_LGBM_ROUNDS": "10", "BQX_CV_FOLDS": "1", "BQX_SHAP_ROWS": "200"}


@pytest.mark.unit
def test_a_task_result_is_bounded_whatever_the_pairs_width() -> None:
    stable = [{"feature": f"reg_eurusd__{'x' * 60}_{i}", "frequency": 0.9} for i in range(500)]
    metrics = {"auc": 0.6, "accuracy": 0.55, "directional_accuracy": 0.55, "log_loss": 0.69}
    result = {"stable": stable, "q": 10, "threshold": 0.75, "fits": 100, "error_bound": 0.5, "shap_top": [],
              "metrics": {"folds": [metrics], "mean": metrics, "baseline": metrics}}  # fmt: skip
    summary = {
        "pair": "eurusd", "status": "failed", "error": "a table lacks columns: " + ", ".join(["c" * 40] * 400),
        "wall_s": 1234.5, "host": "h" * 64, "pid": 4_000_000, "cost_usd": 1.2345678, "queries": 3,
        "features_tested": 17_000, "families": {f"family{i}": 1 for i in range(5000)},
        "horizons": {str(h): result for h in (15, 30, 45, 60, 75, 90, 105)},
    }  # fmt: skip
    assert len(json.dumps(summary)) > 100 * LIMIT
    message = PairSummary.model_validate(summary).message().model_dump(mode="json")
    assert len(json.dumps(message).encode()) < LIMIT
    assert message["stable_counts"]["105"] == 500 and message["error"].endswith("…")


class RedisValues:
    """Reads every value in a Redis database now and then while a run goes on; keeps the largest."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.largest: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _sizes(self, key: bytes) -> list[int]:
        kind = self.client.type(key)
        if kind == b"string":
            return [len(self.client.get(key) or b"")]
        if kind == b"list":
            return [len(v) for v in self.client.lrange(key, 0, -1)]
        if kind == b"hash":
            return [len(v) for v in self.client.hvals(key)]
        if kind in (b"set", b"zset"):
            members = self.client.smembers(key) if kind == b"set" else self.client.zrange(key, 0, -1)
            return [len(v) for v in members]
        return []

    def look(self) -> None:
        for key in self.client.scan_iter(count=1000):
            try:
                sizes = self._sizes(key)
            except redis.ResponseError:  # the key changed type or vanished between the calls
                continue
            name = key.decode(errors="replace")
            self.largest[name] = max([self.largest.get(name, 0), *sizes])

    def _watch(self) -> None:
        while not self.stop.is_set():
            self.look()
            self.stop.wait(0.05)

    def __enter__(self) -> RedisValues:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        self.look()


@pytest.fixture(scope="module")
def wide_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wide") / "wide.duckdb"
    build_warehouse(path, WarehouseSpec(pairs=("eurusd", "gbpusd"), days=3, features_per_pair=600, seed=3))
    return path


@pytest.mark.e2e
def test_every_result_and_chord_payload_through_redis_is_under_2_kb(
    wide_warehouse: Path, queue_env: dict[str, str], start_worker
) -> None:
    start_worker("small", concurrency=2, **FAST)
    with RedisValues(queue_env["BQX_RESULT_BACKEND"]) as results, RedisValues(queue_env["BQX_BROKER_URL"]) as broker:
        done = subprocess.run(
            [ENQUEUE, "--pairs", "eurusd,gbpusd", "--warehouse", str(wide_warehouse), "--run-id", "small", "--wait",
             "--worker-timeout", "5"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summaries = RunStore(queue_env["BQX_RUNS_DIR"], "small").pair_summaries()
    # the pairs are wide: their summaries (in the run folder) are far past what Redis may carry
    assert min(len(s.model_dump_json()) for s in summaries.values()) > 10 * LIMIT
    task_results = {k: v for k, v in results.largest.items() if k.startswith("celery-task-meta-")}
    assert len(task_results) >= 3  # two pairs and the report
    # the chord's keys (celery-taskset-meta-<group>.s, .c, .t; its gathering list .j lives only between
    # the pairs' returns, which a 50 ms watch can miss when they finish together): the chord went through Redis
    assert any(k.startswith("celery-taskset-meta-") for k in results.largest), sorted(results.largest)
    oversized = {k: v for k, v in results.largest.items() if v >= LIMIT}
    assert not oversized, f"values of {LIMIT} bytes or more in the result backend: {oversized}"
    # the broker's side: the queued and unacknowledged task messages, the chord's callback among them
    assert "celery" in broker.largest or "unacked" in broker.largest, sorted(broker.largest)
    oversized = {k: v for k, v in broker.largest.items() if v >= LIMIT}
    assert not oversized, f"messages of {LIMIT} bytes or more in the broker: {oversized}"
