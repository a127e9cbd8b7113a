"""One typed settings object, read from BQX_* environment variables and an optional TOML file.

Precedence: explicit overrides > environment (BQX_MAX_ROWS=...) > TOML file (load_settings'
`config`, which `--config` passes, else the one BQX_CONFIG names) > defaults. A worker host needs
only the broker settings and the artifact store: everything about a run travels in the run
manifest.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from bqx_queue.domain import CURRENCIES, HORIZONS, PAIRS, ConfigError

# Limits the analysis parameters built from these settings share: declared once, used by both
SelectionPairs = Annotated[int, Field(ge=1, le=1000)]  # B complementary pairs: 2B fits per horizon
SelectionBlocks = Annotated[int, Field(ge=4, le=64)]  # contiguous time blocks a half takes half of
EraCount = Annotated[int, Field(ge=2, le=20)]  # contiguous eras when the sample spans fewer than 2 years
EraReferenceFeatures = Annotated[int, Field(ge=10)]  # other features competing with the stable ones
# the pooled test's unit (analysis/pooled.py)
PooledUnit = Literal["auto", "days", "blocks"]

KIB_PER_GIB = 1024 * 1024
# the settings file load_settings was given: the file source reads it while Settings is built
_CONFIG_FILE: ContextVar[str | None] = ContextVar("bqx_config_file", default=None)
REDIS_SCHEMES = ("redis", "rediss", "redis+socket")


class _TomlFileSource(PydanticBaseSettingsSource):
    """Settings from the TOML file load_settings was given, else the one BQX_CONFIG names (flat
    keys, or a [bqx] table)."""

    def __call__(self) -> dict[str, Any]:
        given = _CONFIG_FILE.get()
        path = given or os.environ.get("BQX_CONFIG")
        if not path:
            return {}
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"settings file {path} ({'--config' if given else 'BQX_CONFIG'}) does not exist")
        try:
            data = tomllib.loads(file.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"settings file {path} is not valid TOML: {exc}") from None
        return data.get("bqx", data)

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ supplies every value at once


class HostSettings(BaseModel):
    """Where this host's broker, files and cores are: a worker keeps its own, never a run's (HOST_SETTINGS)."""

    broker_url: str = "redis://127.0.0.1:6379/0"
    result_backend: str | None = None
    concurrency: int = Field(8, ge=1, le=256)
    # threads of each worker child (LightGBM, BLAS, DuckDB); None: the host's cores shared out among the children
    threads_per_child: int | None = Field(None, ge=1, le=1024)
    runs_dir: str = "data/runs"  # a local folder, or a bucket URL (gs://bucket/prefix, s3://...)
    bucket_stall_s: float = Field(60, gt=0)  # a gs:// request silent this long is abandoned and retried
    scratch_dir: Path | None = None  # where a pair's matrix waits during selection (system temp by default)

    @field_validator("runs_dir", mode="before")
    @classmethod
    def _location_text(cls, value: object) -> object:
        # a str, not a Path: Path("gs://bucket/runs") would collapse the URL's "//"
        return str(value) if isinstance(value, Path) else value

    @field_validator("broker_url", "result_backend")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        # the message never repeats the URL: it may carry a password
        if value is not None and urlsplit(value).scheme not in REDIS_SCHEMES:
            raise ValueError(f"must be a Redis URL ({', '.join(s + '://' for s in REDIS_SCHEMES)})")
        return value


class WorkerLimits(BaseModel):
    """How a worker child is bounded and a lost task delivered again: they travel with the run."""

    worker_max_memory_per_child_kib: int = Field(8 * KIB_PER_GIB, ge=64 * 1024)
    memory_budget_fraction: float = Field(0.9, gt=0, le=1)
    task_time_limit_s: int = Field(3 * 3600, ge=10)
    visibility_timeout_s: int = Field(4 * 3600, ge=10)
    max_deliveries: int = Field(3, ge=1, le=20)
    result_expires_s: int = Field(7 * 24 * 3600, ge=3600)


class WarehouseSettings(BaseModel):
    """Where a run's tables are and how many rows it samples from them."""

    source: Literal["auto", "duckdb", "parquet", "bigquery"] = "auto"  # auto, or a SourceKind
    warehouse: Path = Path("data/warehouse.duckdb")
    features_dataset: str = "bqx_features"
    analytics_dataset: str = "bqx_analytics"
    targets_table: str = "targets_{pair}"
    pair_table_pattern: str = "{pair}"
    shared_table_prefixes: tuple[str, ...] = ("tri_", "mkt_", "var_", "csi_")
    max_rows: int = Field(80_000, ge=100)
    # a table repeating an interval_time: keep one row by the rule in warehouse/sql.py, or fail the pair
    on_duplicate_timestamps: Literal["drop", "fail"] = "drop"

    @field_validator("pair_table_pattern", "targets_table")
    @classmethod
    def _has_pair_placeholder(cls, value: str) -> str:
        if "{pair}" not in value:
            raise ValueError("must contain the {pair} placeholder")
        return value


