"""feature_sets.json: written beside the report of a real run, valid against its generated schema,
exported as JSON, CSV and YAML by `bqx export`, and enough for a training job: it pins the
warehouse and days, and a LightGBM model trained on a set's confirmed features predicts held-out rows."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import jsonschema
import lightgbm
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from bqx_queue.artifacts.run_folder import RunStore
from bqx_queue.cli import main
from bqx_queue.config import load_settings
from bqx_queue.report.feature_sets import FeatureSets, feature_sets_schema
from bqx_queue.report.schema import FEATURE_SETS_SCHEMA_PATH, generated_schema, schema_text
from bqx_queue.warehouse.source import query_pair_all_horizons


def _written(run: RunStore) -> FeatureSets:
    data = json.loads((run.root / "feature_sets.json").read_text())
    jsonschema.validate(data, feature_sets_schema())
    return FeatureSets.model_validate(data)


@pytest.mark.unit
def test_the_shipped_schema_is_the_one_the_model_generates() -> None:
    assert FEATURE_SETS_SCHEMA_PATH.read_text() == schema_text(FEATURE_SETS_SCHEMA_PATH), (
        "feature_sets.schema.json is stale: run `python -m bqx_queue.report.schema` and commit the file"
    )
    assert feature_sets_schema() == generated_schema(FEATURE_SETS_SCHEMA_PATH)
    spoilt = {"run_id": "r", "sets": [], "unexpected": 1}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(spoilt, feature_sets_schema())


@pytest.mark.integration
def test_feature_sets_json_is_beside_the_report_and_holds_every_verdict(finished_run: RunStore) -> None:
    sets = _written(finished_run)
    report, manifest = finished_run.report(), finished_run.manifest()
    assert (sets.run_id, sets.warehouse, sets.days, sets.settings) == (
        manifest.run_id, manifest.warehouse, manifest.days, manifest.settings,
    )  # fmt: skip
    assert [(s.pair, s.horizon) for s in sets.sets] == [
        (p.pair, int(h)) for p in report.ok_pairs for h in sorted(p.horizons, key=int)
    ]
    assert report.confirmation is not None
    confirmed = {(r.pair, r.horizon, r.feature) for r in report.confirmation.findings}
    unconfirmed = {(r.pair, r.horizon, r.feature) for r in report.confirmation.unconfirmed}
    assert {(s.pair, s.horizon, f.feature) for s in sets.sets for f in s.confirmed} == confirmed
    assert {(s.pair, s.horizon, f.feature) for s in sets.sets for f in s.unconfirmed} == unconfirmed
    for feature_set in sets.sets:
        effects = [f.effect for f in feature_set.confirmed]
        assert effects == sorted(effects, reverse=True)  # largest held-out effect first
        assert all(f.effect_low <= f.effect <= f.effect_high for f in feature_set.confirmed)
        assert feature_set.target == f"target_bqx45_h{feature_set.horizon}"
        # the final model's partner of a confirmed feature is another of the horizon's stable features
        stable = {f.feature for f in feature_set.confirmed + feature_set.unconfirmed}
        assert all(f.model_partner in stable - {f.feature} for f in feature_set.confirmed if f.model_partner)
        assert all(f.model_partner is None for f in feature_set.unconfirmed)
    assert any(f.model_partner for s in sets.sets for f in s.confirmed)


@pytest.mark.integration
def test_bqx_export_writes_json_csv_and_yaml(
    finished_run: RunStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BQX_RUNS_DIR", str(finished_run.runs_root))
    sets = _written(finished_run)
    written = {}
    for export_format in ("json", "csv", "yaml"):
        path = tmp_path / f"sets.{export_format}"
        assert main(["export", finished_run.run_id, "--format", export_format, "-o", str(path)]) == 0
        written[export_format] = path.read_text()
    assert json.loads(written["json"]) == json.loads((finished_run.root / "feature_sets.json").read_text())
    assert yaml.safe_load(written["yaml"]) == json.loads(written["json"])
    rows = list(csv.DictReader(io.StringIO(written["csv"])))
    assert len(rows) == sum(len(s.confirmed) + len(s.unconfirmed) for s in sets.sets)
    first = next(s for s in sets.sets if s.confirmed)
    row = next(r for r in rows if r["pair"] == first.pair and r["horizon"] == str(first.horizon))
    assert (row["run_id"], row["status"], row["rank"], row["feature"]) == (
        sets.run_id, "confirmed", "1", first.confirmed[0].feature,
    )  # fmt: skip
    assert main(["export", "no-such-run"]) == 2


@pytest.mark.integration
def test_a_lightgbm_model_trains_from_a_feature_set(finished_run: RunStore) -> None:
    """What a training job does: read the set, fetch its columns from the pinned warehouse and
    days, train on the earlier rows, and predict the later ones better than chance."""
    sets = _written(finished_run)
    chosen = max(sets.sets, key=lambda s: len(s.confirmed))
    columns = [f.feature for f in chosen.confirmed]
    assert columns, "the small warehouse's planted signal is confirmed somewhere"
    settings = load_settings(warehouse=sets.warehouse, horizons=(chosen.horizon,))
    rows = query_pair_all_horizons(chosen.pair, settings, days=sets.days)
    rows = rows[rows[chosen.target].notna()]
    split = int(len(rows) * 0.75)
    up = (rows[chosen.target] > 0).astype(int)
    model = lightgbm.LGBMClassifier(n_estimators=60, learning_rate=0.05, random_state=0, verbose=-1, n_jobs=1)
    model.fit(rows[columns].iloc[:split], up.iloc[:split])
    assert model.feature_name_ == columns
    auc = roc_auc_score(up.iloc[split:], model.predict_proba(rows[columns].iloc[split:])[:, 1])
    assert auc > 0.55, f"{chosen.pair} h{chosen.horizon}: held-out AUC {auc:.3f} from {columns}"
