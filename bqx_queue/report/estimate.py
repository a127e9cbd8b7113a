"""The producer's cost estimate as recorded in a run manifest, read tolerantly.

The dry-run estimate is written by the producer (the cost guard); older manifests have none.
Readers (the HTML report, `bqx status`) show the actual cost always and the estimate when the
manifest carries one, so they must not break on a manifest without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TIB = 1024**4
_ESTIMATE_KEYS = ("estimate", "cost_estimate")
_PLAN_COST_KEYS = ("estimate_usd", "estimated_cost_usd", "cost_usd")
_PLAN_BYTES_KEYS = ("estimated_bytes_billed", "bytes_billed")


@dataclass(frozen=True)
class CostEstimate:
    """Estimated dollars per pair and in total; empty when the manifest has no estimate."""

    per_pair_usd: dict[str, float] = field(default_factory=dict)
    total_usd: float | None = None

    @property
    def known(self) -> bool:
        return self.total_usd is not None or bool(self.per_pair_usd)


def _dollars(entry: Any, price_per_tib: float) -> float | None:
    """Return dollars from a number or a dict with a cost or a byte count; None if neither."""
    if isinstance(entry, bool):
        return None
    if isinstance(entry, int | float):
        return float(entry)
    if not isinstance(entry, dict):
        return None
    for key in _PLAN_COST_KEYS:
        if isinstance(entry.get(key), int | float):
            return float(entry[key])
    for key in _PLAN_BYTES_KEYS:
        if isinstance(entry.get(key), int | float):
            return float(entry[key]) / TIB * price_per_tib
    return None


def cost_estimate(manifest: dict[str, Any]) -> CostEstimate:
    """Return the run's cost estimate from its manifest (per pair where it says, and in total).

    Accepted shapes: `estimate` / `cost_estimate` holding a total (`cost_usd`, or `bytes_billed`)
    and `pairs` as {pair: dollars or {cost_usd|bytes_billed}} or [{pair, cost_usd|bytes_billed}];
    or per-pair figures inside `plans[pair]`.
    """
    price = float((manifest.get("settings") or {}).get("price_per_tib_usd", 6.25))
    per_pair: dict[str, float] = {}
    total: float | None = None
    for key in _ESTIMATE_KEYS:
        estimate = manifest.get(key)
        if estimate is None:
            continue
        if not isinstance(estimate, dict):
            total = _dollars(estimate, price)
            continue
        total = _dollars({k: v for k, v in estimate.items() if k != "pairs"}, price)
        pairs = estimate.get("pairs") or estimate.get("per_pair") or {}
        entries = (
            pairs.items()
            if isinstance(pairs, dict)
            else ((p.get("pair"), p) for p in pairs if isinstance(p, dict))
        )
        for pair, entry in entries:
            dollars = _dollars(entry, price)
            if pair and dollars is not None:
                per_pair[str(pair)] = dollars
    for pair, plan in (manifest.get("plans") or {}).items():
        dollars = _dollars(
            {k: v for k, v in plan.items() if k in _PLAN_COST_KEYS + _PLAN_BYTES_KEYS}, price
        )
        if dollars is not None:
            per_pair.setdefault(pair, dollars)
    if total is None and per_pair:
        total = sum(per_pair.values())
    return CostEstimate(per_pair, total)
