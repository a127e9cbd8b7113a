"""A pair's rows as a run reads them: through the run's extract cache, its billable queries
labelled with the run and reserved in its cost ledger, joined with the shared tables the run
fetched once. Outside a run, the warehouse's own fetch_pair: no cache, no ledger."""

from __future__ import annotations

from datetime import date

from bqx_queue.artifacts import RunStore
from bqx_queue.config import Settings
from bqx_queue.runner.cost_ledger import run_context
from bqx_queue.runner.extract_cache import ExtractUse, cache_uses, summarize, through_cache
from bqx_queue.runner.shared_tables import shared_parts
from bqx_queue.warehouse.fetch import PairFetch, fetch_pair
from bqx_queue.warehouse.interface import WarehouseSource


def fetch_run_pair(
    source: WarehouseSource, pair: str, settings: Settings, days: list[date], run_id: str | None = None
) -> PairFetch:
    """Return the pair's rows on these days and what they cost, with what the extract cache did
    (cost["extract_cache"]); in a run (`run_id`) a query the cache answers is not sent, so not
    counted in cost["queries"]."""
    uses: list[ExtractUse] = []
    if run_id is None:
        fetched = fetch_pair(source, pair, settings, days)
    else:
        shared = shared_parts(RunStore(settings.runs_dir, run_id), settings, source) if source.billable else None
        cached = through_cache(source, settings)
        fetched = fetch_pair(cached, pair, settings, days, run_context(source, settings, run_id), shared)
        uses = cache_uses(cached)
    if uses:
        fetched.cost["queries"] = sum(not use.hit for use in uses)
    fetched.cost["extract_cache"] = summarize(uses)
    return fetched