class BigQuerySettings(BaseModel):
    """The BigQuery client (source = "bigquery") and how it estimates and splits a pair's query."""

    bigquery_project: str | None = None
    bigquery_location: str = "US"
    bigquery_api_endpoint: str | None = None  # e.g. a local test server; anonymous credentials
    # host:port of a Storage Read API (gRPC) to read results from; with bigquery_api_endpoint set
    # and this unset, results come through REST (an emulator's jobs name no readable table there)
    bigquery_storage_api_endpoint: str | None = None
    bigquery_retry_deadline_s: float = Field(60.0, ge=0)  # bounded backoff on rate limits
    string_length_estimate: int = Field(16, ge=0)  # UTF-8 bytes per STRING value, metadata estimates
    shared_tables_once: bool = True  # BigQuery: fetch tri_/mkt_/var_/csi_ once per run, not per pair
    max_query_columns: int = Field(10_000, ge=2, le=10_000)  # BigQuery: result columns per query

    @field_validator("bigquery_project")
    @classmethod
    def _project_id(cls, value: str | None) -> str | None:
        # it is written into SQL (`project.dataset.table`): only the project-id alphabet
        # (lower-case letters, digits, hyphens; dots and a colon in domain-scoped ids)
        if value is not None and not re.fullmatch(r"[a-z0-9][a-z0-9.:-]*", value):
            raise ValueError("must be a Google Cloud project id (letters, digits, hyphens)")
        return value


class CostSettings(BaseModel):
    """What a run may spend: the price of a TiB billed and the budget its estimate must stay under."""

    price_per_tib_usd: float = Field(6.25, gt=0)
    budget_usd: float = Field(50.0, gt=0)  # a run whose estimate is above this is refused


