"""The report says the shape: a confirmed gate is named with its partner in report.md and
report.html, report.html draws its dependence plot, and a cluster's representative names its
substitutes."""

from __future__ import annotations

import copy

import jsonschema
import pytest
from test_report_escaping import _manifest, _report

from bqx_queue.domain import Report
from bqx_queue.report.build import report_schema
from bqx_queue.report.html import render_html
from bqx_queue.report.markdown import render_markdown

pytestmark = pytest.mark.unit

GATED, REGIME, COPY = "lag_eurusd__lag_diff_45", "ext_eurusd__ext_upper_90", "agg_eurusd__agg_cv_45"


def _with_a_confirmed_gate() -> dict:
    report = copy.deepcopy(_report())
    horizon = report["pairs"][0]["horizons"]["15"]
    horizon["stable"] = [
        {"feature": GATED, "frequency": 0.97, "shape": "gate", "partner": REGIME},
        {"feature": REGIME, "frequency": 0.95, "shape": "gate", "partner": GATED},
        {"feature": "mom_eurusd__mom_dir_45", "frequency": 0.7, "cluster": [COPY], "cluster_frequency": 0.93},
    ]
    horizon["dependence"] = [
        {
            "feature": GATED, "shape": "gate", "partner": REGIME, "x": [-1.5, -0.5, 0.5, 1.5],
            "series": {"partner above median": [-0.02, -0.01, 0.01, 0.02],
                       "partner at or below": [0.02, 0.01, None, -0.02]},
        }
    ]  # fmt: skip
    finding = report["confirmation"]["unconfirmed"][0] | {"feature": GATED, "shape": "gate", "partner": REGIME}
    finding.pop("why")
    clustered = finding | {"feature": "mom_eurusd__mom_dir_45", "shape": "linear", "partner": None}
    clustered |= {"cluster": [COPY], "cluster_frequency": 0.93}
    report["confirmation"]["findings"] = [finding, clustered]
    return report


def test_a_confirmed_gate_is_named_with_its_partner_and_plotted():
    report = _with_a_confirmed_gate()
    jsonschema.validate(report, report_schema())
    model = Report.model_validate(report)
    markdown = render_markdown(model)
    assert f"| `{GATED}` | gated by {REGIME} |" in markdown
    assert f"stable as a cluster with {COPY} (together 0.93)" in markdown
    page = render_html(model, _manifest())
    assert "Shapes of the confirmed nonlinear findings" in page
    assert f"eurusd h15: {GATED} (gated by {REGIME})" in page  # the plot's title
    assert page.count("partner above median") >= 2 and "partner at or below" in page  # legend and tooltips


def test_the_model_partner_is_shown_beside_selection_and_a_disagreement_is_said():
    report = _with_a_confirmed_gate()
    gate, clustered = report["confirmation"]["findings"]
    gate |= {"model_partner": REGIME, "model_partner_share": 0.62, "model_interaction": 0.71}
    clustered |= {"model_partner": GATED, "model_partner_share": 0.3, "model_interaction": 0.2}  # linear: not shown
    other = gate | {"feature": REGIME, "partner": GATED, "model_partner": COPY, "model_partner_share": 0.4}
    report["confirmation"]["findings"].append(other)
    jsonschema.validate(report, report_schema())
    markdown = render_markdown(Report.model_validate(report))
    agreed = f"gated by {REGIME}; model: acts with {REGIME} (share 0.62; interaction 71% of its SHAP) |"
    assert f"| `{GATED}` | {agreed}" in markdown
    disagreed = (
        f"model: acts with {COPY} (share 0.40; interaction 71% of its SHAP), not with {GATED} as selection found"
    )
    assert f"| `{REGIME}` | gated by {GATED}; {disagreed} |" in markdown
    assert f"model: acts with {GATED}" not in markdown  # a linear row says linear
    page = render_html(Report.model_validate(report), _manifest())
    assert f"not with {GATED} as selection found" in page and "Model: the feature's strongest partner" in page


def test_a_report_without_nonlinear_findings_has_no_shapes_section():
    page = render_html(Report.model_validate(_report()), _manifest())
    assert "Shapes of the confirmed nonlinear findings" not in page
