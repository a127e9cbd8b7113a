"""report.schema.json is generated from the report model: the shipped file must be what the model
generates now, and it must still reject what a report may not hold."""

from __future__ import annotations

import copy

import jsonschema
import pytest

from bqx_queue.report.build import report_schema
from bqx_queue.report.schema import SCHEMA_PATH, generated_schema, schema_text

pytestmark = pytest.mark.unit


def test_the_shipped_schema_is_the_one_the_report_model_generates() -> None:
    assert SCHEMA_PATH.read_text() == schema_text(), (
        "report.schema.json is stale: run `python -m bqx_queue.report.schema` and commit the file"
    )
    assert report_schema() == generated_schema()


def _report() -> dict:
    horizon = {
        "stable": [{"feature": "reg_eurusd__a", "frequency": 0.9}], "n_stable": 1, "q": 10, "threshold": 0.75,
        "fits": 100, "error_bound": 0.5, "folds": [],
        "metrics": {"auc": 0.6, "accuracy": 0.55, "directional_accuracy": 0.55, "log_loss": 0.69},
        "baseline": {"auc": 0.5, "accuracy": 0.5, "directional_accuracy": 0.5, "log_loss": 0.69}, "shap_top": [],
    }  # fmt: skip
    return {
        "run": {
            "run_id": "r", "created_at": "2026-01-01T00:00:00+00:00", "duration_s": 1.0, "pairs": ["eurusd"],
            "horizons": [15], "days": 3, "warehouse": "w", "source": "duckdb", "workers": {}, "worker_count": 0,
            "concurrency": 0, "processes": 1,
        },
        "totals": {
            "pairs_ok": 1, "pairs_failed": 0, "queries": 1, "bytes_processed": 0, "bytes_billed": 0, "cost_usd": 0.0,
            "features_tested": 1, "stable_selections": 1,
        },
        "pairs": [
            {
                "pair": "eurusd", "status": "ok", "error": None, "queries": 1, "bytes_billed": 0, "cost_usd": 0.0,
                "host": "h", "pid": 1, "horizons": {"15": horizon}, "failed_horizons": {},
            }
        ],
    }  # fmt: skip


@pytest.mark.parametrize(
    "spoil",
    [
        lambda r: r["pairs"][0].update(status="maybe"),
        lambda r: r["pairs"][0].update(pair="EUR/USD"),
        lambda r: r["pairs"][0].pop("error"),
        lambda r: r["pairs"][0]["horizons"]["15"].update(threshold=0.5),
        lambda r: r["pairs"][0]["horizons"]["15"]["metrics"].update(auc=1.5),
        lambda r: r["totals"].update(cost_usd=-1.0),
        lambda r: r.update(unexpected=1),
    ],
)
def test_the_schema_rejects_what_a_report_may_not_hold(spoil) -> None:
    schema = report_schema()
    report = _report()
    jsonschema.validate(report, schema)
    spoiled = copy.deepcopy(report)
    spoil(spoiled)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(spoiled, schema)
