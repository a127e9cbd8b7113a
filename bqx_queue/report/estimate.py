"""The producer's cost estimate as recorded in a run manifest (`manifest["estimate"]`, written
by plan_run). Readers (the HTML report, `bqx status`) show the actual cost always and the
estimate when the manifest has one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CostEstimate:
    """Estimated dollars per pair and in total; empty when the manifest has no estimate."""

    per_pair_usd: dict[str, float] = field(default_factory=dict)
    total_usd: float | None = None

    @property
    def known(self) -> bool:
        return self.total_usd is not None


def cost_estimate(manifest: dict[str, Any]) -> CostEstimate:
    """Return the run's estimate (per pair and in total, shared tables included in the total)."""
    estimate = manifest.get("estimate")
    if not estimate:
        return CostEstimate()
    per_pair = {pair: float(entry["cost_usd"]) for pair, entry in estimate.get("pairs", {}).items()}
    return CostEstimate(per_pair, float(estimate["cost_usd"]))
