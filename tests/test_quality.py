"""Quality gate: on planted warehouses the selection finds what was planted, keeps its false
selections within the bound it reports, and finds nothing where nothing was planted."""

from __future__ import annotations

import numpy as np
import pytest

from bqx_queue.config import load_settings
from bqx_queue.runner.pair import process_pair_all_horizons
from bqx_queue.warehouse.duckdb_source import DuckDBSource
from bqx_queue.warehouse.source import open_source
from bqx_queue.warehouse.synthetic import WarehouseSpec, build_warehouse

pytestmark = pytest.mark.integration

# 55 weekdays of 1-minute bars: the 80,000-row sample a production run reads per pair
GATE_DAYS = 55
WAREHOUSES = {
    "clean": WarehouseSpec(pairs=("eurusd",), days=GATE_DAYS, features_per_pair=60, seed=1),
    "decoys-and-nulls": WarehouseSpec(
        pairs=("usdjpy",), days=GATE_DAYS, features_per_pair=60, seed=2, null_fraction=0.12, decoy_correlation=0.9
    ),
    "no-signal": WarehouseSpec(pairs=("gbpchf",), days=GATE_DAYS, features_per_pair=60, seed=3, with_signal=False),
}


@pytest.fixture(scope="module")
def gate_results(tmp_path_factory):
    results = {}
    for name, spec in WAREHOUSES.items():
        path = tmp_path_factory.mktemp(name) / "w.duckdb"
        build_warehouse(path, spec)
        pair = spec.pairs[0]
        settings = load_settings(warehouse=path, lgbm_rounds=100)
        summary = process_pair_all_horizons(pair, settings, source=open_source(settings)).summary.model_dump(
            mode="json"
        )
        results[name] = (summary, DuckDBSource(path).manifest()["pairs"][pair], settings)
    return results


# The bound is on the expected number of false selections over the selection's random subsamples:
# a claim about an average over seeds, not about one draw (seed 42 alone gave 1.71 against a 1.67
# bound on the decoy warehouse; seeds 1 and 2 gave 1.43 and 1.29). These seeds are averaged too.
EXTRA_SEEDS = (1, 2)


@pytest.fixture(scope="module")
def false_selections(gate_results):
    """Return, per warehouse, the false selections and the bounds of every horizon under every seed."""
    out = {}
    for name in ("clean", "decoys-and-nulls"):
        summary, truth, settings = gate_results[name]
        runs = [summary]
        for seed in EXTRA_SEEDS:  # few boosting rounds: only the selection is under test here
            other = load_settings(warehouse=settings.warehouse, lgbm_rounds=5, seed=seed)
            rerun = process_pair_all_horizons(summary["pair"], other, source=open_source(other))
            runs.append(rerun.summary.model_dump(mode="json"))
        false = [
            len({s["feature"] for s in r["stable"]} - set(truth["planted"]))
            for run in runs
            for r in run["horizons"].values()
        ]
        bounds = [r["error_bound"] for run in runs for r in run["horizons"].values()]
        out[name] = (false, bounds)
    return out


def test_planted_features_are_recovered_where_they_carry_signal(gate_results):
    found = {"linear": 0, "nonlinear": 0}
    wanted = {"linear": 0, "nonlinear": 0}
    for name in ("clean", "decoys-and-nulls"):
        summary, truth, _ = gate_results[name]
        for horizon, result in summary["horizons"].items():
            stable = {s["feature"] for s in result["stable"]}
            for feature in truth["horizons"][horizon]["informative"]:
                shape = "linear" if truth["shapes"][feature] == "linear" else "nonlinear"
                found[shape] += feature in stable
                wanted[shape] += 1
    assert wanted["linear"] >= 30 and found["linear"] / wanted["linear"] >= 0.95, (found, wanted)
    assert wanted["nonlinear"] >= 30 and found["nonlinear"] / wanted["nonlinear"] >= 0.5, (found, wanted)


def test_false_selections_stay_within_the_reported_bound_on_average(false_selections):
    for name, (false, bounds) in false_selections.items():
        assert len(false) == 7 * (1 + len(EXTRA_SEEDS))
        assert np.mean(false) <= np.mean(bounds), name


def test_models_beat_the_baseline_only_where_there_is_signal(gate_results):
    clean, _, _ = gate_results["clean"]
    assert (
        clean["horizons"]["15"]["metrics"]["mean"]["auc"] > clean["horizons"]["15"]["metrics"]["baseline"]["auc"] + 0.1
    )
    empty, _, _ = gate_results["no-signal"]
    assert sum(len(r["stable"]) for r in empty["horizons"].values()) <= 1
    for result in empty["horizons"].values():
        assert abs(result["metrics"]["mean"]["auc"] - result["metrics"]["baseline"]["auc"]) < 0.03
