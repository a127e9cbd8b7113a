"""A run's ledger of billed bytes in Redis, shared by every worker on every host.

Before a query is sent, its cap (maximum_bytes_billed) is reserved against the run's budget in
one atomic step (a Lua script), so two workers can never both take the last dollar. After the
query, the reservation is replaced by what BigQuery actually billed. A query whose cap does not
fit is never sent: the caller gets BudgetError("budget exhausted ...").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import redis

from bqx_queue.config import Settings
from bqx_queue.domain import BrokerError, BudgetError, ledger_key
from bqx_queue.warehouse import billing
from bqx_queue.warehouse.extract_cache import UNBILLED_KEYS, ExtractCache, ExtractUse, Parts, in_use
from bqx_queue.warehouse.sql import QueryPlan

if TYPE_CHECKING:
    from bqx_queue.warehouse.bigquery_source import BigQuerySource

log = logging.getLogger(__name__)

# KEYS[1] ledger hash; ARGV: bytes to reserve, budget in bytes, ttl seconds.
# Returns the new committed + reserved total, or -(current total) - 1 when it would not fit.
_RESERVE = """
local billed = tonumber(redis.call('HGET', KEYS[1], 'billed') or '0')
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
local amount = tonumber(ARGV[1])
if billed + reserved + amount > tonumber(ARGV[2]) then
  redis.call('HINCRBY', KEYS[1], 'refused', 1)
  return -(billed + reserved) - 1
end
redis.call('HINCRBY', KEYS[1], 'reserved', amount)
redis.call('HSET', KEYS[1], 'budget', ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return billed + reserved + amount
"""
# KEYS[1] ledger hash; ARGV: bytes reserved, bytes billed. Returns the run's billed total.
_SETTLE = """
redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(ARGV[1]))
redis.call('HINCRBY', KEYS[1], 'queries', 1)
return redis.call('HINCRBY', KEYS[1], 'billed', tonumber(ARGV[2]))
"""


@dataclass(frozen=True)
class LedgerState:
    billed: int  # bytes BigQuery billed for the run's finished queries
    reserved: int  # caps of queries under way
    queries: int  # queries sent and settled
    refused: int  # queries not sent: their cap did not fit the budget
    budget: int | None


class RunLedger:
    """Billed bytes of one run, kept in a Redis hash bqx:ledger:<run>."""

    def __init__(self, client: redis.Redis, run_id: str, budget_bytes: int, ttl_s: int = 7 * 24 * 3600) -> None:
        self.client = client
        self.run_id = run_id
        self.key = ledger_key(run_id)
        self.budget_bytes = budget_bytes
        self.ttl_s = ttl_s
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)

    @classmethod
    def for_run(cls, settings: Settings, run_id: str) -> RunLedger:
        """Return the ledger of a run on the broker's Redis, with the run's budget."""
        client = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=5, socket_timeout=10)
        budget = billing.usd_to_bytes(settings.budget_usd, settings.price_per_tib_usd)
        return cls(client, run_id, budget, ttl_s=settings.result_expires_s)

    def reserve(self, byte_count: int, what: str) -> int:
        """Reserve bytes against the budget; raise BudgetError if they do not fit."""
        try:
            total = int(self._reserve(keys=[self.key], args=[int(byte_count), self.budget_bytes, self.ttl_s]))
        except redis.RedisError as exc:
            raise BrokerError(f"run {self.run_id}: cannot update the cost ledger in Redis: {exc}") from None
        if total < 0:
            used = -total - 1
            raise BudgetError(
                f"budget exhausted: {what} could be billed up to {byte_count:,} bytes, but run {self.run_id} "
                f"has used or reserved {used:,} of its {self.budget_bytes:,} bytes; the query was not sent"
            )
        return total

    def settle(self, reserved: int, billed: int) -> int:
        """Replace a reservation by the bytes actually billed; return the run's billed total."""
        return int(self._settle(keys=[self.key], args=[int(reserved), int(billed)]))

    @contextmanager
    def reservation(self, byte_count: int, what: str) -> Iterator[dict[str, int]]:
        """Reserve bytes for one query; the block sets result['billed']. If the block fails
        before saying what was billed, the whole reservation counts as spent: the job may have
        run (and been billed) before the failure, and other hosts must not overspend."""
        self.reserve(byte_count, what)
        result = {"billed": byte_count}
        try:
            yield result
        finally:
            total = self.settle(byte_count, result["billed"])
            log.info(
                "ledger",
                extra={
                    "run": self.run_id,
                    "what": what,
                    "billed": result["billed"],
                    "run_billed": total,
                },
            )

    def state(self) -> LedgerState:
        raw = self.client.hgetall(self.key)
        values = {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}
        return LedgerState(
            values.get("billed", 0),
            values.get("reserved", 0),
            values.get("queries", 0),
            values.get("refused", 0),
            values.get("budget"),
        )


