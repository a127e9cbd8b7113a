"""A finished run in a notebook: `open_run("RUN_ID")` reads the run's artifacts from its store
(a folder or a bucket: settings' runs_dir) and hands its answers over as pandas DataFrames.

The run folder holds no trained model: each pair's LightGBM models live only in the worker that
fitted them. What it keeps of them is `models`, their held-out scores against the constant
baseline per pair and horizon and the stable features they read; `feature_sets` names the
columns a training job retrains on, from the warehouse and days it pins.

Example::

    from bqx_queue import open_run
    run = open_run("20261205-101500-ab12cd")
    run.findings.sort_values("effect", ascending=False).head()
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import pandas as pd

from bqx_queue import artifacts
from bqx_queue.artifacts import RunStore
from bqx_queue.config import load_settings
from bqx_queue.domain import BqxError, Report, RunManifest
from bqx_queue.report.feature_sets import FeatureSets, feature_sets


class Run:
    """One finished run's answers; each table is read once, when first asked for."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.manifest: RunManifest = store.manifest()  # one line for an unknown run or a damaged manifest
        if not store.report_path.exists():
            raise BqxError(f"run {store.run_id} has no report yet: `bqx report {store.run_id}` builds it")
        self.report: Report = store.report()

    def __repr__(self) -> str:
        return f"<Run {self.run_id}: {len(self.manifest.pairs)} pairs x {len(self.manifest.horizons)} horizons>"

    @property
    def run_id(self) -> str:
        return self.store.run_id

    @cached_property
    def findings(self) -> pd.DataFrame:
        """Confirmed findings: a row per pair, horizon and feature confirmed on held-out rows."""
        return _frame(self.report.confirmation.findings if self.report.confirmation else [], VERDICT_COLUMNS)

    @cached_property
    def unconfirmed(self) -> pd.DataFrame:
        """Stable features held-out rows did not confirm, with why."""
        return _frame(self.report.confirmation.unconfirmed if self.report.confirmation else [], VERDICT_COLUMNS)

    @cached_property
    def families(self) -> pd.DataFrame:
        """A row per family and horizon: k of n_pairs pairs confirmed, the count test and the
        pooled held-out effect (pooled_* are empty where no pooled test ran)."""
        rows = []
        for cell in self.report.families.cells if self.report.families else []:
            row = cell.model_dump(exclude={"pooled", "members"})
            pooled = cell.pooled
            row |= {
                "pooled_estimate": pooled.estimate if pooled else None,
                "pooled_low": pooled.low if pooled else None,
                "pooled_high": pooled.high if pooled else None,
                "pooled_q_value": pooled.q_value if pooled else None,
                "pooled_significant": pooled.significant if pooled else None,
            }
            rows.append(row)
        return pd.DataFrame(rows, columns=FAMILY_COLUMNS)

    @cached_property
    def effect_sizes(self) -> pd.DataFrame:
        """A row per pair and horizon: the held-out AUC and log-loss gain with their 95% intervals."""
        rows = [
            {"pair": e.pair, "horizon": e.horizon, "flagged": e.flagged}
            | _interval("auc", e.auc.model_dump())
            | _interval("log_loss_gain", e.log_loss_gain.model_dump())
            for e in self.report.effect_sizes or []
        ]
        return pd.DataFrame(rows, columns=EFFECT_COLUMNS)

    @cached_property
    def ledger(self) -> pd.DataFrame:
        """Every tested feature x horizon of every pair (ledger.parquet): frequency, selected,
        confirmed, held-out effect and interval, family."""
        path = self.store.root / "ledger.parquet"
        if not path.exists():
            raise BqxError(f"run {self.run_id} has no ledger.parquet (no pair finished): {path}")
        return artifacts.read_parquet(path)

    @cached_property
    def models(self) -> pd.DataFrame:
        """A row per pair and horizon: what its LightGBM models scored on held-out folds (mean
        over folds) against the constant baseline, and the stable features they read."""
        rows = []
        for pair in self.report.ok_pairs:
            for horizon, result in sorted(pair.horizons.items(), key=lambda item: int(item[0])):
                rows.append(
                    {"pair": pair.pair, "horizon": int(horizon), "folds": len(result.folds)}
                    | {f"model_{name}": value for name, value in result.metrics.model_dump().items()}
                    | {f"baseline_{name}": value for name, value in result.baseline.model_dump().items()}
                    | {"features": [s.feature for s in result.stable]}
                )
        return pd.DataFrame(rows)

    @cached_property
    def feature_sets(self) -> FeatureSets:
        """What a training job reads (feature_sets.json): confirmed features per pair and horizon."""
        return feature_sets(self.report, self.manifest)


VERDICT_COLUMNS = [
    "pair", "horizon", "feature", "shape", "partner", "frequency", "effect", "effect_low", "effect_high",
    "lower_bound", "k", "level", "cluster", "cluster_frequency", "why",
]  # fmt: skip
FAMILY_COLUMNS = [
    "family", "horizon", "k", "n_pairs", "pairs", "expected_under_null", "p_value", "q_value", "significant",
    "pooled_estimate", "pooled_low", "pooled_high", "pooled_q_value", "pooled_significant",
]  # fmt: skip
EFFECT_COLUMNS = [
    "pair", "horizon", "auc", "auc_low", "auc_high", "log_loss_gain", "log_loss_gain_low", "log_loss_gain_high",
    "flagged",
]  # fmt: skip


def _frame(rows: list[Any], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame([row.model_dump() for row in rows], columns=columns)


def _interval(name: str, interval: dict[str, float]) -> dict[str, float]:
    return {name: interval["estimate"], f"{name}_low": interval["low"], f"{name}_high": interval["high"]}


def open_run(run_id: str, runs_dir: Any = None) -> Run:
    """Return the finished run `run_id` from runs_dir (a folder or a bucket URL; default: the
    settings' runs_dir, from BQX_RUNS_DIR or the settings file)."""
    return Run(RunStore(runs_dir if runs_dir is not None else load_settings().runs_dir, run_id))
