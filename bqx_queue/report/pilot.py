"""The approval step in the report: what a one-pair pilot measured and what the full run would
cost and take at its width, and who approved the plan a run ran (bqx_queue/runner/approval.py)."""

from __future__ import annotations

import math

from bqx_queue.domain import PAIRS, Pilot, PilotMeasured, PilotProjected, ReportPair, RunManifest

PILOT_NOTE = (
    "Projection from this one-pair run: every pair assumed as wide as the pilot, so the full run's cost is "
    "the pilot's cost times the number of pairs (plus shared tables once, when the run fetched them), and its "
    "wall time is the pilot's wall time times the waves of pairs the live workers' slots run one after another."
)


def pilot_projection(ok: list[ReportPair], manifest: RunManifest) -> Pilot | None:
    """Return the measured pilot and the projected full run, for a run of exactly one pair that
    finished; None otherwise."""
    if len(manifest.pairs) != 1 or len(ok) != 1:
        return None
    pair = ok[0]
    slots = max(1, manifest.slots)
    shared = manifest.estimate.shared if manifest.estimate else []
    shared_cost = sum(e.cost_usd for e in shared)
    shared_bytes = sum(e.bytes_billed for e in shared)
    waves = math.ceil(len(PAIRS) / slots)
    wall_s = pair.wall_s or 0.0
    return Pilot(
        note=PILOT_NOTE,
        pair=pair.pair,
        measured=PilotMeasured(
            bytes_processed=pair.bytes_processed or 0,
            bytes_billed=pair.bytes_billed,
            cost_usd=pair.cost_usd,
            wall_s=wall_s,
            peak_rss_bytes=pair.peak_rss_bytes or 0,
            features_tested=pair.features_tested or 0,
        ),
        projected=PilotProjected(
            pairs=len(PAIRS),
            bytes_billed=len(PAIRS) * pair.bytes_billed + shared_bytes,
            cost_usd=round(len(PAIRS) * pair.cost_usd + shared_cost, 6),
            slots=slots,
            waves=waves,
            wall_s=round(waves * wall_s, 3),
        ),
    )
