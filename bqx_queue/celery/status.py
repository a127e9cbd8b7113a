"""The live view of a run: pairs done, running (on which worker), failed, queued, cost, ETA.

Finished pairs come from the run folder (each pair's summary is written when it ends); running
pairs come from the workers themselves (`inspect().active()`: every task whose arguments name
this run), so the view works from any machine that reaches the broker and the run folder.
`bqx status RUN_ID` prints it once; `bqx-enqueue --wait` and `bqx status --watch` follow it
until the report is written. A pair whose artifacts are damaged shows as damaged, with the file
and the problem (bqx_queue.artifacts.run_folder); `bqx-enqueue --resume` runs it again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from bqx_queue.artifacts import RunStore, modified_at
from bqx_queue.domain import BrokerError, DamagedArtifact, PairStatus, PairSummary, RunEstimate, RunManifest

log = logging.getLogger(__name__)

STATES = (PairStatus.OK, PairStatus.RUNNING, PairStatus.FAILED, PairStatus.DAMAGED, PairStatus.QUEUED)
ENDED = (PairStatus.OK, PairStatus.FAILED, PairStatus.DAMAGED)
# what a person reads for a state whose value says it less well ("3 done", not "3 ok")
LABELS = {PairStatus.OK: "done"}
PROCESS_PAIR = "bqx.process_pair"


@dataclass(frozen=True)
class RunningPair:
    """A pair a worker is running now, as the worker reports it."""

    pair: str
    worker: str  # Celery node name, e.g. w1@host
    pid: int | None
    started_at: datetime | None
    task_id: str


@dataclass(frozen=True)
class PairState:
    pair: str
    state: PairStatus
    worker: str = ""  # node name while running; host:pid once finished
    started_at: datetime | None = None
    wall_s: float | None = None
    cost_usd: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class RunStatus:
    """One look at a run. `workers_answered` is False when no worker could be asked (then
    pairs that are running show as queued)."""

    run_id: str
    pairs: tuple[PairState, ...]
    created_at: datetime
    observed_at: datetime
    slots: int
    estimate: RunEstimate | None = None  # the producer's, when the manifest has one
    report_path: Path | None = None
    workers_answered: bool = False
    report_damage: str | None = None  # why a report.json that exists does not count

    def having(self, state: PairStatus) -> list[PairState]:
        return [p for p in self.pairs if p.state is state]

    @property
    def counts(self) -> dict[PairStatus, int]:
        return {state: len(self.having(state)) for state in STATES}

    @property
    def cost_usd(self) -> float:
        return sum(p.cost_usd for p in self.pairs)

    @property
    def elapsed_s(self) -> float:
        return max(0.0, (self.observed_at - self.created_at).total_seconds())

    @property
    def finished(self) -> bool:
        return self.report_path is not None

    @property
    def eta_s(self) -> float | None:
        """Seconds until the last pair ends, from the mean time of finished pairs spread over the
        run's slots; None until a pair has finished (nothing to measure by)."""
        counts = self.counts
        if counts[PairStatus.RUNNING] == 0 and counts[PairStatus.QUEUED] == 0:
            return 0.0
        walls = [p.wall_s for p in self.pairs if p.state in ENDED and p.wall_s]
        if not walls:
            return None
        mean = sum(walls) / len(walls)
        running_left = sum(
            max(mean - (self.observed_at - p.started_at).total_seconds(), 0.0) if p.started_at else mean
            for p in self.having(PairStatus.RUNNING)
        )
        slots = max(self.slots, counts[PairStatus.RUNNING], 1)
        return (running_left + mean * counts[PairStatus.QUEUED]) / slots


