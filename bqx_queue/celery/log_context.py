"""Log lines that say which run and pair they are about.

bqx_queue's code passes the run, the pair and other facts in a record's `extra`
(`log.error("giving up on a pair", extra={"run": ..., "pair": ...})`), which the standard
formatters drop. The worker's handlers get a formatter that appends them; bqx_queue.celery.application
installs it when Celery sets up the worker's logging.
"""

from __future__ import annotations

import logging

from celery.app.log import TaskFormatter
from celery.utils.log import ColorFormatter

# Attributes every record has, or that formatters add: whatever else a record holds came in `extra`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "task_id", "task_name"}
# Shown first, in this order; the rest of the fields follow in the order the code gave them.
FIRST_FIELDS = ("run", "pair")
# Only bqx_queue's own records: Celery's carry an `extra` of their own (already in their message).
LOGGER_PREFIX = "bqx_queue"


def record_context(record: logging.LogRecord) -> str:
    """Return the `extra` fields of a bqx_queue record as `run=... pair=... name=value`, or ''."""
    if not record.name.startswith(LOGGER_PREFIX):
        return ""
    fields = {name: value for name, value in vars(record).items() if name not in _STANDARD}
    order = [name for name in FIRST_FIELDS if name in fields] + [name for name in fields if name not in FIRST_FIELDS]
    return " ".join(f"{name}={fields[name]}" for name in order)


class ContextFormatter(ColorFormatter):
    """Celery's worker formatter, with the record's context after its message (before a traceback)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        context = record_context(record)
        return f"{line} [{context}]" if context else line


class TaskContextFormatter(TaskFormatter, ContextFormatter):
    """Celery's task-logger formatter (task name and id), with the record's context."""


def install_context_formatter(logger: logging.Logger, colorize: bool = False) -> None:
    """Give every handler of `logger` the context-rendering variant of its Celery formatter."""
    for handler in logger.handlers:
        current = handler.formatter
        if current is None or isinstance(current, ContextFormatter):
            continue
        kind = TaskContextFormatter if isinstance(current, TaskFormatter) else ContextFormatter
        handler.setFormatter(kind(current._fmt, use_color=colorize, datefmt=current.datefmt))
