"""The fault tests' worker app: bqx's own app, and faults named by BQX_FAULT_* in the worker's
environment. Start it with `celery -A support.fault_worker worker` (tests/ on PYTHONPATH).

Each variable names pairs, comma-separated, optionally `pair:seconds`:
  BQX_FAULT_SLEEP=eurusd:5   sleep before analysing the pair (time to kill or stop the worker)
  BQX_FAULT_KILL=eurusd      the child SIGKILLs itself at the start of the pair's analysis, every
                             delivery (what the OOM killer does to a pair past the host's memory)
  BQX_FAULT_HANG=eurusd:30   sleep deaf to the soft time limit and SIGTERM, as C++ code
                             (LightGBM) that only the hard limit's SIGKILL stops
  BQX_FAULT_KILL_UPLOAD=eurusd  on the pair's first delivery, the child SIGKILLs itself halfway
                             through writing the pair's summary (its ledger already written); on
                             a bucket, with half of the upload request's body sent
  BQX_FAULT_SPILL=eurusd     the pair's matrix goes to the scratch disk however small it is (the
                             disk itself is real: a test mounts a small tmpfs as scratch_dir)

The faults come where the product would meet them: at the start of the analysis, after the
delivery was counted and the cap checked (bqx_queue.celery.redelivery), and inside the real write path
of the summary. Each prefork child installs them when it starts (worker_process_init).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import redis
from celery.signals import worker_process_init

from bqx_queue.analysis import pair as analysis
from bqx_queue.artifacts.filesystem import is_local, write_whole
from bqx_queue.artifacts.run_folder import RunStore
from bqx_queue.celery import redelivery
from bqx_queue.celery.application import app
from bqx_queue.config import load_settings
from bqx_queue.domain import PairSummary
from bqx_queue.domain.keys import deliveries_key

log = logging.getLogger(__name__)
SPILL_MIN_BYTES = analysis.SPILL_MIN_BYTES

__all__ = ["app"]


def fault_seconds(variable: str, pair: str) -> float | None:
    """Seconds of the fault `variable` names for this pair (0 without a number); None if none."""
    for item in os.environ.get(variable, "").split(","):
        name, _, seconds = item.strip().partition(":")
        if name == pair:
            return float(seconds or 0)
    return None


def inject_faults(pair: str) -> None:
    """Kill, sleep, hang or spill at the start of a pair's analysis, as BQX_FAULT_* say."""
    analysis.SPILL_MIN_BYTES = 0 if fault_seconds("BQX_FAULT_SPILL", pair) is not None else SPILL_MIN_BYTES
    if fault_seconds("BQX_FAULT_KILL", pair) is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    sleep_s = fault_seconds("BQX_FAULT_SLEEP", pair)
    if sleep_s:
        time.sleep(sleep_s)
    hang_s = fault_seconds("BQX_FAULT_HANG", pair)
    if hang_s:
        # C++ holding the thread hears neither the soft limit (SIGUSR1) nor the pool's SIGTERM:
        # only the hard limit's SIGKILL ends it
        blocked = {signal.SIGUSR1, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        time.sleep(hang_s)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)


def with_faults(execute_pair: Callable[..., Any]) -> Callable[..., Any]:
    def execute_with_faults(store: RunStore, pair: str, *args: Any, **kwargs: Any) -> Any:
        inject_faults(pair)
        return execute_pair(store, pair, *args, **kwargs)

    return execute_with_faults


def first_delivery(run_id: str, pair: str) -> bool:
    count = redis.Redis.from_url(load_settings().broker_url).get(deliveries_key(run_id, pair))
    return int(count or 0) == 1


def killed_while_uploading(write_pair_summary: Callable[[RunStore, PairSummary], None]) -> Callable[..., None]:
    """BQX_FAULT_KILL_UPLOAD: on the pair's first delivery the child is SIGKILLed halfway through
    its summary, the artifact that marks the pair done, in the real write path: halfway through
    the temporary file on a local store; on a bucket, with half of the upload's request body sent
    to the server and the rest never."""

    def write_or_die(store: RunStore, summary: PairSummary) -> None:
        if fault_seconds("BQX_FAULT_KILL_UPLOAD", summary.pair) is None or not first_delivery(
            store.run_id, summary.pair
        ):
            return write_pair_summary(store, summary)
        path = store.pair_path(summary.pair)
        if not is_local(path):
            cut_uploads(path.fs)
            return write_pair_summary(store, summary)

        def half_then_die(handle: Any) -> None:
            text = json.dumps(summary.model_dump(mode="json")).encode()
            handle.write(text[: len(text) // 2])
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        write_whole(path, half_then_die)

    return write_or_die


def cut_uploads(fs: Any) -> None:
    """Make the filesystem's next one-request upload (gcsfs: a multipart POST) send half of its
    body to the server, log how much, and SIGKILL the process before the rest."""
    send = fs._call

    async def call(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        body = kwargs.get("data")
        if method == "POST" and kwargs.get("uploadType") == "multipart" and body is not None:
            whole = bytes(body)

            async def half_then_die() -> Any:
                yield whole[: len(whole) // 2]
                await asyncio.sleep(0.5)  # the first half is on the wire and read by the server
                log.warning("fault: killed mid-upload, %d of %d bytes sent", len(whole) // 2, len(whole))
                os.kill(os.getpid(), signal.SIGKILL)
                yield whole[len(whole) // 2 :]

            kwargs["data"] = half_then_die()
        return await send(method, path, *args, **kwargs)

    fs._call = call


@worker_process_init.connect
def install_faults(**_: Any) -> None:
    """In each new child: the pair's analysis (as bqx_queue.celery.redelivery calls it) starts with the
    faults, and a summary write can die halfway."""
    redelivery.execute_pair = with_faults(redelivery.execute_pair)  # type: ignore[assignment]
    RunStore.write_pair_summary = killed_while_uploading(RunStore.write_pair_summary)  # type: ignore[method-assign]
