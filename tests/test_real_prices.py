"""Real prices, not ours: 5,000 hourly EUR/USD bars (shipped by `backtesting`) as a Parquet export.

For H < 45, target_bqx45_hH contains the last 45 - H one-row returns, so the momentum over 45 - H
rows must be confirmed on held-out rows; for H >= 45 nothing here carries information, and the
persistent AR(1) noise columns, which in-sample selection does sometimes call stable, must never
be confirmed.
"""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pandas as pd
import pytest
from support.real_prices import build_real_price_export, eurusd_bars, momentum_feature, noise_features

from bqx_queue.analysis.pooled import BlockRecord, HeldOutEvidence, block_variance
from bqx_queue.config import load_settings
from bqx_queue.domain.universe import HORIZONS, TARGET_WINDOW
from bqx_queue.report.build import report_schema, write_report
from bqx_queue.runner.pair import process_pair_all_horizons
from bqx_queue.runner.run import execute_pair, plan_run, write_manifest
from bqx_queue.warehouse.source import open_source

pytestmark = pytest.mark.integration

# A short hourly history: read all of it (max_rows above its ~4,900 rows); the defaults fit the
# rest (12 selection blocks of ~300 rows, 3 walk-forward folds over the last 25%, B = 50).
SHORT_HISTORY = {"max_rows": 10_000}
NOISE = set(noise_features())


def _run(tmp_path_factory: pytest.TempPathFactory, noise_seed: int, seed: int):
    folder = build_real_price_export(tmp_path_factory.mktemp(f"eurusd-{noise_seed}"), noise_seed=noise_seed)
    settings = load_settings(warehouse=folder, seed=seed, **SHORT_HISTORY)
    return process_pair_all_horizons("eurusd", settings, source=open_source(settings))


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    return _run(tmp_path_factory, noise_seed=0, seed=42)


def _confirmed(summary) -> dict[int, set[str]]:
    return {int(h): set(r["confirmation"]["confirmed"]) for h, r in summary["horizons"].items()}


def _assert_the_truth(summary) -> None:
    confirmed = _confirmed(summary)
    for horizon in HORIZONS:
        if horizon < TARGET_WINDOW:
            assert momentum_feature(horizon) in confirmed[horizon], (horizon, summary["horizons"][str(horizon)])
        else:
            assert confirmed[horizon] == set(), (horizon, summary["horizons"][str(horizon)]["confirmation"])
        assert not confirmed[horizon] & NOISE


def test_real_prices_confirm_the_shared_momentum_and_nothing_past_45_rows(real_run):
    summary = real_run.summary.model_dump(mode="json")
    assert summary["rows_used"] > 4_500 and summary["features_usable"] == 40
    _assert_the_truth(summary)
    h15 = summary["horizons"]["15"]["confirmation"]
    assert h15["auc"]["low"] > 0.85 and h15["log_loss_gain"]["low"] > 0 and not h15["flagged"]
    assert h15["k"] == len(summary["horizons"]["15"]["stable"]) and h15["level"] == pytest.approx(0.05 / h15["k"])
    assert h15["min_block_rows"] == 15 + TARGET_WINDOW and h15["heldout_rows"] > 1_000


def test_no_horizon_of_real_prices_is_flagged_and_each_flag_follows_its_rule(real_run):
    # A flag says a horizon's model did worse than the baseline on held-out rows. Real prices have
    # no such horizon (momentum below 45 rows, the baseline's coin above); a flagged horizon that
    # confirms nothing and says why is test_confirmation's reversed-relation test.
    horizons = real_run.summary.model_dump(mode="json")["horizons"]
    assert sorted(map(int, horizons)) == list(HORIZONS)
    for horizon, result in horizons.items():
        verdict = result["confirmation"]
        worse = verdict["auc"]["high"] < 0.5 or verdict["log_loss_gain"]["high"] < 0
        assert verdict["flagged"] == worse, (horizon, verdict)
        assert not verdict["flagged"] and verdict["flag_reason"] is None, (horizon, verdict)


def test_the_ledger_carries_each_stable_feature_verdict(real_run):
    ledger = real_run.ledger
    stable = ledger[ledger["selected"]]
    assert stable["heldout_effect"].notna().all() and stable["effect_low"].le(stable["heldout_effect"]).all()
    assert not ledger.loc[~ledger["selected"], "confirmed"].any()
    confirmed = ledger[ledger["confirmed"]]
    assert set(zip(confirmed["horizon"], confirmed["feature"], strict=True)) == {
        (15, momentum_feature(15)),
        (30, momentum_feature(30)),
    }


@pytest.mark.parametrize(("noise_seed", "seed"), [(1, 1), (2, 2), (3, 3), (7, 7)])
def test_across_seeds_no_noise_column_is_ever_confirmed(tmp_path_factory, noise_seed, seed):
    summary = _run(tmp_path_factory, noise_seed, seed).summary.model_dump(mode="json")
    _assert_the_truth(summary)


