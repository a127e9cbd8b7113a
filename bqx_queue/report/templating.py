"""The jinja2 environments that render the report from bqx_queue/report/templates: report.html
and its SVG plots with HTML autoescaping, report.md with every value escaped for Markdown.

Feature names, table names, errors and reasons come from the warehouse, so no value reaches
either page unescaped unless a template says so: HTML through autoescape, Markdown through the
environment's finalize hook, which escapes every `{{ value }}` once (filters return plain text,
so their results are escaped like any other value)."""

from __future__ import annotations

import re
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from bqx_queue.domain import EraRow, Interval

# `\` first, so that an escape the value already holds cannot swallow the one added after it
MARKDOWN_ESCAPES = str.maketrans({"\\": "\\\\", "|": "\\|", "`": "\\`", "<": "&lt;", ">": "&gt;", "\r": " ", "\n": " "})


def escape_markdown(value: Any) -> str:
    """Return a value as Markdown text that cannot end a table cell or a line, open a code span or
    start an HTML tag."""
    return str(value).translate(MARKDOWN_ESCAPES)


def number(value: float, spec: str) -> str:
    """Return `value` formatted by a format spec (",.1f", "+.4f", "g"): the report's numbers."""
    return format(value, spec)


def anchor(text: str) -> str:
    """Return text usable in an element id and a link to it (a feature or family name)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text)


def gib(value: float) -> str:
    return f"{value / 1024**3:.2f}"


def interval_text(value: Interval, signed: bool = False) -> str:
    """Return "estimate [low, high]" for an interval of the report (AUC, log-loss gain)."""
    spec = "+.4f" if signed else ".3f"
    return f"{value.estimate:{spec}} [{value.low:{spec}}, {value.high:{spec}}]"


def era_frequencies_text(row: EraRow) -> str:
    """Return "era: frequency, ..." for a confirmed feature ("-" where an era had no rows for it)."""
    pairs = zip(row.eras, row.frequencies, strict=True)
    return ", ".join(f"{label}: {'-' if f is None else f'{f:.2f}'}" for label, f in pairs)


SHAPE_WORDS = {"absolute": "|x|: threshold, square or U shape", "product": "product with", "gate": "gated by"}


def shape_text(row: Any) -> str:
    """Return how a selected feature acts, in words: linear, |x|, or a pair with its partner, the
    cluster of substitutes it stands for, and for a confirmed nonlinear one its partner in the final
    model (any row with `shape` and `partner`; see model_partner_text)."""
    words = "linear" if row.shape == "linear" else SHAPE_WORDS[row.shape] + (f" {row.partner}" if row.partner else "")
    if getattr(row, "cluster", None):
        words += f"; stable as a cluster with {', '.join(row.cluster)} (together {row.cluster_frequency:.2f})"
    if row.shape != "linear" and (model := model_partner_text(row)):
        words += f"; {model}"
    return words


def model_partner_text(row: Any) -> str:
    """Return the feature's strongest interaction partner in the final model, in words, and whether
    selection named another ("" when the row has none: not confirmed, or no interaction)."""
    partner = getattr(row, "model_partner", None)
    if partner is None:
        return ""
    words = (
        f"model: acts with {partner} (share {row.model_partner_share:.2f}; "
        f"interaction {row.model_interaction:.0%} of its SHAP)"
    )
    if row.partner and row.partner != partner:
        words += f", not with {row.partner} as selection found"
    return words


def _environment(**options: Any) -> Environment:
    environment = Environment(
        loader=PackageLoader("bqx_queue.report", "templates"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        **options,
    )
    environment.filters.update(
        number=number, gib=gib, interval=interval_text, era_frequencies=era_frequencies_text, shape=shape_text
    )
    return environment


HTML = _environment(autoescape=select_autoescape(["html", "svg"]))
MARKDOWN = _environment(autoescape=False, finalize=escape_markdown)
