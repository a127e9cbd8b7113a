"""open_run in a notebook: a finished run's findings, families, effect sizes, ledger and models as
DataFrames that say what report.json and ledger.parquet say, from a folder or a bucket; one clear
line for a run that does not exist or has no report."""

from __future__ import annotations

import json

import fsspec
import pandas as pd
import pytest

from bqx_queue import open_run
from bqx_queue.artifacts.run_folder import RunStore
from bqx_queue.domain.errors import BqxError
from bqx_queue.report.feature_sets import FeatureSets

pytestmark = pytest.mark.integration


def test_open_run_gives_the_runs_answers_as_dataframes(finished_run: RunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BQX_RUNS_DIR", str(finished_run.runs_root))
    run = open_run(finished_run.run_id)  # runs_dir from the settings, as in a notebook
    report = finished_run.report()
    assert report.confirmation is not None and report.families is not None and report.effect_sizes is not None
    findings = run.findings
    assert len(findings) == len(report.confirmation.findings) > 0
    assert set(zip(findings.pair, findings.horizon, findings.feature, strict=True)) == {
        (r.pair, r.horizon, r.feature) for r in report.confirmation.findings
    }
    assert (findings.effect_low <= findings.effect).all() and (findings.effect <= findings.effect_high).all()
    assert run.unconfirmed.why.notna().all() and len(run.unconfirmed) == len(report.confirmation.unconfirmed)
    families = run.families
    assert len(families) == len(report.families.cells)
    significant = families[families.significant]
    assert set(zip(significant.family, significant.horizon, strict=True)) == {
        (c.family, c.horizon) for c in report.families.cells if c.significant
    }
    effects = run.effect_sizes
    assert len(effects) == len(report.effect_sizes)
    assert ((effects.auc_low <= effects.auc) & (effects.auc <= effects.auc_high)).all()
    pd.testing.assert_frame_equal(run.ledger, pd.read_parquet(finished_run.root / "ledger.parquet"))
    confirmed = run.ledger[run.ledger.confirmed.astype(bool)]
    assert len(confirmed) == len(findings)
    models = run.models  # the models' held-out scores: the run folder keeps no trained model
    assert len(models) == sum(len(p.horizons) for p in report.ok_pairs)
    first = report.ok_pairs[0]
    horizon, result = next(iter(first.horizons.items()))
    row = models[(models.pair == first.pair) & (models.horizon == int(horizon))].iloc[0]
    assert (row.model_auc, row.baseline_log_loss) == (result.metrics.auc, result.baseline.log_loss)
    assert row.features == [s.feature for s in result.stable]
    written = FeatureSets.model_validate(json.loads((finished_run.root / "feature_sets.json").read_text()))
    assert run.feature_sets == written


def test_open_run_reads_a_run_in_a_bucket(finished_run: RunStore) -> None:
    """The same run copied to an object store (fsspec's memory filesystem) reads the same."""
    bucket = fsspec.filesystem("memory")
    for path in finished_run.root.rglob("*"):
        if path.is_file():
            bucket.pipe(
                f"/notebook-test/runs/{finished_run.run_id}/{path.relative_to(finished_run.root)}", path.read_bytes()
            )
    run = open_run(finished_run.run_id, "memory://notebook-test/runs")
    local = open_run(finished_run.run_id, finished_run.runs_root)
    pd.testing.assert_frame_equal(run.findings, local.findings)
    pd.testing.assert_frame_equal(run.ledger, local.ledger)
    bucket.rm("/notebook-test", recursive=True)


def test_an_unknown_run_or_one_without_a_report_is_one_clear_line(finished_run: RunStore, tmp_path) -> None:
    with pytest.raises(BqxError, match=r"^run no-such-run has no manifest at "):
        open_run("no-such-run", finished_run.runs_root)
    with pytest.raises(BqxError, match="is not allowed"):
        open_run("../elsewhere", finished_run.runs_root)
    unreported = tmp_path / finished_run.run_id
    unreported.mkdir()
    (unreported / "manifest.json").write_bytes((finished_run.root / "manifest.json").read_bytes())
    with pytest.raises(BqxError, match=rf"^run {finished_run.run_id} has no report yet: `bqx report"):
        open_run(finished_run.run_id, tmp_path)
