"""The pair summary is a model all the way to pairs/PAIR.json: a key its model does not declare is
refused where it is read (the pair reads as damaged, naming the key), the cost fields the fetch
adds reach the report, and summaries written before those fields existed still read. Every time
is a zone-aware UTC datetime: the epoch seconds and ISO strings of older artifacts read as one,
and a time without a zone is refused."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from bqx_queue import artifacts
from bqx_queue.artifacts.run_folder import RunStore
from bqx_queue.domain import DamagedArtifact, PairStatus, PairSummary, ReportPair, RunManifest

pytestmark = pytest.mark.unit

QUALITY = {"on_duplicate_timestamps": "drop", "tables": [], "non_finite": [], "missing_families": []}


def _manifest_body(created_at: str) -> dict[str, object]:
    """A manifest as bqx wrote it before the time type: created_at an ISO string."""
    return {
        "format": 1, "run_id": "run", "created_at": created_at, "pairs": ["eurusd"], "horizons": [15],
        "days": ["2026-01-05"], "warehouse": "w.duckdb", "source": "duckdb", "plans": {}, "settings": {},
    }  # fmt: skip


def _failed(**fields: object) -> PairSummary:
    return PairSummary(pair="eurusd", status=PairStatus.FAILED, error="budget exhausted", **fields)


def test_a_misspelt_nested_key_in_a_summary_reads_as_damaged_naming_it(tmp_path):
    store = RunStore(tmp_path, "run")
    body = _failed(data_quality=QUALITY).model_dump(mode="json")
    body["data_quality"]["missing_familes"] = body["data_quality"].pop("missing_families")
    store.write_json(store.pair_path("eurusd"), artifacts.sealed(body))  # sealed: only the model can tell
    summary = store.pair_summary("eurusd")
    assert summary is not None and summary.status is PairStatus.DAMAGED
    assert "data_quality.missing_families: Field required" in (summary.error or "")
    assert "data_quality.missing_familes: Extra inputs are not permitted" in (summary.error or "")


@pytest.mark.parametrize("field", ["bytes_billed", "pair"])
def test_a_misspelt_key_in_a_summary_file_reads_as_damaged_naming_the_file_and_the_key(tmp_path, field):
    # bytes_billed has a default, so only its misspelling can tell; pair is required as well
    store = RunStore(tmp_path, "run")
    body = _failed(bytes_billed=30).model_dump(mode="json")
    body[field[:-1]] = body.pop(field)
    store.write_json(store.pair_path("eurusd"), artifacts.sealed(body))
    summary = store.pair_summary("eurusd")
    assert summary is not None and summary.status is PairStatus.DAMAGED and summary.bytes_billed == 0
    assert summary.error == f"damaged: {store.pair_path('eurusd')}: not a pair summary: unknown keys '{field[:-1]}'"


def test_a_misspelt_key_in_the_manifest_is_refused_naming_it(tmp_path):
    store = RunStore(tmp_path, "run")
    manifest = RunManifest(
        run_id="run", created_at="2026-12-05T10:00:00+00:00", pairs=["eurusd"], horizons=[15],
        days=[date(2026, 1, 5)], warehouse="w.duckdb", source="duckdb", plans={}, settings={},
    )  # fmt: skip
    store.write_manifest(manifest)
    assert store.manifest() == manifest
    body = store.read_json(store.manifest_path)
    body["horizon"] = body.pop("horizons")
    store.write_json(store.manifest_path, body)
    with pytest.raises(DamagedArtifact) as refused:
        store.manifest()
    assert str(refused.value) == f"{store.manifest_path}: not a run manifest: unknown keys 'horizon'"


def test_a_misspelt_key_is_refused_where_the_summary_is_built():
    with pytest.raises(ValueError, match="maximum_bytes_biled"):
        _failed(maximum_bytes_biled=1)


def test_the_cap_and_estimate_reach_the_summary_file_and_the_report(tmp_path):
    store = RunStore(tmp_path, "run")
    store.write_pair_summary(_failed(bytes_billed=30, maximum_bytes_billed=50, estimated_bytes_billed=40))
    written = store.read_json(store.pair_path("eurusd"))
    assert (written["maximum_bytes_billed"], written["estimated_bytes_billed"]) == (50, 40)
    summary = store.pair_summary("eurusd")
    assert summary is not None
    report_pair = ReportPair.of(summary).model_dump(mode="json")
    assert (report_pair["maximum_bytes_billed"], report_pair["estimated_bytes_billed"]) == (50, 40)


def test_a_summary_written_before_the_cap_was_recorded_still_reads(tmp_path):
    store = RunStore(tmp_path, "run")
    store.write_pair_summary(_failed(bytes_billed=30))
    written = store.read_json(store.pair_path("eurusd"))
    assert "maximum_bytes_billed" not in written  # absent, as in older files
    summary = store.pair_summary("eurusd")
    assert summary is not None and summary.status is PairStatus.FAILED and summary.maximum_bytes_billed is None


def test_an_older_summary_with_epoch_seconds_reads_as_utc_times(tmp_path):
    store = RunStore(tmp_path, "run")
    body = {"pair": "eurusd", "status": "failed", "error": "no table", "host": "a", "pid": 1}
    store.write_json(
        store.pair_path("eurusd"), artifacts.sealed(body | {"started_at": 1767225601.5, "finished_at": 1767225661})
    )
    summary = store.pair_summary("eurusd")
    assert summary is not None and summary.status is PairStatus.FAILED
    assert summary.started_at == datetime(2026, 1, 1, 0, 0, 1, 500000, tzinfo=UTC)
    assert summary.finished_at is not None and summary.finished_at.tzinfo is UTC
    assert (summary.finished_at - summary.started_at).total_seconds() == 59.5
    # written again (or into the report) it is an ISO string, as every other time
    report_pair = ReportPair.of(summary).model_dump(mode="json")
    assert report_pair["started_at"] == "2026-01-01T00:00:01.500000+00:00"


def test_an_older_manifest_with_an_iso_created_at_reads_and_writes_back_the_same_string(tmp_path):
    store = RunStore(tmp_path, "run")
    store.write_json(store.manifest_path, artifacts.sealed(_manifest_body("2026-12-05T10:00:00.123456+00:00")))
    manifest = store.manifest()
    assert manifest.created_at == datetime(2026, 12, 5, 10, 0, 0, 123456, tzinfo=UTC)
    assert manifest.model_dump(mode="json")["created_at"] == "2026-12-05T10:00:00.123456+00:00"
    # another zone reads as the same moment, held in UTC
    east = RunManifest.model_validate(_manifest_body("2026-12-05T12:00:00.123456+02:00"))
    assert east.created_at == manifest.created_at and east.created_at.tzinfo is UTC


def test_a_time_without_a_zone_is_refused_naming_the_field(tmp_path):
    store = RunStore(tmp_path, "run")
    store.write_json(store.manifest_path, artifacts.sealed(_manifest_body("2026-12-05T10:00:00")))
    with pytest.raises(DamagedArtifact) as refused:
        store.manifest()
    assert (
        str(refused.value) == f"{store.manifest_path}: not a run manifest: created_at: Input should have timezone info"
    )
    with pytest.raises(ValueError, match="started_at\n  Input should have timezone info"):
        _failed(started_at="2026-12-05T10:00:00")


@pytest.mark.parametrize(
    ("model", "body", "field"),
    [
        (RunManifest, _manifest_body("2026-12-05T10:00:00+00:00") | {"source": "sqlite"}, "source"),
        (PairSummary, {"pair": "eurusd", "status": "ok", "gram_storage": "half"}, "gram_storage"),
    ],
)
def test_a_value_outside_a_closed_vocabulary_is_refused_naming_the_field(model, body, field):
    with pytest.raises(ValueError, match=f"{field}\n  Input should be"):
        model.model_validate(body)
