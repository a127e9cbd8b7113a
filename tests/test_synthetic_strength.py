"""The synthetic warehouse's per-feature strength: `feature_r2` gives every planted linear feature,
persistent or short-lived, that R^2 of the h45 target."""

from __future__ import annotations

import math

import pytest

from bqx_queue.errors import WarehouseError
from bqx_queue.universe import HORIZONS
from bqx_queue.warehouse import synthetic
from bqx_queue.warehouse.synthetic import WarehouseSpec, expected_correlations

pytestmark = pytest.mark.unit

NOISE_VAR = 2 * synthetic.MINUTE_VOL**2 * (1 - synthetic.CURRENCY_CORRELATION)


@pytest.mark.parametrize(("r2", "nonlinear_r2"), [(0.0025, 0.0), (0.01, 0.0), (0.02, 0.08)])
def test_each_planted_linear_feature_explains_feature_r2_of_the_h45_target(r2, nonlinear_r2):
    spec = WarehouseSpec(feature_r2=r2, nonlinear_r2=nonlinear_r2)
    table = expected_correlations(spec, synthetic._coefficients(spec, NOISE_VAR), NOISE_VAR)
    assert table[:, HORIZONS.index(45)] ** 2 == pytest.approx([r2] * spec.signals, rel=1e-9)
    # the short-lived signals carry more at h15 and almost nothing at h105; the persistent one lasts
    assert table[3, HORIZONS.index(15)] ** 2 > 2 * r2 and table[3, -1] ** 2 < r2 / 100
    assert table[0, -1] ** 2 > r2 / 4


def test_a_feature_r2_the_signals_cannot_carry_is_refused():
    with pytest.raises(WarehouseError, match="too large"):
        synthetic._coefficients(WarehouseSpec(feature_r2=0.3), NOISE_VAR)
    with pytest.raises(WarehouseError, match="feature_r2"):
        WarehouseSpec(feature_r2=0.0)
    assert math.isclose(WarehouseSpec().signal_r2, 0.5)  # the strong default stays for the tests