def guarded_fetch(
    source: BigQuerySource, plan: QueryPlan, days: list[date], settings: Settings, run_id: str | None
) -> tuple[pa.RecordBatchReader, dict[str, int]]:
    """Return (record batches, bytes) of a plan run on a billable source, never over budget.

    The plan is dry-run first; its cap (estimate + 11 MiB per table) is sent as
    maximum_bytes_billed and, in a run, reserved in the run's Redis ledger before the query is
    sent, then settled with the bytes BigQuery billed; the job carries the run's label. Raises
    BudgetError("budget exhausted") when the cap does not fit what is left of the run's budget.
    """
    estimate = source.dry_run(plan, days)
    cap = estimate.cap
    what = f"pair {plan.pair}"
    budget = billing.usd_to_bytes(settings.budget_usd, settings.price_per_tib_usd)
    if cap > budget:
        raise BudgetError(
            f"budget exhausted: {what} could be billed up to {cap:,} bytes, more than the whole budget "
            f"(${settings.budget_usd:.2f} = {budget:,} bytes); the query was not sent"
        )
    guard = RunLedger.for_run(settings, run_id).reservation(cap, what) if run_id else nullcontext({"billed": cap})
    with guard as spent:
        try:
            fetched = source.fetch(plan, days, maximum_bytes_billed=cap, labels={"run": run_id} if run_id else None)
        except BudgetError:  # refused for bytesBilledLimitExceeded before it ran: nothing billed
            spent["billed"] = 0
            raise
        spent["billed"] = fetched.bytes_billed
    return fetched.reader, {
        "bytes_processed": fetched.bytes_processed,
        "bytes_billed": fetched.bytes_billed,
        "maximum_bytes_billed": cap,
        "estimated_bytes_billed": estimate.bytes_billed,
    }


def billable_rows(
    source: BigQuerySource, plan: QueryPlan, days: list[date], settings: Settings, run_id: str | None
) -> tuple[Iterable[pa.RecordBatch], dict[str, int], list[ExtractUse]]:
    """Return one BigQuery query's rows, its bytes (all 0 when cached: no query, no ledger entry)
    and what the cache did; a miss runs it capped and ledgered (guarded_fetch)."""

    def fetch() -> tuple[Parts, dict[str, int]]:
        reader, job_bytes = guarded_fetch(source, plan, days, settings, run_id)
        return [reader], job_bytes

    if not in_use(settings, run_id):
        parts, job_bytes = fetch()
        return parts[0], job_bytes, []
    streams, job_bytes, use = ExtractCache(settings).rows(source, plan, days, fetch)
    if use.hit:
        job_bytes = dict.fromkeys(UNBILLED_KEYS, 0)
    return streams[0], job_bytes, [use]


def format_estimate(estimate: dict[str, Any]) -> str:
    """Return the dry-run table: one line per pair (queries, tables, columns, bytes, $), then
    the run total against the budget."""
    header = (
        f"{'pair':<10} {'queries':>7} {'tables':>6} {'columns':>8} {'bytes processed':>16} {'bytes billed':>16} "
        f"{'$':>10}"
    )
    rule = "-" * len(header)
    lines = [header, rule]
    for pair, e in estimate["pairs"].items():
        lines.append(
            f"{pair:<10} {e['queries']:>7} {e['tables']:>6} {e['columns']:>8} "
            f"{e['bytes_processed']:>16,} {e['bytes_billed']:>16,} {e['cost_usd']:>10.4f}"
        )
    for e in estimate.get("shared", []):
        lines.append(
            f"{e['pair']:<10} {e['queries']:>7} {e['tables']:>6} {e['columns']:>8} "
            f"{e['bytes_processed']:>16,} {e['bytes_billed']:>16,} {e['cost_usd']:>10.4f}"
            "  (shared tables, once per run)"
        )
    total, budget = estimate["cost_usd"], estimate["budget_usd"]
    lines += [
        rule,
        f"{'total':<10} {estimate['queries']:>7} {'':>6} {'':>8} "
        f"{estimate['bytes_processed']:>16,} {estimate['bytes_billed']:>16,} {total:>10.4f}",
        f"estimate ({estimate['method']}) ${total:.4f} for {len(estimate['pairs'])} pairs; budget ${budget:.4f}: "
        + ("within budget" if total <= budget else "OVER BUDGET"),
    ]
    return "\n".join(lines)