class RunSettings(BaseModel):
    """What a run covers and reuses: its horizons, its random root, the extract cache."""

    extract_cache: bool = True  # keep each query's rows under runs_dir/cache; a rerun reads them, unbilled
    refresh_extracts: bool = False  # query again even when the cache holds the rows (bqx-enqueue --refresh)
    horizons: tuple[int, ...] = HORIZONS
    seed: int = Field(42, ge=0)  # the root of every random stream (numpy SeedSequence entropy)

    @field_validator("horizons")
    @classmethod
    def _known_horizons(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        unknown = [h for h in value if h not in HORIZONS]
        if unknown or not value or len(set(value)) != len(value):
            raise ValueError(f"horizons must be distinct values from {HORIZONS}, got {value}")
        return tuple(sorted(value))


class SelectionSettings(BaseModel):
    """Complementary-pairs stability selection with its Meinshausen-Buehlmann error bound
    (analysis/stability.py)."""

    selection_pairs: SelectionPairs = 50
    selection_threshold: float = Field(0.8, gt=0.5, le=1)
    selection_q: int | None = Field(None, ge=1)
    expected_false_max: float = Field(2.0, gt=0)
    selection_blocks: SelectionBlocks = 12
    selection_weakness: float = Field(0.5, gt=0, le=1)
    selection_method: Literal["lar", "lightgbm"] = "lar"  # base selector: Gram LAR or LightGBM gain
    # LAR's columns: every feature's linear column, plus nonlinear ones (|x|, products, gates) chosen
    # per pair by binned statistics (analysis/basis.py); "linear" gives the linear columns alone
    selection_basis: Literal["nonlinear", "linear"] = "nonlinear"
    nonlinear_bins: int = Field(8, ge=3, le=64)  # quantile bins per feature of the binned statistics
    nonlinear_shapes: int = Field(16, ge=0)  # |x| columns a half may choose: a line explains least of their binned fit
    nonlinear_members: int = Field(24, ge=0)  # members from the all-pairs scan, and as many most heteroscedastic
    nonlinear_pairs: int = Field(16, ge=0)  # product and gate columns a half may choose: its best member x partner
    # a half's nonlinear column must stand out of the bulk of its statistic by this robust z (MAD units)
    nonlinear_min_z: float = Field(5.0, ge=0)
    # features entering selection; None: as many as the memory budget holds beside the matrix
    selection_max_features: int | None = Field(None, ge=2)


class ModelSettings(BaseModel):
    """Each horizon's walk-forward LightGBM models, their SHAP values and the held-out verdicts
    (analysis/training.py, analysis/confirmation.py)."""

    holdout_fraction: float = Field(0.25, gt=0.05, lt=0.8)
    cv_folds: int = Field(3, ge=1, le=20)
    embargo_fraction: float = Field(0.01, ge=0, lt=0.2)
    lgbm_rounds: int = Field(200, ge=1)
    lgbm_learning_rate: float = Field(0.05, gt=0, le=1)
    lgbm_num_leaves: int = Field(15, ge=2)  # weak signal, overlapping labels: small trees (README, "Models")
    lgbm_min_data_in_leaf: int = Field(100, ge=1)
    lgbm_patience: int = Field(20, ge=0)  # early-stopping rounds on each fold's training tail; 0: always lgbm_rounds
    lgbm_validation_fraction: float = Field(0.2, gt=0, lt=1)  # the training tail early stopping scores on
    shap_rows: int = Field(10_000, ge=10)
    # rows of the interaction pass (each confirmed feature's model partner): TreeSHAP interaction values
    # cost ~8 ms a row at 10 stable features and 45-60 ms at 150 (200 trees of 31 leaves, one core);
    # at 200 rows a planted pair's partner matched 3,000 rows' and the shares were within 0.02
    shap_interaction_rows: int = Field(200, ge=10)
    # held-out verdicts (analysis/confirmation.py)
    confirmation_alpha: float = Field(0.05, gt=0, lt=1)  # family-wise error rate over a horizon's stable features
    confirmation_repeats: int = Field(3, ge=1)  # permutations of each column per fold
    confirmation_draws: int = Field(1000, ge=2)  # block-bootstrap resamples behind each standard error


class AcrossPairsSettings(BaseModel):
    """The report's view across pairs: families, substitutes and eras."""

    # a feature's family is its name without these tokens (analysis/families.py)
    family_strip_tokens: tuple[str, ...] = PAIRS + CURRENCIES
    family_fdr: float = Field(0.05, gt=0, lt=1)  # Benjamini-Yekutieli level over families x horizons
    # the pooled test's unit (analysis/pooled.py): whole held-out days, 3-hour clock blocks (more
    # degrees of freedom), or auto: blocks where the held-out days are spread, days where they are
    # back to back (bench/calibration.py says why)
    pooled_unit: PooledUnit = "auto"
    substitute_correlation: float = Field(0.7, gt=0, lt=1)  # |corr| joining two stable features
    era_count: EraCount = 4
    era_reference_features: EraReferenceFeatures = 100
    era_collapse_frequency: float = Field(0.3, ge=0, lt=1)  # below this in an era: era-dependent


class Settings(
    HostSettings,
    WorkerLimits,
    WarehouseSettings,
    BigQuerySettings,
    CostSettings,
    RunSettings,
    SelectionSettings,
    ModelSettings,
    AcrossPairsSettings,
    BaseSettings,
):
    """Everything that can be configured, with defaults that match the production layout: one flat
    object (BQX_<NAME> for every field), its fields declared by concern in the classes above."""

    model_config = SettingsConfigDict(env_prefix="BQX_", extra="forbid", frozen=True)

    @property
    def backend_url(self) -> str:
        return self.result_backend or self.broker_url

    def child_threads(self, children: int) -> int:
        """Return the threads each of `children` processes on this host uses."""
        return self.threads_per_child or max(1, (os.cpu_count() or 1) // children)

    @property
    def memory_budget_bytes(self) -> int:
        """Resident memory a task may reach before it stops itself (below the child's cap)."""
        return int(self.worker_max_memory_per_child_kib * 1024 * self.memory_budget_fraction)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlFileSource(settings_cls))


# Settings that belong to a host (where its broker, files and cores are), not to a run.
HOST_SETTINGS = set(HostSettings.model_fields)


def load_settings(config: str | Path | None = None, **overrides: Any) -> Settings:
    """Return validated settings, each override taken as given (None included), over the TOML
    file `config` (else BQX_CONFIG's); raises ConfigError with one line naming the bad setting."""
    token = _CONFIG_FILE.set(str(config) if config else None)
    try:
        return Settings(**overrides)
    except SettingsError as exc:  # a BQX_* value that is not valid JSON for a list setting
        hint = "list settings take JSON, e.g. BQX_HORIZONS='[15, 60]'"
        raise ConfigError(f"{exc} ({hint})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first["loc"]) or "settings"
        extra = f" ({len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ConfigError(f"setting {name!r}: {first['msg']}{extra}") from None
    finally:
        _CONFIG_FILE.reset(token)


def run_settings(run_values: Mapping[str, Any], host: Settings) -> Settings:
    """Return the settings a worker uses for a run: the run's values exactly as its manifest holds
    them (a None stays None, never refilled from this host's environment), on this host's broker,
    files and threads."""
    return load_settings(**{**run_values, **{name: getattr(host, name) for name in HOST_SETTINGS}})


def redact_url(url: str) -> str:
    """Return a URL with any password replaced by '***', safe to print or store."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def redact_text(text: str, *urls: str) -> str:
    """Return text with the password of each URL replaced by '***' (for messages quoting one)."""
    for url in urls:
        password = urlsplit(url).password
        if password:
            text = text.replace(password, "***")
    return text
