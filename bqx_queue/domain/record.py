"""What every artifact model shares: `Record` (unknown keys refused, absent fields left out of the
JSON), the bounded number types, `Timestamp`, the closed vocabularies, the artifact format and
`PairStatus`.

The JSON files of a run folder (manifest.json, pairs/PAIR.json, report.json) are models of this
package dumped; report.schema.json is generated from `Report` (`python -m bqx_queue.report.schema`).
The domain imports nothing from the rest of the package, so every layer may use it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    model_serializer,
)

# The format of the run folder's JSON artifacts (manifest, pair summaries): a reader refuses a
# newer one in one line rather than misreading it. Files written before it was recorded are 1.
ARTIFACT_FORMAT = 1

Fraction = Annotated[float, Field(ge=0, le=1)]
Count = Annotated[int, Field(ge=0)]
# the basis column through which a feature entered selection (analysis/basis.py Shape)
FeatureShape = Literal["linear", "absolute", "product", "gate"]
# the kind of warehouse a run read (warehouse/interface.py WarehouseSource.kind)
SourceKind = Literal["duckdb", "parquet", "bigquery"]


def _in_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


# When something happened, the one time type of every artifact: zone-aware and held in UTC, so
# times from different hosts subtract. Artifacts written before it read as it (ISO strings, and
# epoch seconds where pair summaries recorded them); a time without a zone is refused, since its
# host's zone is unknown. Written with isoformat(), as the strings were, so a plan's approval
# digest over its written_at still matches.
Timestamp = Annotated[
    AwareDatetime,
    AfterValidator(_in_utc),
    PlainSerializer(datetime.isoformat, return_type=str, when_used="json"),
]


class Record(BaseModel):
    """A model that refuses keys it does not declare (a misspelt key fails where it is written,
    not silently downstream), and whose unset optional fields (None) stay out of its JSON; the
    fields named in `keep_none` are written even when None."""

    model_config = ConfigDict(extra="forbid")
    keep_none: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _without_absent(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        fields = type(self).model_fields
        return {
            key: value
            for key, value in data.items()
            if value is not None or key in self.keep_none or fields[key].is_required()
        }


class PairStatus(StrEnum):
    """Where a pair is in a run, one vocabulary for the artifacts, the task messages and `bqx
    status`: queued, running, then how it (or one of its horizons) ended."""

    QUEUED = "queued"  # never written: enqueued, and no worker reports it running
    RUNNING = "running"  # never written: a worker reports it running
    OK = "ok"
    FAILED = "failed"
    # never written: how a reader sees a pair whose artifacts are damaged (it is run again on resume)
    DAMAGED = "damaged"


# How a pair ended: what a pair summary, its task's message and the report record.
PairOutcome = Literal[PairStatus.OK, PairStatus.FAILED, PairStatus.DAMAGED]


class ArtifactDigest(Record):
    """What a pair summary records of a file it vouches for, so a reader can tell it is intact."""

    file: str
    bytes: Count
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
