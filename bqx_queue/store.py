"""The run folder: manifest, one summary and ledger per pair, and the report. Writes are atomic
(temporary file, then rename), so a reader never sees half a file and a repeated pair simply
replaces its own artifact."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from bqx_queue.errors import BqxError

# A run id names a folder: no separators, no "..", nothing a shell or a path would read twice.
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_run_id(run_id: str) -> str:
    """Return run_id if it is a safe folder name; raise BqxError otherwise."""
    if not RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise BqxError(f"run id {run_id!r} is not allowed: use letters, digits, '-', '_' and '.'")
    return run_id


class RunStore:
    def __init__(self, runs_dir: Path | str, run_id: str) -> None:
        self.run_id = check_run_id(run_id)
        self.root = Path(runs_dir) / run_id

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def report_path(self) -> Path:
        return self.root / "report.json"

    def pair_path(self, pair: str) -> Path:
        return self.root / "pairs" / f"{pair}.json"

    def ledger_path(self, pair: str) -> Path:
        return self.root / "pairs" / f"{pair}.ledger.parquet"

    def write_json(self, path: Path, data: Any) -> None:
        write_json_atomic(path, data)

    def write_text(self, path: Path, text: str) -> None:
        _atomic(path, lambda tmp: tmp.write_text(text))

    def write_parquet(self, path: Path, frame: pd.DataFrame) -> None:
        _atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))

    def read_json(self, path: Path) -> Any:
        return json.loads(path.read_text())

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            raise BqxError(f"run {self.run_id} has no manifest at {self.manifest_path}")
        return self.read_json(self.manifest_path)

    def pair_summaries(self) -> dict[str, dict[str, Any]]:
        folder = self.root / "pairs"
        if not folder.exists():
            return {}
        return {p.stem: self.read_json(p) for p in sorted(folder.glob("*.json"))}

    def pair_summary(self, pair: str) -> dict[str, Any] | None:
        path = self.pair_path(pair)
        return self.read_json(path) if path.exists() else None


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so a concurrent reader sees the old file or the whole new one."""
    _atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, default=str)))


def _atomic(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
