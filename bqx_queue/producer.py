"""The producer side of a run: broker and worker checks, the chord, and watching progress."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import redis
from celery import Celery, chord
from celery.result import AsyncResult
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bqx_queue.config import redact_url
from bqx_queue.errors import BrokerError
from bqx_queue.store import RunStore


def check_broker(url: str, timeout_s: float = 3.0) -> None:
    """Raise BrokerError within `timeout_s` if the Redis broker does not answer a PING."""
    try:
        redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s).ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        raise BrokerError(f"cannot reach broker {redact_url(url)}: {exc}") from None


def live_workers(app: Celery, timeout_s: float = 2.0) -> dict[str, int]:
    """Return worker node name -> pool size, for every worker that answers within the timeout."""
    stats = app.control.inspect(timeout=timeout_s).stats() or {}
    return {name: int(info.get("pool", {}).get("max-concurrency", 0)) for name, info in sorted(stats.items())}


def enqueue_run(manifest: dict[str, Any]) -> AsyncResult:
    """Enqueue chord(process_pair per pair) -> build_report; returns the callback's result."""
    from bqx_queue.tasks import build_report, process_pair

    run_id = manifest["run_id"]
    header = [process_pair.s(run_id, pair) for pair in manifest["pairs"]]
    return chord(header)(build_report.s(run_id))


def wait_for_report(
    store: RunStore, pairs: list[str], result: AsyncResult | None, console: Console, poll_s: float = 0.5
) -> Path:
    """Show pairs done / total with an ETA until the report is written; return its path."""
    columns = (
        TextColumn("[bold]pairs"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
    )  # fmt: skip
    started_at = store.manifest_path.stat().st_mtime
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("pairs", total=len(pairs))
        while True:
            done = sum(1 for p in pairs if store.pair_path(p).exists())
            progress.update(task, completed=done)
            if store.report_path.exists() and store.report_path.stat().st_mtime >= started_at:
                return store.report_path
            if result is not None and result.failed():
                raise BrokerError(f"run {store.run_id}: the report task failed: {result.result!r}")
            time.sleep(poll_s)
