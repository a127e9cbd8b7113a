"""Reading what the store holds, and saying in one line what is wrong with it.

A run folder outlives the process that wrote it: a disk fills, a sync tool copies half a file,
someone edits a summary by hand, a bucket object is overwritten. Every reader of a stored JSON
or Parquet file goes through here, so a damaged file is a DamagedArtifact naming the file and
the problem (never a parser's traceback), and a Parquet file a summary vouches for is checked
against the size and SHA-256 the summary recorded (a flipped byte that still parses is caught).
The manifest and the pair summaries are sealed: written with the SHA-256 of their own content, so
an edit that still parses (a pair's name, a day, a count) is caught too; files written before
seals were recorded have none.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ValidationError

from bqx_queue.artifacts.filesystem import ArtifactPath
from bqx_queue.domain import ARTIFACT_FORMAT, ArtifactDigest, DamagedArtifact

Model = TypeVar("Model", bound=BaseModel)
SEAL = "sha256"  # the key of a sealed JSON artifact's own digest


def _content_digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def sealed(body: dict[str, Any]) -> dict[str, Any]:
    """Return a JSON artifact's content with the SHA-256 of that content under SEAL."""
    return body | {SEAL: _content_digest(body)}


def unsealed(path: ArtifactPath, data: Any, model: type[BaseModel], what: str) -> dict[str, Any]:
    """Return a sealed artifact's content without its seal; DamagedArtifact when it is not an
    object, has keys its model does not know (a damaged key), or differs from its seal."""
    if not isinstance(data, dict):
        raise DamagedArtifact(f"{path}: not a {what}: a JSON {type(data).__name__} where an object was expected")
    unknown = sorted(set(data) - set(model.model_fields) - {SEAL})
    if unknown:
        raise DamagedArtifact(f"{path}: not a {what}: unknown keys {', '.join(map(repr, unknown[:3]))}")
    body = {key: value for key, value in data.items() if key != SEAL}
    if SEAL in data and data[SEAL] != _content_digest(body):
        raise DamagedArtifact(f"{path}: content differs from the SHA-256 it was written with: edited or damaged since")
    return body


def read_bytes(path: ArtifactPath) -> bytes:
    """Return the file's bytes; DamagedArtifact when it is missing or cannot be read."""
    try:
        return bytes(path.read_bytes())
    except FileNotFoundError:
        raise DamagedArtifact(f"{path}: missing") from None
    except OSError as exc:
        raise DamagedArtifact(f"{path}: cannot be read: {exc.strerror or exc}") from None


def parse_json(path: ArtifactPath, data: bytes) -> Any:
    """Return the JSON in `data`; DamagedArtifact naming the file when it is not JSON."""
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise DamagedArtifact(f"{path}: not JSON (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        cut = " (cut off: truncated?)" if exc.pos >= len(exc.doc.rstrip()) else ""
        raise DamagedArtifact(f"{path}: not JSON: {exc.msg} at byte {exc.pos} of {len(data)}{cut}") from None


def validated(path: ArtifactPath, data: Any, model: type[Model], what: str) -> Model:
    """Return `data` as `model`; DamagedArtifact for another shape or a newer format version."""
    if isinstance(data, dict) and isinstance(data.get("format"), int) and data["format"] > ARTIFACT_FORMAT:
        raise DamagedArtifact(
            f"{path}: {what} of format {data['format']}, from a newer bqx-queue (this one reads up to "
            f"{ARTIFACT_FORMAT}): upgrade bqx-queue"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise DamagedArtifact(f"{path}: not a {what}: {validation_problem(exc)}") from None


def validation_problem(exc: ValidationError, shown: int = 3) -> str:
    """Return a pydantic error as one short line: its first `shown` problems and how many more.
    A misspelt key is two problems (the declared field missing, the misspelt one unknown), and a
    user needs both names to mend the file."""
    errors = exc.errors(include_url=False)
    problems = [f"{'.'.join(str(part) for part in error['loc']) or 'the document'}: {error['msg']}" for error in errors]
    more = f" (and {len(errors) - shown} more problems)" if len(errors) > shown else ""
    return "; ".join(problems[:shown]) + more


def read_model(path: ArtifactPath, model: type[Model], what: str, seal: bool = False) -> Model:
    """Return the JSON file at `path` as `model` (checked against its seal when the kind of
    artifact is sealed); DamagedArtifact naming the file otherwise."""
    data = parse_json(path, read_bytes(path))
    return validated(path, unsealed(path, data, model, what) if seal else data, model, what)


def read_json(path: ArtifactPath) -> Any:
    """Return the JSON file at `path` (any shape); DamagedArtifact when missing or not JSON."""
    return parse_json(path, read_bytes(path))


def digest_of(path: ArtifactPath, data: bytes) -> ArtifactDigest:
    """Return what a summary records to vouch for the file it points to."""
    return ArtifactDigest(file=path.name, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


def check_digest(path: ArtifactPath, data: bytes, digest: ArtifactDigest) -> None:
    """Raise DamagedArtifact when `data` is not the bytes the digest was taken of."""
    if len(data) != digest.bytes:
        shorter = ": truncated" if len(data) < digest.bytes else ""
        raise DamagedArtifact(f"{path}: {len(data):,} bytes where its summary recorded {digest.bytes:,}{shorter}")
    if hashlib.sha256(data).hexdigest() != digest.sha256:
        raise DamagedArtifact(f"{path}: SHA-256 differs from its summary's: changed since it was written")


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """Return the frame as a Parquet file's bytes (hashed before they are written)."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def parse_parquet(path: ArtifactPath, data: bytes) -> pa.Table:
    """Return the Parquet file in `data`; DamagedArtifact naming the file when it is not Parquet."""
    try:
        return pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DamagedArtifact(f"{path}: not Parquet: {str(exc).splitlines()[0]}") from None


def read_table(path: ArtifactPath, digest: ArtifactDigest | None = None) -> pa.Table:
    """Return the Parquet file at `path`, checked against `digest` when a summary recorded one."""
    data = read_bytes(path)
    if digest is not None:
        check_digest(path, data, digest)
    return parse_parquet(path, data)


def read_parquet(path: ArtifactPath, digest: ArtifactDigest | None = None) -> pd.DataFrame:
    """Return read_table's file as a DataFrame."""
    return read_table(path, digest).to_pandas()
