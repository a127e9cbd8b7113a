"""The producer's answers to bad input: one line naming the problem, exit 2, nothing written."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ENQUEUE = str(Path(sys.executable).with_name("bqx-enqueue"))
BQX = str(Path(sys.executable).with_name("bqx"))


def _run(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        args, capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env=os.environ | {"BQX_RUNS_DIR": str(tmp_path / "runs")} | env,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pairs", "eurxxx"], "error: unknown pair or group 'eurxxx'"),
        (["--pairs", " , "], "error: no pairs selected"),
        (["--pairs", "eurusd", "--horizons", "20"], "error: unknown horizon 20"),
        (["--pairs", "eurusd", "--warehouse", "nowhere.duckdb"], "error: warehouse nowhere.duckdb does not exist"),
        (["--pairs", "eurusd", "--max-rows", "-5"], "error: setting 'max_rows'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path, small_warehouse):
    extra = [] if "--warehouse" in args else ["--warehouse", str(small_warehouse)]
    done = _run([ENQUEUE, *args, *extra], {}, tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and done.stderr.startswith(message)
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists()


def test_unreachable_broker_answers_within_seconds(tmp_path, small_warehouse):
    started = time.monotonic()
    done = _run(
        [ENQUEUE, "--pairs", "eurusd", "--warehouse", str(small_warehouse)],
        {"BQX_BROKER_URL": "redis://:secret@127.0.0.1:1/0"},
        tmp_path,
    )
    assert time.monotonic() - started < 20
    assert done.returncode == 2 and "error: cannot reach broker redis://:***@127.0.0.1:1/0" in done.stderr
    assert "secret" not in done.stderr + done.stdout
    assert not (tmp_path / "runs").exists()


def test_no_live_worker_is_refused_before_anything_is_enqueued(tmp_path, small_warehouse, queue_env):
    import redis

    done = _run(
        [ENQUEUE, "--pairs", "eurusd", "--warehouse", str(small_warehouse), "--worker-timeout", "1"],
        queue_env,
        tmp_path,
    )
    assert done.returncode == 2 and "error: no worker answered" in done.stderr
    assert redis.Redis.from_url(queue_env["BQX_BROKER_URL"]).llen("celery") == 0
    assert not Path(queue_env["BQX_RUNS_DIR"]).exists()


def test_warehouse_build_refuses_to_overwrite(tmp_path):
    target = tmp_path / "w.duckdb"
    first = _run(
        [
            BQX,
            "warehouse",
            "build",
            "--path",
            str(target),
            "--pairs",
            "eurusd",
            "--days",
            "2",
            "--features-per-pair",
            "12",
        ],
        {},
        tmp_path,
    )
    assert first.returncode == 0 and target.exists()
    again = _run([BQX, "warehouse", "build", "--path", str(target), "--pairs", "eurusd", "--days", "2"], {}, tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