def running_pairs(app: Any, run_id: str, timeout_s: float = 1.0) -> dict[str, RunningPair] | None:
    """Return pair -> where it runs, for this run's process_pair tasks the workers are running;
    None when the broker cannot be asked. Workers that do not answer within the timeout are
    not counted."""
    try:
        active = app.control.inspect(timeout=timeout_s).active() or {}
    except Exception as exc:  # the broker is down or unreachable: show what the files say
        log.warning("cannot ask the workers", extra={"run": run_id, "error": str(exc)})
        return None
    running: dict[str, RunningPair] = {}
    for node, requests in sorted(active.items()):
        for request in requests or []:
            args = list(request.get("args") or [])
            kwargs = request.get("kwargs") or {}
            task_run = kwargs.get("run_id", args[0] if args else None)
            pair = kwargs.get("pair", args[1] if len(args) > 1 else None)
            if request.get("name") != PROCESS_PAIR or task_run != run_id or not pair:
                continue
            time_start = request.get("time_start")  # the worker's clock, in epoch seconds
            running[pair] = RunningPair(
                pair,
                node,
                request.get("worker_pid"),
                datetime.fromtimestamp(time_start, UTC) if time_start else None,
                request.get("id", ""),
            )
    return running


def _finished_at(summaries: dict[str, PairSummary], report: Path) -> datetime:
    """Return when a finished run ended: its last pair, else when its report was written."""
    ends = [s.finished_at for s in summaries.values() if s.finished_at]
    return max(ends) if ends else modified_at(report)


def _current_summaries(summaries: dict[str, PairSummary], manifest: RunManifest) -> dict[str, PairSummary]:
    """Return the pair summaries that still count: after `bqx-enqueue --resume`, a failed pair's
    old summary no longer does (the pair is queued or running again)."""
    if not manifest.resumes:
        return summaries
    last = manifest.resumes[-1]
    return {
        pair: summary
        for pair, summary in summaries.items()
        if not (
            pair in last.pairs and not summary.ok and (summary.finished_at is None or summary.finished_at < last.at)
        )
    }


def run_status(store: RunStore, app: Any = None, timeout_s: float = 1.0) -> RunStatus:
    """Return the run's status now: finished pairs from the run folder, running ones from the
    workers (when `app` is given), everything else queued."""
    manifest = store.manifest()
    # Report, then workers, then pair files: a pair that ends while we look is then seen as done
    # (its file wins), never as still running in a finished run, nor as queued.
    report = store.report_path
    finished = report.exists() and store.modified_at(report) >= store.modified_at(store.manifest_path)
    report_damage = None
    if finished:  # still finished (a watch ends), but the view says the report must be rebuilt
        try:
            store.report()
        except DamagedArtifact as exc:
            report_damage = str(exc)
    asked = app is not None and not finished
    running = running_pairs(app, store.run_id, timeout_s) if asked else None
    summaries = _current_summaries(store.pair_summaries(), manifest)
    states = []
    for pair in manifest.pairs:
        summary = summaries.get(pair)
        if summary is not None:
            started = summary.started_at
            wall = summary.wall_s
            if summary.finished_at and started:
                wall = (summary.finished_at - started).total_seconds()
            states.append(
                PairState(
                    pair,
                    summary.status,
                    worker=f"{summary.worker or summary.host}:{summary.pid}",
                    started_at=started,
                    wall_s=wall,
                    cost_usd=summary.cost_usd,
                    error=summary.error,
                )
            )
        elif running and pair in running:
            where = running[pair]
            worker = f"{where.worker}:{where.pid}" if where.pid else where.worker
            states.append(PairState(pair, PairStatus.RUNNING, worker=worker, started_at=where.started_at))
        else:
            states.append(PairState(pair, PairStatus.QUEUED))
    return RunStatus(
        run_id=store.run_id,
        pairs=tuple(states),
        created_at=manifest.created_at,
        observed_at=_finished_at(summaries, report) if finished else datetime.now(UTC),
        slots=manifest.slots,
        estimate=manifest.estimate,
        report_path=report if finished else None,
        workers_answered=running is not None or finished,
        report_damage=report_damage,
    )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def status_line(status: RunStatus) -> str:
    """Return the run's status as one line (for logs and for a terminal that is not one)."""
    counts = status.counts
    estimate = f" (estimate ${status.estimate.cost_usd:.4f})" if status.estimate is not None else ""
    tail = "report written" if status.finished else f"eta {_duration(status.eta_s)}"
    ok, running, failed, damaged, queued = (counts[state] for state in STATES)
    return (
        f"run {status.run_id}: {ok} done, {running} running, {failed} failed, "
        + (f"{damaged} damaged, " if damaged else "")
        + f"{queued} queued of {len(status.pairs)}; cost so far ${status.cost_usd:.4f}{estimate}; "
        f"elapsed {_duration(status.elapsed_s)}; {tail}"
    )


