"""`bqx compare RUN_A RUN_B` on two runs whose warehouses differ by one planted family: run B's
warehouse is run A's with that family's planted column replaced by noise, so what A confirmed of
it B no longer does, and the only input that differs is the warehouse."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from bqx_queue.analysis.families import feature_family
from bqx_queue.artifacts.run_folder import RunStore
from bqx_queue.cli import main
from bqx_queue.config import load_settings
from bqx_queue.domain import Report
from bqx_queue.report.comparison import (
    FEATURES_LISTED,
    compare_runs,
    comparison,
    comparison_lines,
    render_comparison_html,
    run_tables,
)
from bqx_queue.runner.run import run_parallel_testing
from bqx_queue.warehouse.sql import FEATURE_SEPARATOR
from bqx_queue.warehouse.synthetic import WarehouseSpec, build_warehouse

pytestmark = pytest.mark.integration

PAIRS = ("eurusd", "gbpusd", "usdjpy")
HORIZONS = (15, 30)
STRIP = load_settings().family_strip_tokens
# every pair plants its signals in the same families, so one family can be taken out of all of them
SPEC = WarehouseSpec(
    pairs=PAIRS, days=10, features_per_pair=40, signal_r2=0.5, nonlinear_r2=0, seed=11, planted_share=1.0
)


def _without_family(source: Path, target: Path, planted: dict, family: str) -> None:
    """Copy the warehouse and replace the family's planted column in every pair with noise."""
    shutil.copy(source, target)
    with duckdb.connect(str(target)) as connection:
        connection.sql("SELECT setseed(0.25)")
        for pair in PAIRS:
            feature = next(f for f in planted["pairs"][pair]["planted"] if feature_family(f, STRIP) == family)
            table, _, column = feature.partition(FEATURE_SEPARATOR)
            connection.sql(f'UPDATE {SPEC.features_dataset}.{table} SET "{column}" = random() - 0.5')


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunStore, RunStore, str]:
    """(run A, run B, the family B's warehouse lost): the strongest planted family is taken out."""
    folder = tmp_path_factory.mktemp("compare")
    planted = build_warehouse(folder / "a.duckdb", SPEC)
    family = next(name for name, info in planted["planted_families"].items() if info["signal"] == 0)
    _without_family(folder / "a.duckdb", folder / "b.duckdb", planted, family)
    stores = []
    for name in ("a", "b"):
        settings = load_settings(warehouse=folder / f"{name}.duckdb", runs_dir=folder / "runs", horizons=HORIZONS)
        report_path = run_parallel_testing(",".join(PAIRS), max_workers=2, settings=settings)
        stores.append(RunStore(folder / "runs", report_path.parent.name))
    return stores[0], stores[1], family


def _confirmed(report: Report) -> set[tuple[str, int, str]]:
    assert report.confirmation is not None
    return {(r.pair, r.horizon, r.feature) for r in report.confirmation.findings}


def test_the_family_taken_out_is_no_longer_confirmed_and_only_the_warehouse_differs(two_runs) -> None:
    run_a, run_b, family = two_runs
    changes = compare_runs(run_a, run_b)
    assert [(s.name, s.a, s.b) for s in changes.settings] == [
        ("warehouse", run_a.manifest().warehouse, run_b.manifest().warehouse)
    ]
    assert not (changes.days_only_a or changes.days_only_b or changes.tables_only_a or changes.tables_only_b)
    assert not (changes.pairs_only_a or changes.pairs_only_b or changes.horizons_only_a or changes.horizons_only_b)
    assert changes.pair_horizons_compared == len(PAIRS) * len(HORIZONS)
    # every feature change is what the two reports' confirmed findings differ in
    confirmed_a, confirmed_b = _confirmed(run_a.report()), _confirmed(run_b.report())
    lost = {(c.pair, c.horizon, c.feature) for c in changes.features if c.change == "no longer confirmed"}
    gained = {(c.pair, c.horizon, c.feature) for c in changes.features if c.change == "confirmed"}
    assert (lost, gained) == (confirmed_a - confirmed_b, confirmed_b - confirmed_a)
    # the family taken out: confirmed in A (it is the strongest), in no pair of B
    taken_out = {(p, h, f) for p, h, f in confirmed_a if feature_family(f, STRIP) == family}
    assert len({p for p, _, _ in taken_out}) == len(PAIRS), taken_out
    assert taken_out <= lost
    assert not any(c.family == family for c in changes.features if c.change == "confirmed")
    for horizon in HORIZONS:
        cell = next(c for c in changes.families if (c.family, c.horizon) == (family, horizon))
        assert cell.confirmed_in == [] and cell.no_longer_in == sorted({p for p, h, _ in taken_out if h == horizon})
    for change in changes.features:
        if change.change == "no longer confirmed":
            assert change.effect_a is not None and change.why  # B's reason: not stable, or its bound


