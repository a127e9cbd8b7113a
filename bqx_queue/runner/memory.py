"""Resident memory of the running task: its peak for the report, and a budget it may not pass.

Celery checks worker_max_memory_per_child only after a task ends, so it cannot stop a pair
that is about to take the host down. This watch samples RSS on a thread and, past the budget,
raises MemoryBudgetExceeded in the task's thread (delivered at its next Python instruction).
"""

from __future__ import annotations

import ctypes
import threading
from types import TracebackType

import psutil

from bqx_queue.domain import MemoryBudgetExceeded

GIB = 1024**3


class MemoryWatch:
    """Context manager: `peak_bytes` after exit; stops the watched thread past `budget_bytes`."""

    def __init__(self, budget_bytes: int | None, interval_s: float = 0.05) -> None:
        self.budget_bytes = budget_bytes
        self.interval_s = interval_s
        self.process = psutil.Process()
        self.peak_bytes = self.process.memory_info().rss
        self.exceeded_bytes: int | None = None
        self._stop = threading.Event()
        self._target = threading.get_ident()
        self._thread = threading.Thread(target=self._run, name="bqx-memory-watch", daemon=True)

    def __enter__(self) -> MemoryWatch:
        self._target = threading.get_ident()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self._stop.set()
            self._thread.join()
        finally:
            # the watcher may have fired just as the block ended: cancel the pending exception
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._target), None)
        self._sample()
        if self.exceeded_bytes is not None:
            raise MemoryBudgetExceeded(self.message()) from None

    def message(self) -> str:
        used = (self.exceeded_bytes or self.peak_bytes) / GIB
        return f"memory budget exceeded: resident {used:.2f} GiB > budget {(self.budget_bytes or 0) / GIB:.2f} GiB"

    def _sample(self) -> int:
        rss = self.process.memory_info().rss
        self.peak_bytes = max(self.peak_bytes, rss)
        return rss

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            rss = self._sample()
            if self.budget_bytes and rss > self.budget_bytes and self.exceeded_bytes is None:
                self.exceeded_bytes = rss
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self._target), ctypes.py_object(MemoryBudgetExceeded)
                )
