"""What every command shares: its exit codes, its settings, and one line on stderr for a BqxError."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from bqx_queue.config import Settings, load_settings
from bqx_queue.domain import BqxError

EXIT_FAILED_PAIRS = 1
EXIT_BAD_INPUT = 2


def settings_of(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Return the settings of a command: its options over the environment, over its --config file
    (else BQX_CONFIG's), over the defaults; `args.host_overrides` (the demo's broker) over all."""
    # an option not given is None: the environment, the file or the default decides
    given = {name: value for name, value in overrides.items() if value is not None}
    return load_settings(getattr(args, "config", None), **given, **getattr(args, "host_overrides", {}))


def guarded(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command; a BqxError becomes one line on stderr and exit status 2."""
    try:
        return command(args)
    except BqxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def warn_damaged(run_id: str, summaries: dict[str, Any]) -> None:
    """Print one line per damaged pair: the file, what is wrong, and how to recover."""
    from bqx_queue.domain import PairStatus

    for pair, summary in summaries.items():
        if summary.status is PairStatus.DAMAGED:
            print(
                f"warning: pair {pair} {summary.error}: `bqx-enqueue --resume {run_id}` runs it again", file=sys.stderr
            )
