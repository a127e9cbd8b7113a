"""Feature families: a feature's name without its pair and currency tokens.

A family is what a quant means by "the same kind of feature in another pair": the per-pair
table `mom_eurusd` and the per-pair table `mom_gbpjpy` both hold `mom_dir_45`, so
`mom_eurusd__mom_dir_45` and `mom_gbpjpy__mom_dir_45` are the family `mom__mom_dir_45`. The rule
(setting `family_strip_tokens`, by default the 28 pair names and the 8 currency codes) splits the
table and the column on `_` and drops every token in the list, case-insensitively:

>>> tokens = ("eurusd", "gbpusd", "eur", "gbp", "usd")
>>> feature_family("mom_eurusd__mom_dir_45", tokens)
'mom__mom_dir_45'
>>> feature_family("cov_eurusd_gbpusd__corr_90", tokens)
'cov__corr_90'
>>> feature_family("tri_eur_gbp_usd__error_zscore", tokens)
'tri__error_zscore'
>>> feature_family("csi_usd__strength_45", tokens)
'csi__strength_45'

A one-hot column (`regime_eurusd__regime_state=trend_up`) keeps its level. Two features of one
pair can share a family (a pair's two `cov_` partners): the family's size in that pair is what
the null model of the across-pair counts needs (analysis/across_pairs.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from bqx_queue.warehouse.sql import FEATURE_SEPARATOR


def _strip(part: str, tokens: frozenset[str]) -> str:
    kept = [token for token in part.split("_") if token.lower() not in tokens]
    return "_".join(kept)


def feature_family(feature: str, strip_tokens: Iterable[str]) -> str:
    """Return the family of a feature: its table and column without pair and currency tokens."""
    tokens = frozenset(t.lower() for t in strip_tokens)
    table, separator, column = feature.partition(FEATURE_SEPARATOR)
    if not separator:  # a frame column without a table prefix
        return _strip(table, tokens)
    return f"{_strip(table, tokens)}{FEATURE_SEPARATOR}{_strip(column, tokens)}"


def family_sizes(features: Iterable[str], strip_tokens: Iterable[str]) -> dict[str, int]:
    """Return family -> how many of `features` belong to it."""
    tokens = tuple(strip_tokens)
    return dict(Counter(feature_family(f, tokens) for f in features))