def test_bqx_compare_prints_the_changes_and_writes_the_page(
    two_runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_a, run_b, family = two_runs
    monkeypatch.setenv("BQX_RUNS_DIR", str(run_a.runs_root))
    assert main(["compare", run_a.run_id, run_b.run_id]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{run_a.run_id} -> {run_b.run_id}"
    assert lines[1:3] == [
        "Inputs:",
        f"  setting warehouse: {run_a.manifest().warehouse!r} -> {run_b.manifest().warehouse!r}",
    ]
    assert any(line.startswith(f"  {family} h") and "no longer in" in line for line in lines)
    page = Path(lines[-1])
    assert page == run_b.root / f"compare-{run_a.run_id}.html"
    html = page.read_text()
    assert family in html and "no longer confirmed" in html and run_a.run_id in html
    assert "<td>warehouse</td>" in html and "only in" not in html  # no empty table of days and tables
    chosen = tmp_path / "changes.html"
    assert main(["compare", run_a.run_id, run_b.run_id, "-o", str(chosen)]) == 0
    assert chosen.read_text() == html
    capsys.readouterr()
    assert main(["compare", run_a.run_id, "no-such-run"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: run no-such-run has no manifest at {run_a.runs_root / 'no-such-run' / 'manifest.json'}"
    )


def test_settings_days_pairs_horizons_and_tables_that_differ_are_listed(two_runs) -> None:
    """What a researcher changes between runs (a setting, the days, the tables) is named, each once."""
    run_a, run_b, _ = two_runs
    manifest_a, manifest_b = run_a.manifest(), run_b.manifest()
    tables = run_tables(run_a)
    assert {f"mom_{pair}" for pair in PAIRS} <= tables  # own tables, named as the ledger's features
    later_day = manifest_a.days[-1] + timedelta(days=7)
    manifest_b = manifest_b.model_copy(
        update={
            "days": [*manifest_b.days[1:], later_day],
            "settings": manifest_b.settings | {"selection_threshold": 0.9, "lgbm_rounds": None},
            "horizons": [*manifest_b.horizons, 60],
        }
    )
    changes = comparison(manifest_a, run_a.report(), tables, manifest_b, run_b.report(), tables | {"new_eurusd"})
    assert [s.name for s in changes.settings] == ["lgbm_rounds", "selection_threshold", "warehouse"]
    assert (changes.days_only_a, changes.days_only_b) == ([manifest_a.days[0]], [later_day])
    assert (changes.horizons_only_a, changes.horizons_only_b) == ([], [60])
    assert (changes.tables_only_a, changes.tables_only_b) == ([], ["new_eurusd"])
    text = "\n".join(comparison_lines(changes))
    assert f"  tables: only in {run_a.run_id}: -; only in {run_b.run_id}: new_eurusd" in text
    assert f"  setting selection_threshold: {manifest_a.settings['selection_threshold']!r} -> 0.9" in text
    html = render_comparison_html(changes)
    many = changes.model_copy(update={"features": changes.features[:1] * (FEATURES_LISTED + 5)})
    assert comparison_lines(many)[-1] == "  ... and 5 more on the page"  # the page lists them all
    assert "<td>tables</td><td></td><td>new_eurusd</td>" in html and "<td>pairs</td>" not in html
