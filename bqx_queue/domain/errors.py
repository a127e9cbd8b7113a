"""One exception family: every error a user can act on is a BqxError with a one-line message."""


class BqxError(Exception):
    """Base of every error bqx-queue reports to a user as one clear line."""


class SelectionError(BqxError):
    """Unknown, repeated or empty pairs or horizons."""


class ConfigError(BqxError):
    """Malformed settings, TOML file or environment variable."""


class WarehouseError(BqxError):
    """A warehouse that is missing, is not a warehouse, or lacks a table or column."""


class DataError(BqxError):
    """A pair's data cannot be analysed (all-NULL target, too few rows, duplicate keys...)."""


class BrokerError(BqxError):
    """The broker cannot be reached or no worker answers."""


class BudgetError(BqxError):
    """A run or query would spend more than its budget allows."""


class MemoryPlanError(BqxError):
    """A pair's predicted peak memory is above the per-child cap: refused before enqueueing."""


class MemoryBudgetExceeded(BqxError):
    """A task's resident memory went past its budget; raised inside the task to stop it."""


class PlanError(BqxError):
    """A reviewed plan cannot run: unapproved, edited after approval, or the warehouse catalog,
    the sampled days or the settings changed since it was written."""


class DamagedArtifact(BqxError):
    """A stored file that is missing, truncated, not JSON or Parquet, of the wrong schema, from an
    unknown version, or not the bytes the summary that vouches for it recorded."""


class StoreUnwritable(BqxError):
    """The run folder or bucket refused a write: read-only, full, permission denied, or a bucket
    that kept failing (503, timeouts) through its filesystem's retries."""


class MissingExtra(ConfigError):
    """A setting needs an optional dependency that is not installed (`pip install 'bqx-queue[...]'`)."""
