"""A run's cost ledger: billed bytes in Redis, shared by every worker on every host.

Before a billable query is sent, its cap (maximum_bytes_billed) is reserved against the run's
budget in one atomic step (a Lua script), so two workers can never both take the last dollar.
After the query, the reservation is replaced by what BigQuery actually billed. A query whose cap
does not fit is never sent: the caller gets BudgetError("budget exhausted ..."). The warehouse
holds `RunLedger.reservation` through its QueryContext, without knowing the run or Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from bqx_queue.config import Settings
from bqx_queue.domain import BrokerError, BudgetError, ledger_key
from bqx_queue.warehouse import billing
from bqx_queue.warehouse.fetch import QueryContext
from bqx_queue.warehouse.interface import WarehouseSource

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


def run_context(source: WarehouseSource, settings: Settings, run_id: str) -> QueryContext:
    """Return the context a run's queries are sent in: labelled with the run and, on a billable
    source, reserved in the run's ledger."""
    reservation = RunLedger.for_run(settings, run_id).reservation if source.billable else None
    return QueryContext(labels={"run": run_id}, reservation=reservation)
