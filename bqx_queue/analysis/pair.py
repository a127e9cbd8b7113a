"""One pair's fetched frame analysed at every horizon: one prepared matrix, then stability
selection over every horizon at once, and per horizon the models, held-out verdicts and SHAP.

The steps are plain functions named for what they give (`usable_horizons`, `select_features`,
`analyse_horizon`, `pair_ledger`); the runner fetches the frame, watches memory, times the steps
and builds the pair's summary (bqx_queue.runner.pair).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np
import pandas as pd

from bqx_queue.analysis.basis import BasisParams, GramColumns, Shape, basis_memory, nonlinear_basis
from bqx_queue.analysis.confirmation import ConfirmParams, HeldOutFold, confirm_horizon, dependence_rows
from bqx_queue.analysis.dependence import dependence_curve
from bqx_queue.analysis.explain import interaction_partners, shap_importance
from bqx_queue.analysis.grams import BlockGrams, block_crosses
from bqx_queue.analysis.params import Stream, seed_sequence
from bqx_queue.analysis.prepare import PreparedPair, frame_from_pandas, prepare_pair
from bqx_queue.analysis.spill import SpilledMatrix
from bqx_queue.analysis.stability import (
    SelectionParams,
    SelectionResult,
    choose_q,
    complementary_halves,
    select_stable,
    time_blocks,
)
from bqx_queue.analysis.stable_structure import stable_structure
from bqx_queue.analysis.training import TrainParams, evaluate_horizon, walk_forward_folds
from bqx_queue.analysis.tree_selection import select_stable_lightgbm
from bqx_queue.analysis.width import plan_memory, screen
from bqx_queue.config import Settings
from bqx_queue.domain import (
    TARGET_WINDOW,
    Confirmation,
    DataError,
    DependenceCurve,
    Eras,
    FeatureShape,
    GramStorage,
    HorizonMetrics,
    HorizonOutcome,
    HorizonResult,
    ModelPartner,
    ShapFeature,
    StableFeature,
    Substitutes,
    target_column,
)

SHAP_TOP = 20
SPILL_MIN_BYTES = 64 * 1024**2  # smaller matrices stay in memory: the file would save little


@dataclass(frozen=True)
class StabilitySelection:
    """What stability selection found at one horizon of one frame (run_stability_selection_local)."""

    table: pd.DataFrame  # one row per usable feature: feature, frequency, stable; most frequent first
    horizon: int
    q: int  # features each fit enters
    threshold: float  # the selection frequency that makes a feature stable
    fits: int  # 2B: both halves of every complementary pair
    error_bound: float  # Meinshausen-Buehlmann bound on the expected number of falsely stable features

    @property
    def stable_features(self) -> list[str]:
        """Return the stable features, most frequent first."""
        return self.table.loc[self.table["stable"], "feature"].tolist()


def run_stability_selection_local(df: pd.DataFrame, horizon: int, settings: Settings) -> StabilitySelection:
    """Return every usable feature's selection frequency at one horizon, and which are stable.

    Complementary-pairs stability selection (Shah & Samworth 2013) over contiguous time blocks
    of the rows selection may read (the held-out end of the history and its purge gap are left
    out), with randomized LARS as the base selector over every feature's linear column and, by
    default (``selection_basis``), the nonlinear columns each half chooses (|x|, products, gates).

    Parameters
    ----------
    df : pandas.DataFrame
        A pair frame such as `query_pair_all_horizons` returns: time-ordered rows, an
        ``interval_time`` column, feature columns and the horizon's target column.
    horizon : int
        The target's horizon in minutes (one of ``bqx_queue.domain.universe.HORIZONS``).
    settings : Settings, optional
        Selection settings (``selection_*``, ``expected_false_max``, ``seed``); loaded from the
        environment when omitted.

    Returns
    -------
    StabilitySelection
        The table (feature, frequency, stable; most frequent first) with q, the threshold, the
        number of fits and the error bound. The same settings give the same table.

    Raises
    ------
    DataError
        When the frame lacks the target, the target is unusable, or there are too few rows.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from bqx_queue.config import load_settings
    >>> from bqx_queue.warehouse.source import query_pair_all_horizons
    >>> from bqx_queue.warehouse.synthetic import WarehouseSpec, build_warehouse
    >>> folder = Path(tempfile.mkdtemp())
    >>> # six days of linear signal only: the nonlinear kinds need weeks of rows (tests/test_nonlinear.py)
    >>> spec = WarehouseSpec(pairs=("eurusd",), days=6, features_per_pair=40, signal_r2=0.6, nonlinear_r2=0)
    >>> manifest = build_warehouse(folder / "tiny.duckdb", spec)
    >>> settings = load_settings(warehouse=folder / "tiny.duckdb", runs_dir=folder / "runs")
    >>> df = query_pair_all_horizons("eurusd", settings)
    >>> selection = run_stability_selection_local(df, 15, settings)
    >>> selection.fits, selection.threshold, selection.error_bound <= settings.expected_false_max
    (100, 0.8, True)
    >>> list(selection.table.columns)
    ['feature', 'frequency', 'stable']
    >>> planted = manifest["pairs"]["eurusd"]["horizons"]["15"]["informative"]
    >>> sorted(selection.stable_features) == sorted(planted)  # the synthetic warehouse's planted signal
    True
    """
    target = target_column(horizon)
    prepared = prepare_pair(frame_from_pandas(df, "frame", [target]))
    with contextlib.ExitStack() as scratch:
        result = select_features(prepared, settings, [horizon], 1, scratch).results[horizon]
    table = pd.DataFrame(
        {
            "feature": prepared.features,
            "frequency": result.frequencies,
            "stable": np.isin(np.arange(len(prepared.features)), result.stable),
        }
    ).sort_values("frequency", ascending=False, kind="stable")
    return StabilitySelection(
        table.reset_index(drop=True), horizon, result.q, result.threshold, result.fits, result.error_bound
    )


def purge_gap(horizon: int, rows: int, settings: Settings) -> int:
    """Return the rows left out between training and test rows so that no target window spans
    both: the horizon and the target's own window, plus the embargo's share of the rows."""
    return horizon + TARGET_WINDOW + math.ceil(settings.embargo_fraction * rows)


def usable_horizons(prepared: PreparedPair, horizons: list[int]) -> tuple[list[int], dict[int, str]]:
    """Return the horizons whose target is usable, and why each other one fails (it fails alone)."""
    failed = {h: prepared.failed_targets[t] for h in horizons if (t := target_column(h)) in prepared.failed_targets}
    return [h for h in horizons if h not in failed], failed


@dataclass
class Selection:
    """Per-horizon selection results over every prepared feature, the features screened out
    before selection (index -> reason) because their block Grams would not fit memory, and
    what each Gram column read (linear and nonlinear basis columns)."""

    rows: np.ndarray  # the matrix rows selection read: the history before the held-out rows and their gap
    holdout_start: int  # the position in prepared.rows where the held-out rows start
    results: dict[int, SelectionResult]
    entered: int
    screened: dict[int, str]
    storage: GramStorage
    columns: GramColumns | None = None  # None: the LightGBM selector, one column per feature
    spilled: SpilledMatrix | None = None  # where the matrix waits, when it left memory

    def shape(self, horizon: int, feature: int) -> tuple[str, int]:
        """Return how a stable feature was selected (basis.Shape value) and its partner (-1: none)."""
        frequencies = self.results[horizon].column_frequencies
        if self.columns is None or frequencies is None:
            return Shape.LINEAR.value, -1
        shape, partner = self.columns.shape_of(feature, frequencies)
        return shape.value, partner


def select_features(
    prepared: PreparedPair, settings: Settings, horizons: list[int], threads: int, scratch: contextlib.ExitStack
) -> Selection:
    """Return per-horizon selections over the history before the held-out rows and their purge
    gap. Past SPILL_MIN_BYTES the matrix moves to a scratch file (kept open on `scratch`) once the
    crosses and the nonlinear basis are computed, so the block Grams have its memory."""
    n_valid = len(prepared.rows)
    holdout_start = int(n_valid * (1 - settings.holdout_fraction))
    gap = purge_gap(max(horizons), n_valid, settings)
    if holdout_start - gap <= 0:
        raise DataError(f"pair {prepared.pair}: {n_valid} rows are too few to hold out {settings.holdout_fraction:.0%}")
    selection_rows = prepared.rows[: holdout_start - gap]
    params = SelectionParams.from_settings(settings, prepared.pair)
    blocks = time_blocks(selection_rows, params.blocks, gap=max(horizons))
    targets = np.zeros((prepared.matrix.shape[0], len(horizons)))
    for k, horizon in enumerate(horizons):
        targets[prepared.rows, k] = prepared.targets[target_column(horizon)].to_numpy()
    p = prepared.matrix.shape[1]
    if settings.selection_method == "lightgbm":
        by_horizon = {h: targets[:, k] for k, h in enumerate(horizons)}
        results = select_stable_lightgbm(prepared.matrix, blocks, by_horizon, params, threads)
        return Selection(selection_rows, holdout_start, results, p, {}, "none")
    xy, ysum, _ = block_crosses(prepared.matrix, blocks, targets)
    halves = complementary_halves(params, len(blocks))
    q = params.q or choose_q(p, params.threshold, params.expected_false_max)
    basis_params = BasisParams.from_settings(settings).within(q)
    basis = nonlinear_basis(prepared.matrix, blocks, targets, halves, basis_params)
    rows = prepared.matrix.shape[0]
    memory = plan_memory(
        rows,
        p,
        len(blocks),
        settings.memory_budget_bytes,
        settings.selection_max_features,
        len(basis.columns),
        basis_memory(rows, p, basis_params, len(blocks), len(horizons))[1],
    )
    entered = memory.selection_features
    columns = np.arange(p)
    screened: dict[int, str] = {}
    if entered < p:
        strength = basis.association.strength
        columns = screen(strength, entered, basis.features)
        order = np.argsort(-strength, kind="stable")
        rank = np.empty(p, dtype=np.int64)
        rank[order] = np.arange(1, p + 1)
        dropped = np.setdiff1d(np.arange(p), columns)
        screened = {
            int(j): f"screened out before selection: its largest binned association with a target (eta^2 over "
            f"{settings.nonlinear_bins} quantile bins, or r^2: sees thresholds, squares and U shapes) "
            f"{strength[j]:.5f} ranks {rank[j]:,} of {p:,}, and it is in no candidate product or gate; "
            f"the {len(columns):,} strongest fit the memory budget"
            for j in dropped
        }
    matrix: np.ndarray | SpilledMatrix = prepared.matrix
    if prepared.matrix.nbytes >= SPILL_MIN_BYTES:
        matrix = scratch.enter_context(SpilledMatrix(prepared.matrix, settings.scratch_dir))
        prepared.matrix = matrix.mapped()  # the in-memory copy is freed here
    grams = BlockGrams(matrix, blocks, None if len(columns) == p else columns, memory.packed, basis.values)
    extra_xy, _, _ = block_crosses(basis.values, blocks, targets)
    crosses = {h: (np.concatenate([xy[k][:, columns], extra_xy[k]], axis=1), ysum[k]) for k, h in enumerate(horizons)}
    gram_columns = GramColumns(columns, basis.columns, total_features=p)
    results = select_stable(grams, crosses, params, gram_columns, basis.allowed)
    del grams
    storage: GramStorage = "packed" if memory.packed else "full"
    spilled = matrix if isinstance(matrix, SpilledMatrix) else None
    if screened:
        results = {h: _screened_as_nan(r, list(screened)) for h, r in results.items()}
    return Selection(selection_rows, holdout_start, results, len(columns), screened, storage, gram_columns, spilled)


def _screened_as_nan(result: SelectionResult, screened: list[int]) -> SelectionResult:
    """Return the result with NaN frequency where a feature was screened out (never tried)."""
    frequencies = result.frequencies.copy()
    frequencies[screened] = np.nan
    return replace(result, frequencies=frequencies)


def analyse_horizon(
    prepared: PreparedPair, selection: Selection, horizon: int, settings: Settings, model_threads: int
) -> HorizonResult:
    """Return one horizon's result from the pair's selection: its stable features, the
    walk-forward model beside its baseline, held-out verdicts, SHAP, substitutes, eras and
    nonlinear dependence curves. Horizons may run side by side, each on `model_threads`."""
    # its own map of a spilled matrix: the pages it read leave the RSS with it
    view = prepared if selection.spilled is None else replace(prepared, matrix=selection.spilled.mapped())
    stable = _stable_features(prepared.features, selection, horizon)
    train = TrainParams.from_settings(settings, prepared.pair, model_threads)
    return _horizon_result(view, selection.results[horizon], stable, selection, settings, train)


def _stable_features(features: list[str], selection: Selection, horizon: int) -> list[StableFeature]:
    """Return a horizon's stable features, most frequent first, each with the shape of the basis
    column that entered selection most often, its partner, and the cluster it stands for."""
    result = selection.results[horizon]
    stable = []
    for feature in result.stable:
        shape, partner = selection.shape(horizon, feature)
        cluster = result.clusters.get(feature)  # stable as a cluster of substitutes: it stands for them
        stable.append(
            StableFeature(
                feature=features[feature],
                frequency=round(float(result.frequencies[feature]), 4),
                shape=cast(FeatureShape, shape),  # validated by the model
                partner=features[partner] if partner >= 0 else None,
                cluster=[features[j] for j in cluster.members[1:]] if cluster else None,
                cluster_frequency=round(cluster.frequency, 4) if cluster else None,
            )
        )
    return stable


def _dependence(
    prepared: PreparedPair, stable: list[StableFeature], confirmed: list[str], holdout_start: int, horizon: int
) -> list[DependenceCurve]:
    """Return a dependence curve on the held-out rows for each confirmed feature selected
    through a nonlinear column (analysis/dependence.py)."""
    index = {name: j for j, name in enumerate(prepared.features)}
    heldout = prepared.rows[holdout_start:]
    target = prepared.targets[target_column(horizon)].to_numpy()[holdout_start:]
    curves = []
    for entry in stable:
        if entry.feature not in confirmed or entry.shape == Shape.LINEAR:
            continue
        values = prepared.matrix[heldout, index[entry.feature]]
        partner = None if entry.partner is None else prepared.matrix[heldout, index[entry.partner]]
        curve = dependence_curve(np.asarray(values, dtype=np.float64), target, partner)
        curves.append(DependenceCurve.model_validate(entry.model_dump(include={"feature", "shape", "partner"}) | curve))
    return curves


def _horizon_result(
    prepared: PreparedPair,
    selection: SelectionResult,
    stable_features: list[StableFeature],
    pair_selection: Selection,
    settings: Settings,
    train: TrainParams,
) -> HorizonResult:
    """Return one horizon's result: the walk-forward model beside its baseline, held-out verdicts
    of the stable features, SHAP, their substitutes and eras, and nonlinear dependence curves."""
    horizon = selection.horizon
    holdout_start = pair_selection.holdout_start
    target = prepared.targets[target_column(horizon)].to_numpy()
    stable = selection.stable
    columns = np.asarray(stable, dtype=np.int64)
    features = prepared.matrix[np.ix_(prepared.rows, columns)] if stable else np.empty((len(target), 0), np.float32)
    # the purge covers the labels' overlap; a persistent stable feature's chance alignment with the
    # target also runs on past it, so the gap is at least the features' dependence (over the rows
    # before the held-out end; at most a quarter of them): a noise column aligned with the target at
    # the end of the training rows would otherwise still look aligned at the start of the test window
    gap = purge_gap(horizon, len(target), settings)
    if stable:
        persistence = int(dependence_rows(features[:holdout_start].astype(np.float64)).max())
        gap = max(gap, min(persistence, holdout_start // 4))
    folds = walk_forward_folds(len(target), holdout_start, settings.cv_folds, gap)
    model = evaluate_horizon(features, target, folds, train, gap)
    names = [prepared.features[i] for i in stable]
    boosters: list[Any] = model.fold_boosters or [None] * len(folds)  # None: no stable feature, no model
    heldout = [
        HeldOutFold(booster, features[test], target[test] > 0, up_rate)
        for (_, test), booster, up_rate in zip(folds, boosters, model.fold_up_rates, strict=True)
    ]
    confirm = ConfirmParams.from_settings(settings, prepared.pair, horizon)
    # the time of each held-out row: the report pools pairs over the same days and clock blocks
    heldout_rows = prepared.rows[np.concatenate([test for _, test in folds])]
    times = prepared.times[heldout_rows]
    confirmation = Confirmation.model_validate(confirm_horizon(heldout, names, horizon + TARGET_WINDOW, confirm, times))
    shap_top, model_partners = [], []
    if model.booster is not None:
        shap_seed = seed_sequence(settings.seed, prepared.pair, Stream.SHAP, horizon)
        ranking = shap_importance(model.booster, features[model.test_rows], names, settings.shap_rows, shap_seed)
        shap_top = [ShapFeature(feature=f, mean_abs_shap=round(v, 6)) for f, v in ranking[:SHAP_TOP]]
        # every confirmed feature, linear ones too: one pass explains every pair of the model's features,
        # and a feature selection took as a line may still act with a partner in the trees
        found = interaction_partners(
            model.booster, features[model.test_rows], names, confirmation.confirmed,
            settings.shap_rows, settings.shap_interaction_rows, shap_seed,
        )  # fmt: skip
        model_partners = [
            ModelPartner(
                feature=p.feature, partner=p.partner, share=round(p.share, 4), interaction=round(p.interaction, 4)
            )
            for p in found
        ]
    structure = stable_structure(prepared, pair_selection.rows, names, confirmation.confirmed, horizon, settings)
    return HorizonResult(
        stable=stable_features,
        q=selection.q,
        threshold=selection.threshold,
        fits=selection.fits,
        error_bound=round(selection.error_bound, 4),
        metrics=HorizonMetrics.model_validate({"folds": model.folds, "mean": model.mean, "baseline": model.baseline}),
        confirmation=confirmation,
        shap_top=shap_top,
        substitutes=Substitutes.model_validate(structure["substitutes"]),
        eras=None if structure["eras"] is None else Eras.model_validate(structure["eras"]),
        dependence=_dependence(prepared, stable_features, confirmation.confirmed, holdout_start, horizon),
        model_partners=model_partners,
    )


def pair_ledger(
    prepared: PreparedPair, selection: Selection, horizon_results: dict[str, HorizonOutcome]
) -> pd.DataFrame:
    """Return the pair's feature ledger: every feature x selected horizon with its selection
    frequency, whether it was selected, why it was excluded, and its held-out verdict."""
    pair = prepared.pair
    reasons = [selection.screened.get(j) for j in range(len(prepared.features))]
    parts = []
    for horizon, result in selection.results.items():
        parts.append(
            pd.DataFrame(
                {
                    "pair": pair,
                    "horizon": horizon,
                    "feature": prepared.features,
                    "frequency": result.frequencies,
                    "selected": np.isin(np.arange(len(prepared.features)), result.stable),
                    "excluded": reasons,
                }
            )
        )
        if prepared.exclusions:
            parts.append(
                pd.DataFrame(
                    {
                        "pair": pair,
                        "horizon": horizon,
                        "feature": list(prepared.exclusions),
                        "frequency": np.nan,
                        "selected": False,
                        "excluded": list(prepared.exclusions.values()),
                    }
                )
            )
    ledger = pd.concat(parts, ignore_index=True)
    ledger["excluded"] = ledger["excluded"].astype("string")
    return _with_verdicts(ledger, horizon_results)


def _with_verdicts(ledger: pd.DataFrame, horizon_results: dict[str, HorizonOutcome]) -> pd.DataFrame:
    """Return the ledger with each stable feature's held-out verdict: confirmed, its permutation
    effect on held-out log loss and 95% interval, and the Bonferroni lower bound that decided it
    (NaN and False for features that were not stable)."""
    verdicts = pd.DataFrame(
        [
            {
                "horizon": int(horizon),
                "feature": f.feature,
                "confirmed": f.confirmed,
                "heldout_effect": f.effect,
                "effect_low": f.effect_low,
                "effect_high": f.effect_high,
                "effect_lower_bound": f.lower_bound,
            }
            for horizon, result in horizon_results.items()
            if isinstance(result, HorizonResult) and result.confirmation is not None  # a failed horizon has none
            for f in result.confirmation.features
        ],
        columns=["horizon", "feature", "confirmed", "heldout_effect", "effect_low", "effect_high",
                 "effect_lower_bound"],
    )  # fmt: skip
    merged = ledger.merge(verdicts, on=["horizon", "feature"], how="left", validate="many_to_one")
    merged["confirmed"] = merged["confirmed"].astype("boolean").fillna(False).astype(bool)
    return merged
