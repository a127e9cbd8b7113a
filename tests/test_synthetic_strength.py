"""The synthetic warehouse's per-feature strength: `feature_r2` gives every planted linear feature,
persistent or short-lived, that R^2 of the h45 target; `bqx warehouse build` plants the demo's
realistic strengths unless --signal-r2 asks for the tests' strong one."""

from __future__ import annotations

import json
import math

import duckdb
import numpy as np
import pytest

from bqx_queue.cli import main
from bqx_queue.cli.demo import DEMO_WAREHOUSE
from bqx_queue.domain.errors import WarehouseError
from bqx_queue.domain.universe import HORIZONS
from bqx_queue.warehouse import synthetic
from bqx_queue.warehouse.synthetic import WarehouseSpec, expected_correlations

NOISE_VAR = 2 * synthetic.MINUTE_VOL**2 * (1 - synthetic.CURRENCY_CORRELATION)


@pytest.mark.unit
@pytest.mark.parametrize(("r2", "nonlinear_r2"), [(0.0025, 0.0), (0.01, 0.0), (0.02, 0.08)])
def test_each_planted_linear_feature_explains_feature_r2_of_the_h45_target(r2, nonlinear_r2):
    spec = WarehouseSpec(feature_r2=r2, nonlinear_r2=nonlinear_r2)
    table = expected_correlations(spec, synthetic._coefficients(spec, NOISE_VAR), NOISE_VAR)
    assert table[:, HORIZONS.index(45)] ** 2 == pytest.approx([r2] * spec.signals, rel=1e-9)
    # the short-lived signals carry more at h15 and almost nothing at h105; the persistent one lasts
    assert table[3, HORIZONS.index(15)] ** 2 > 2 * r2 and table[3, -1] ** 2 < r2 / 100
    assert table[0, -1] ** 2 > r2 / 4


@pytest.mark.unit
def test_signal_phis_set_each_signals_persistence():
    persistent = WarehouseSpec(signals=3, signal_phis=(0.999, 0.999, 0.999), feature_r2=0.01, nonlinear_r2=0.0)
    table = expected_correlations(persistent, synthetic._coefficients(persistent, NOISE_VAR), NOISE_VAR)
    assert table[:, HORIZONS.index(45)] ** 2 == pytest.approx([0.01] * 3, rel=1e-9)
    # informative at every horizon: at h105 still most of its h45 strength
    assert (table[:, -1] ** 2 > 0.8 * 0.01).all()
    with pytest.raises(WarehouseError, match="signal_phis"):
        WarehouseSpec(signal_phis=(0.999, 1.0))
    with pytest.raises(WarehouseError, match="signals"):
        WarehouseSpec(signals=3, signal_phis=(0.9, 0.9))


@pytest.mark.unit
def test_a_feature_r2_the_signals_cannot_carry_is_refused():
    with pytest.raises(WarehouseError, match="too large"):
        synthetic._coefficients(WarehouseSpec(feature_r2=0.3), NOISE_VAR)
    with pytest.raises(WarehouseError, match="feature_r2"):
        WarehouseSpec(feature_r2=0.0)
    assert math.isclose(WarehouseSpec().signal_r2, 0.5)  # the strong default stays for the tests


@pytest.mark.integration
def test_warehouse_build_plants_the_demo_strengths_unless_signal_r2_is_given(tmp_path):
    def built(*options: str) -> dict:
        path = tmp_path / f"w{len(list(tmp_path.iterdir()))}.duckdb"
        args = [
            "warehouse",
            "build",
            "--path",
            str(path),
            "--pairs",
            "eurusd",
            "--days",
            "2",
            "--features-per-pair",
            "20",
        ]
        assert main([*args, *options]) == 0
        with duckdb.connect(str(path), read_only=True) as con:
            return json.loads(con.execute("SELECT body FROM bqx_meta.manifest").fetchone()[0])

    def linear_h45_r2(manifest: dict) -> list[float]:
        pair = manifest["pairs"]["eurusd"]
        corr = pair["horizons"]["45"]["expected_corr"]
        return [corr[f] ** 2 for f, shape in pair["shapes"].items() if shape == "linear"]

    demo = built()
    assert demo["spec"]["feature_r2"] == DEMO_WAREHOUSE["feature_r2"] == 0.015
    assert demo["spec"]["nonlinear_r2"] == DEMO_WAREHOUSE["nonlinear_r2"]
    assert linear_h45_r2(demo) == pytest.approx([0.015] * 4, abs=1e-4)  # the manifest rounds to 4 digits
    strong = built("--signal-r2", "0.5", "--nonlinear-r2", "0.08")
    assert strong["spec"]["feature_r2"] is None and strong["spec"]["signal_r2"] == 0.5
    assert max(linear_h45_r2(strong)) > 0.05  # the tests' strong setting: the persistent feature near 6%


@pytest.mark.unit
def test_persistent_series_have_their_full_spread_from_the_first_row():
    # a series started at zero would reach its spread only after about 1 / (1 - phi) rows: at row
    # 300 its variance would be 1 - 0.999^600 = 0.45, a start-up stretch only training rows see
    series = synthetic.ar1(np.random.default_rng(0), 0.999, (4000, 1500))
    variances = series[:, [0, 300, 1499]].var(axis=0)
    assert variances == pytest.approx([1.0, 1.0, 1.0], abs=0.08)
    # and still AR(1) with its phi: neighbours correlate at phi
    assert np.corrcoef(series[:, 700], series[:, 701])[0, 1] == pytest.approx(0.999, abs=0.001)
