"""The run folder: manifest, one summary and ledger per pair, and the report, in a local folder
or a bucket (runs_dir may be gs://bucket/prefix or s3://...; see bqx_queue.storage). Every write
is whole or absent for readers on any host (storage.write_whole), so a pair's summary, written
after its ledger, is what marks the pair done, and a repeated pair simply replaces its artifacts."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pandas as pd
from pydantic import BaseModel

from bqx_queue.errors import BqxError
from bqx_queue.models import PairSummary, Report, RunManifest
from bqx_queue.storage import ArtifactPath, artifact_root, children, modified_at, write_whole

# A run id names a folder: no separators, no "..", nothing a shell or a path would read twice.
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_run_id(run_id: str) -> str:
    """Return run_id if it is a safe folder name; raise BqxError otherwise."""
    if not RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise BqxError(f"run id {run_id!r} is not allowed: use letters, digits, '-', '_' and '.'")
    return run_id


class RunStore:
    """One run's artifacts under runs_dir/RUN_ID; paths are pathlib.Path locally, UPath in a bucket."""

    def __init__(self, runs_dir: Any, run_id: str) -> None:
        self.run_id = check_run_id(run_id)
        self.runs_root = artifact_root(runs_dir)
        self.root = self.runs_root / run_id

    @property
    def manifest_path(self) -> ArtifactPath:
        return self.root / "manifest.json"

    @property
    def report_path(self) -> ArtifactPath:
        return self.root / "report.json"

    def pair_path(self, pair: str) -> ArtifactPath:
        return self.root / "pairs" / f"{pair}.json"

    def ledger_path(self, pair: str) -> ArtifactPath:
        return self.root / "pairs" / f"{pair}.ledger.parquet"

    def write_json(self, path: ArtifactPath, data: Any) -> None:
        write_json_atomic(path, data)

    def write_text(self, path: ArtifactPath, text: str) -> None:
        write_whole(path, lambda handle: handle.write(text.encode()))

    def write_parquet(self, path: ArtifactPath, frame: pd.DataFrame) -> None:
        write_whole(path, lambda handle: frame.to_parquet(handle, index=False))

    def read_json(self, path: ArtifactPath) -> Any:
        return json.loads(path.read_text())

    def read_parquet(self, path: ArtifactPath) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(path.read_bytes()))

    def modified_at(self, path: ArtifactPath) -> float:
        return modified_at(path)

    def manifest(self) -> RunManifest:
        if not self.manifest_path.exists():
            raise BqxError(f"run {self.run_id} has no manifest at {self.manifest_path}")
        return RunManifest.model_validate(self.read_json(self.manifest_path))

    def write_manifest(self, manifest: RunManifest) -> None:
        self.write_json(self.manifest_path, manifest.model_dump(mode="json"))

    def pair_summaries(self) -> dict[str, PairSummary]:
        return {p.stem: PairSummary.model_validate(self.read_json(p)) for p in children(self.root / "pairs", "*.json")}

    def pair_summary(self, pair: str) -> PairSummary | None:
        path = self.pair_path(pair)
        return PairSummary.model_validate(self.read_json(path)) if path.exists() else None

    def write_pair_summary(self, summary: PairSummary) -> None:
        """Write a pair's summary: the artifact that marks the pair done (ok or failed)."""
        self.write_json(self.pair_path(summary.pair), summary.model_dump(mode="json"))

    def report(self) -> Report:
        return Report.model_validate(self.read_json(self.report_path))

    def write_report(self, report: Report) -> None:
        self.write_json(self.report_path, report.model_dump(mode="json"))


def write_json_atomic(path: ArtifactPath, data: Any) -> None:
    """Write JSON (a pydantic model is dumped first) so a concurrent reader sees the old file or
    the whole new one."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    text = json.dumps(data, indent=2, default=str)
    write_whole(path, lambda handle: handle.write(text.encode()))