def test_the_report_lists_findings_apart_from_unconfirmed_features_and_marks_flagged_horizons(tmp_path_factory):
    folder = build_real_price_export(tmp_path_factory.mktemp("eurusd-report"), noise_seed=0)
    settings = load_settings(warehouse=folder, runs_dir=folder.parent / "runs", seed=42, **SHORT_HISTORY)
    store = write_manifest(settings, plan_run(settings, ["eurusd"]))
    execute_pair(store, "eurusd")
    data = json.loads(write_report(store).read_text())
    jsonschema.validate(data, report_schema())
    section = data["confirmation"]
    assert {(r["horizon"], r["feature"]) for r in section["findings"]} == {
        (15, momentum_feature(15)),
        (30, momentum_feature(30)),
    }
    assert data["totals"]["confirmed_findings"] == 2 and section["horizons_evaluated"] == len(HORIZONS)
    stable = {(int(h), s["feature"]) for h, r in data["pairs"][0]["horizons"].items() for s in r["stable"]}
    assert {(r["horizon"], r["feature"]) for r in section["unconfirmed"]} == stable - {
        (r["horizon"], r["feature"]) for r in section["findings"]
    }
    assert all(r["why"] for r in section["unconfirmed"])
    flagged = [(int(h), r["confirmation"]["flag_reason"]) for h, r in data["pairs"][0]["horizons"].items()
               if r["confirmation"]["flagged"]]  # fmt: skip
    assert [(f["horizon"], f["reason"]) for f in section["flagged_horizons"]] == flagged
    assert "error bound" in section["note"] and "held-out rows" in section["note"]

    markdown = (store.root / "report.md").read_text()
    findings_md, unconfirmed_md = markdown.split("## Confirmed findings (held-out rows)")[1].split(
        "## Stable but not confirmed"
    )
    assert f"| eurusd | h15 | `{momentum_feature(15)}` |" in findings_md
    assert "noise_eurusd" not in findings_md
    for horizon, _ in flagged:
        assert f"**FLAGGED** eurusd h{horizon}:" in unconfirmed_md
    page = (store.root / "report.html").read_text()
    # eurusd h30's section: its confirmed momentum feature before the stable-but-unconfirmed ones
    section = page.split("<div class='horizon' id='pair-eurusd-h30'>", 1)[1].split("</div>", 1)[0]
    assert "confirmed of" in section and momentum_feature(30) in section
    if "Stable but not confirmed:" in section:
        assert section.index(momentum_feature(30)) < section.index("Stable but not confirmed:")
    assert ("<b>FLAGGED</b>" in page) == bool(flagged)


def _day_over_block_variance(directions: pd.Series) -> float:
    """Return the variance of the days' sums of centred `directions` over the one the pooled test
    takes from their 3-hour blocks (each block's variance and its covariance with the next)."""
    centred = directions - directions.mean()
    hours = centred.index.tz_localize("UTC") if centred.index.tz is None else centred.index
    starts = hours.floor("3h")
    block_sums = centred.groupby(starts).sum()
    record = BlockRecord(180, 1, {t.to_pydatetime(): (int(n), float(v)) for (t, v), n in
                                  zip(block_sums.items(), centred.groupby(starts).size(), strict=True)})  # fmt: skip
    evidence = HeldOutEvidence("direction", 0.0, 0.0, 1, len(centred), None, None, record)
    blocks = block_variance([evidence])
    assert blocks is not None and blocks.blocks == len(block_sums)
    day_sums = centred.groupby(hours.floor("D")).sum().to_numpy()
    days = len(day_sums)
    return float(day_sums @ day_sums * days / (days - 1)) / (blocks.standard_error * len(centred)) ** 2


def test_real_hours_carry_no_dependence_past_the_blocks_the_pooled_test_assumes():
    """The pooled test's 3-hour blocks (analysis/pooled.py) assume the target's up/down surprises
    are uncorrelated beyond the labels' overlap. On ~5,000 real EUR/USD hours over 251 days the
    direction of the next hour's return is: the days' sums vary as the blocks say (0.97 times;
    the ratio's noise is about 0.09). A trend shared by a day's hours that moves each hour's
    chance of going up by 10 points on a typical day (a fifth of a direction's spread) is what
    the check catches: with it the days vary 1.4 times as much."""
    log_close = np.log(eurusd_bars()["Close"])
    directions = np.sign(log_close.diff().shift(-1)).dropna()
    assert 0.8 < _day_over_block_variance(directions) < 1.25
    trend = np.random.default_rng(0).standard_normal(len(directions.index.normalize().unique()))
    per_day = pd.Series(trend, index=directions.index.normalize().unique())
    trending = directions + 0.2 * per_day.reindex(directions.index.normalize()).to_numpy()
    assert _day_over_block_variance(trending) > 1.3