def _bar(finished: int, total: int, width: int = 40) -> Text:
    filled = round(width * finished / max(total, 1))
    bar = Text("━" * filled, style="green") + Text("━" * (width - filled), style="grey37")
    return bar + Text(f" {finished}/{total} pairs finished")


def render_status(status: RunStatus) -> RenderableType:
    """Return the run's status for a terminal: a summary line, a bar, and a row per pair that
    is running or failed (queued and done pairs are listed by name)."""
    counts = status.counts
    finished = sum(counts[state] for state in ENDED)
    parts: list[RenderableType] = [
        Text(status_line(status), style="bold"),
        _bar(finished, len(status.pairs)),
    ]
    if not status.workers_answered and not status.finished:
        parts.append(
            Text(
                "workers were not asked (or did not answer): running pairs show as queued",
                style="yellow",
            )
        )
    active = status.having(PairStatus.RUNNING) + status.having(PairStatus.FAILED) + status.having(PairStatus.DAMAGED)
    if active:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("pair", "state", "worker", "for", "note"):
            table.add_column(column)
        for pair in active:
            running = pair.state is PairStatus.RUNNING
            since = pair.wall_s
            if running and pair.started_at:
                since = (status.observed_at - pair.started_at).total_seconds()
            style = "cyan" if running else "red"
            table.add_row(
                pair.pair,
                Text(pair.state, style=style),
                pair.worker,
                _duration(since),
                pair.error or "",
            )
        parts.append(table)
    for state in (PairStatus.QUEUED, PairStatus.OK):
        names = [p.pair for p in status.having(state)]
        if names:
            label = LABELS.get(state, state.value)
            parts.append(Text(f"{label}: {', '.join(names)}", style="dim" if state is PairStatus.QUEUED else "green"))
    if status.finished:
        parts.append(Text(f"report: {status.report_path}"))
    if status.report_damage:
        parts.append(Text(f"report not counted: {status.report_damage}: `bqx report {status.run_id}` rebuilds it"))
    if counts[PairStatus.DAMAGED]:
        parts.append(
            Text(f"damaged pairs are not done: `bqx-enqueue --resume {status.run_id}` runs them again", style="yellow")
        )
    return Group(*parts)


def watch_run(
    store: RunStore,
    result: Any = None,
    console: Console | None = None,
    poll_s: float = 1.0,
    app: Any = None,
) -> Path:
    """Follow a run until its report is written and return the report path.

    On a terminal the view redraws in place; elsewhere a status line is printed whenever the
    counts change. Raises BrokerError if the chord's report task (`result`) failed. The Celery
    `app` is asked about running pairs (without it, running pairs show as queued).
    """
    console = console or Console(stderr=True)
    last_line = ""

    def look() -> RunStatus:
        if result is not None and result.failed():
            raise BrokerError(f"run {store.run_id}: the report task failed: {result.result!r}")
        return run_status(store, app)

    status = look()
    if console.is_terminal:
        with Live(render_status(status), console=console, auto_refresh=False, transient=False) as live:
            while not status.finished:
                time.sleep(poll_s)
                status = look()
                live.update(render_status(status), refresh=True)
    else:
        while True:
            line = status_line(status)
            counts_part = line.split("; cost")[0]
            if counts_part != last_line or status.finished:
                console.print(line, highlight=False, soft_wrap=True)
                last_line = counts_part
            if status.finished:
                break
            time.sleep(poll_s)
            status = look()
    assert status.report_path is not None
    return status.report_path
