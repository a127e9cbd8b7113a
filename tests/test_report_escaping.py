"""Warehouse values reach report.html and report.md escaped: a feature name or a table name that
holds markup, a pipe or a newline shows as text, and cannot open a tag, end a table cell or break
a line."""

from __future__ import annotations

import re
from datetime import date
from html.parser import HTMLParser

import jsonschema
import pytest

from bqx_queue.domain import Report, RunManifest
from bqx_queue.report.build import report_schema
from bqx_queue.report.html import render_html
from bqx_queue.report.markdown import render_markdown
from bqx_queue.report.templating import escape_markdown

pytestmark = pytest.mark.unit

FEATURE = "reg_eurusd__<script>alert(1)</script>|x"
TABLE = "bqx.<script>alert(1)</script>|t"
ERROR = "table <b>gone</b> | line one\nline two"
PIPE = re.compile(r"(?<!\\)\|")  # a pipe Markdown reads as a cell border


def _report() -> dict:
    """A report as report.json holds it: eurusd selected FEATURE (read from TABLE); gbpusd failed."""
    metrics = {"auc": 0.6, "accuracy": 0.55, "directional_accuracy": 0.55, "log_loss": 0.69}
    horizon = {
        "stable": [{"feature": FEATURE, "frequency": 0.9}], "n_stable": 1, "q": 10, "threshold": 0.75, "fits": 100,
        "error_bound": 0.5, "folds": [], "metrics": metrics, "baseline": metrics | {"auc": 0.5},
        "shap_top": [{"feature": FEATURE, "mean_abs_shap": 0.25}],
    }  # fmt: skip
    verdict = {
        "pair": "eurusd", "horizon": 15, "feature": FEATURE, "frequency": 0.9, "effect": 0.01, "effect_low": -0.01,
        "effect_high": 0.03, "lower_bound": -0.005, "level": 0.05, "k": 1, "why": f"{FEATURE} is not above 0",
    }  # fmt: skip
    return {
        "run": {
            "run_id": "r", "created_at": "2026-01-01T00:00:00+00:00", "duration_s": 1.0, "pairs": ["eurusd", "gbpusd"],
            "horizons": [15], "days": 3, "warehouse": "w", "source": "duckdb", "workers": {}, "worker_count": 0,
            "concurrency": 0, "processes": 1,
        },
        "totals": {
            "pairs_ok": 1, "pairs_failed": 1, "queries": 1, "bytes_processed": 0, "bytes_billed": 0, "cost_usd": 0.0,
            "features_tested": 1, "stable_selections": 1,
        },
        "pairs": [
            {
                "pair": "eurusd", "status": "ok", "error": None, "queries": 1, "bytes_billed": 0, "cost_usd": 0.0,
                "host": "h", "pid": 1, "horizons": {"15": horizon}, "failed_horizons": {},
                "started_at": "2026-01-01T00:00:01+00:00", "finished_at": "2026-01-01T00:00:02+00:00",
            },
            {
                "pair": "gbpusd", "status": "failed", "error": ERROR, "queries": 0, "bytes_billed": 0, "cost_usd": 0.0,
                "host": "h", "pid": 2, "horizons": {}, "failed_horizons": {},
            },
        ],
        "features_across_pairs": [{"feature": FEATURE, "pair_horizons": 1, "confirmed_pair_horizons": 0}],
        "confirmation": {
            "note": "n", "horizons_evaluated": 1, "findings": [], "unconfirmed": [verdict], "flagged_horizons": [],
        },
        "data_quality": {
            "duplicate_rule": "r",
            "tables": [
                {"pair": "eurusd", "table": TABLE, "repeated_timestamps": 1, "rows_dropped": 1, "rows_missing": 0}
            ],
            "non_finite": [], "missing_families": [], "failed_horizons": [],
        },
    }  # fmt: skip


def _manifest() -> RunManifest:
    return RunManifest(run_id="r", created_at="2026-01-01T00:00:00+00:00", pairs=["eurusd", "gbpusd"], horizons=[15],
                       days=[date(2026, 1, 1)], warehouse="w", source="duckdb", plans={}, settings={})  # fmt: skip


class _Page(HTMLParser):
    """The tags a browser would build from a page, and its text."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.add(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_markup_in_warehouse_values_is_text_in_report_html() -> None:
    report = _report()
    jsonschema.validate(report, report_schema())
    page = render_html(Report.model_validate(report), _manifest())
    parsed = _Page(page)
    # the page's own <b> tags and its one inline script (sorting, filtering), none from a value
    assert "b" in parsed.tags and page.count("<script") == 1 and "<script>\n// report.html's only script" in page
    assert "<b>gone</b>" not in page
    text = "\n".join(parsed.text)
    # shown as text where each is shown: the verdict table, the SVG labels and tooltips, the quality table
    assert text.count(FEATURE) >= 6
    assert TABLE in text and ERROR in text


def test_warehouse_values_cannot_break_report_md() -> None:
    markdown = render_markdown(Report.model_validate(_report()))
    assert "<script" not in markdown and "<b>" not in markdown
    escaped = r"reg_eurusd__&lt;script&gt;alert(1)&lt;/script&gt;\|x"
    assert f"- \\`{escaped}\\`" not in markdown  # escaped once, not twice
    assert f"- `{escaped}`: 1 pair-horizons" in markdown
    quality_row = next(
        line for line in markdown.splitlines() if r"bqx.&lt;script&gt;alert(1)&lt;/script&gt;\|t" in line
    )
    assert len(PIPE.findall(quality_row)) == 6  # five cells
    verdict_row = next(line for line in markdown.splitlines() if line.startswith("| eurusd | h15 | `"))
    assert len(PIPE.findall(verdict_row)) == 10  # nine cells, the feature named in two of them
    assert r"- gbpusd: table &lt;b&gt;gone&lt;/b&gt; \| line one line two" in markdown.splitlines()


@pytest.mark.parametrize(
    ("value", "escaped"),
    [("a|b", r"a\|b"), ("a\\|b", r"a\\\|b"), ("`x`", r"\`x\`"), ("<i>", "&lt;i&gt;"), ("a\r\nb", "a  b"), (3, "3")],
)
def test_escape_markdown(value: object, escaped: str) -> None:
    assert escape_markdown(value) == escaped


def test_a_flagged_horizon_is_marked_in_both_reports() -> None:
    # a run's flags depend on its data; this report has one whatever any run gives
    report = _report()
    interval = {"estimate": 0.45, "low": 0.41, "high": 0.49}
    report["confirmation"]["flagged_horizons"] = [
        {"pair": "eurusd", "horizon": 15, "reason": "held-out AUC 0.450 (95% CI 0.410 to 0.490) is below the "
         "baseline's 0.5", "auc": interval, "log_loss_gain": {"estimate": -0.02, "low": -0.03, "high": -0.01}},
    ]  # fmt: skip
    jsonschema.validate(report, report_schema())
    model = Report.model_validate(report)
    markdown = render_markdown(model)
    assert "**FLAGGED** eurusd h15: held-out AUC 0.450" in markdown
    page = _Page(render_html(model, _manifest()))
    assert "FLAGGED" in "\n".join(page.text)
