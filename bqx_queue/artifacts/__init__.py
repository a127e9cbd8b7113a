"""The artifact store: where a run's files live (a folder or a bucket) and how they are read back.

- `filesystem`: a location as a path on any fsspec filesystem (`artifact_root`), written whole
  and atomically (`write_whole`), listed and removed.
- `reader`: every stored JSON or Parquet file is read through here, so a damaged one is a
  `DamagedArtifact` naming the file and the problem; `sealed` artifacts carry their own digest.
- `run_folder`: `RunStore`, one run's folder (manifest, pair summaries, report) and its layout.

Other layers import these names from `bqx_queue.artifacts` (`from bqx_queue import artifacts`
then `artifacts.read_model(...)` reads as the module did).
"""

from bqx_queue.artifacts.filesystem import (
    ArtifactPath,
    artifact_root,
    children,
    is_local,
    modified_at,
    remove,
    write_whole,
)
from bqx_queue.artifacts.reader import (
    SEAL,
    check_digest,
    digest_of,
    parquet_bytes,
    parse_parquet,
    read_bytes,
    read_json,
    read_model,
    read_parquet,
    read_table,
    sealed,
    validation_problem,
)
from bqx_queue.artifacts.run_folder import RunStore, check_run_id, write_json_atomic

__all__ = [
    "SEAL",
    "ArtifactPath",
    "RunStore",
    "artifact_root",
    "check_digest",
    "check_run_id",
    "children",
    "digest_of",
    "is_local",
    "modified_at",
    "parquet_bytes",
    "parse_parquet",
    "read_bytes",
    "read_json",
    "read_model",
    "read_parquet",
    "read_table",
    "remove",
    "sealed",
    "validation_problem",
    "write_json_atomic",
    "write_whole",
]
