"""The run folder: manifest, one summary and ledger per pair, the shared-table index and the
report, in a local folder or a bucket (runs_dir may be gs://bucket/prefix or s3://...; see
bqx_queue.artifacts.filesystem). Every write is whole or absent for readers on any host
(storage.write_whole), so a pair's summary, written after its ledger, is what marks the pair
done, and a repeated pair simply replaces its artifacts.

Reading is where damage shows (bqx_queue.artifacts): a damaged manifest stops every command with
one line; a damaged pair summary or ledger makes the pair DAMAGED, which is not done, so the report
lists it and `bqx-enqueue --resume` runs it again."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import pandas as pd
from pydantic import BaseModel

from bqx_queue.artifacts import reader as artifacts
from bqx_queue.artifacts.filesystem import ArtifactPath, artifact_root, children, modified_at, write_whole
from bqx_queue.domain import (
    ArtifactDigest,
    BqxError,
    DamagedArtifact,
    PairStatus,
    PairSummary,
    Report,
    RunManifest,
    SharedIndex,
)

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
        # ledgers found intact, by (path, size, mtime): a watched run does not hash them every poll
        self._intact: set[tuple[str, int, float]] = set()

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

    @property
    def shared_index_path(self) -> ArtifactPath:
        """Return where the run's shared-table index is (whether or not the run has one)."""
        return self.root / "shared" / "index.json"

    def shared_index(self) -> SharedIndex:
        """Return the run's shared-table index; DamagedArtifact naming the file when it is damaged."""
        return artifacts.read_model(self.shared_index_path, SharedIndex, "shared-table index")

    def write_json(self, path: ArtifactPath, data: Any) -> None:
        write_json_atomic(path, data)

    def write_text(self, path: ArtifactPath, text: str) -> None:
        write_whole(path, lambda handle: handle.write(text.encode()))

    def write_parquet(self, path: ArtifactPath, frame: pd.DataFrame) -> ArtifactDigest:
        """Write the frame as Parquet and return its digest (for the summary that vouches for it)."""
        data = artifacts.parquet_bytes(frame)
        write_whole(path, lambda handle: handle.write(data))
        return artifacts.digest_of(path, data)

    def read_json(self, path: ArtifactPath) -> Any:
        return artifacts.read_json(path)

    def modified_at(self, path: ArtifactPath) -> datetime:
        return modified_at(path)

    def manifest(self) -> RunManifest:
        """Return the run's manifest; one clear line for an unknown run or a damaged manifest."""
        if not self.manifest_path.exists():
            raise BqxError(f"run {self.run_id} has no manifest at {self.manifest_path}")
        manifest = artifacts.read_model(self.manifest_path, RunManifest, "run manifest", seal=True)
        if manifest.run_id != self.run_id:
            raise DamagedArtifact(
                f"{self.manifest_path}: holds the manifest of run {manifest.run_id}, not {self.run_id}"
            )
        return manifest

    def write_manifest(self, manifest: RunManifest) -> None:
        self.write_json(self.manifest_path, artifacts.sealed(manifest.model_dump(mode="json")))

    def pair_summaries(self) -> dict[str, PairSummary]:
        """Return pair -> its summary, for every pair with one; a damaged pair's is DAMAGED."""
        return {p.stem: self._checked_summary(p.stem, p) for p in children(self.root / "pairs", "*.json")}

    def pair_summary(self, pair: str) -> PairSummary | None:
        """Return the pair's summary (DAMAGED when its artifacts are), or None before it ends."""
        path = self.pair_path(pair)
        return self._checked_summary(pair, path) if path.exists() else None

    def _checked_summary(self, pair: str, path: ArtifactPath) -> PairSummary:
        try:
            summary = artifacts.read_model(path, PairSummary, "pair summary", seal=True)
            if summary.pair != pair:
                raise DamagedArtifact(f"{path}: holds the summary of pair {summary.pair}, not {pair}")
            if summary.ok:
                self._check_ledger(pair, summary)
        except DamagedArtifact as exc:
            return PairSummary(pair=pair, status=PairStatus.DAMAGED, error=f"damaged: {exc}")
        return summary

    def _check_ledger(self, pair: str, summary: PairSummary) -> None:
        """Raise DamagedArtifact unless the ledger is the one the summary vouches for (a summary
        written before digests were recorded: unless it reads as Parquet)."""
        path = self.ledger_path(pair)
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise DamagedArtifact(f"{path}: missing, though its summary says the pair finished") from None
        seen = (str(path), int(stat.st_size), float(stat.st_mtime))
        if seen in self._intact:
            return
        data = artifacts.read_bytes(path)
        if summary.ledger is not None:
            artifacts.check_digest(path, data, summary.ledger)
        else:
            artifacts.parse_parquet(path, data)
        self._intact.add(seen)

    def ledger(self, summary: PairSummary) -> pd.DataFrame:
        """Return an ok pair's ledger, checked against its summary's digest."""
        return artifacts.read_parquet(self.ledger_path(summary.pair), summary.ledger)

    def write_pair_summary(self, summary: PairSummary) -> None:
        """Write a pair's summary: the artifact that marks the pair done (ok or failed)."""
        self.write_json(self.pair_path(summary.pair), artifacts.sealed(summary.model_dump(mode="json")))

    def report(self) -> Report:
        return artifacts.read_model(self.report_path, Report, "run report")

    def write_report(self, report: Report) -> None:
        self.write_json(self.report_path, report.model_dump(mode="json"))


def write_json_atomic(path: ArtifactPath, data: Any) -> None:
    """Write JSON (a pydantic model is dumped first) so a concurrent reader sees the old file or
    the whole new one."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    text = json.dumps(data, indent=2, default=str)
    write_whole(path, lambda handle: handle.write(text.encode()))
