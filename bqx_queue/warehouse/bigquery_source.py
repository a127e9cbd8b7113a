"""The production warehouse: BigQuery through google-cloud-bigquery, guarded by its cost rules.

A WarehouseSource like DuckDBSource; underneath, fetch(plan, days) runs one statement and returns
its Arrow record batches with the bytes BigQuery processed and billed for it (BilledRows), and
dry_run(plan, days) is BigQuery's own estimate. Identifiers come from INFORMATION_SCHEMA (one
query per dataset, cached); values (the days) are query parameters. Every real query carries
maximum_bytes_billed and labels (the app, the pair, and the caller's: a run's id). Any client
error becomes one WarehouseError or BudgetError line naming the object.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pyarrow as pa

from bqx_queue.config import Settings
from bqx_queue.domain import BudgetError, ConfigError, CostEstimate, SourceKind, WarehouseError
from bqx_queue.warehouse import billing
from bqx_queue.warehouse.catalog import KEY_COLUMN, Catalog, Column, Table, base_type, check_identifier
from bqx_queue.warehouse.fetch import QueryContext, QueryRows
from bqx_queue.warehouse.frame import BATCH_ROWS
from bqx_queue.warehouse.sql import PairPlan, QueryPlan, TablesPlan, split_pair_plan

log = logging.getLogger(__name__)

LABEL_VALUE = re.compile(r"[^a-z0-9_-]")
TABLES_GET_THREADS = 8  # concurrent tables.get calls when keying the extract cache


def label_value(text: str) -> str:
    """Return text as a BigQuery label value (lowercase letters, digits, _ and -, 63 chars)."""
    return LABEL_VALUE.sub("_", text.lower())[:63]


@dataclass(frozen=True)
class BilledRows:
    """One query job's rows and the bytes BigQuery reported processing and billing for it."""

    reader: pa.RecordBatchReader
    bytes_processed: int
    bytes_billed: int


class BigQuerySource:
    """A warehouse in BigQuery. The client is created lazily per process, so it survives a fork."""

    kind: SourceKind = "bigquery"
    billable = True

    def __init__(self, settings: Settings, client: Any = None) -> None:
        if not settings.bigquery_project:
            raise ConfigError("source=bigquery needs a project: set bigquery_project (BQX_BIGQUERY_PROJECT)")
        self.settings = settings
        self.project = settings.bigquery_project
        self.location = settings.bigquery_location
        self._client = client
        self._pid = os.getpid() if client is not None else None
        self._catalog: Catalog | None = None
        self._partitions: dict[str, dict[str, dict[date, int]]] = {}

    @property
    def path(self) -> str:
        """Return where the data lives, for manifests and messages."""
        return f"bigquery://{self.project}"

    def location_settings(self) -> dict[str, str]:
        """Return nothing: the project and location settings name a BigQuery warehouse."""
        return {}

    def pair_plans(
        self, pair: str, catalog: Catalog, settings: Settings, include_shared: bool = True
    ) -> tuple[PairPlan, list[TablesPlan]]:
        """Return the pair's plan, split where it passes BigQuery's column, table or SQL limits."""
        return split_pair_plan(pair, catalog, settings, include_shared=include_shared)

    def describe(self) -> str:
        endpoint = f" via {self.settings.bigquery_api_endpoint}" if self.settings.bigquery_api_endpoint else ""
        return f"bigquery://{self.project}{endpoint}"

    # --- client -------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None or self._pid != os.getpid():
            self._client = self._make_client()
            self._pid = os.getpid()
        return self._client

    def _make_client(self) -> Any:
        from google.api_core.client_options import ClientOptions
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import bigquery

        options: dict[str, Any] = {"project": self.project, "location": self.location}
        if self.settings.bigquery_api_endpoint:
            from google.auth.credentials import AnonymousCredentials

            # a local endpoint (tests, the bundled server): no Google credentials involved
            options["credentials"] = AnonymousCredentials()
            options["client_options"] = ClientOptions(api_endpoint=self.settings.bigquery_api_endpoint)
        try:
            return bigquery.Client(**options)
        except DefaultCredentialsError:
            raise WarehouseError(
                f"no Google credentials for project {self.project}: run `gcloud auth application-default login` "
                "or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file"
            ) from None

    def _result_reader(self) -> dict[str, Any]:
        """Return how to_arrow reads a result (BigQuery names its destination table for every query).

        In production (no bigquery_api_endpoint), through the Storage Read API whenever
        google-cloud-bigquery-storage is installed. Beside a local endpoint (an emulator), through
        REST: the storage client would otherwise go to Google's default host. A
        bigquery_storage_api_endpoint sends storage reads to that endpoint instead.
        """
        if self.settings.bigquery_storage_api_endpoint:
            return {"bqstorage_client": self.storage_client()}
        if self.settings.bigquery_api_endpoint:
            return {"create_bqstorage_client": False}
        return {"create_bqstorage_client": _has_storage_api()}

    def storage_client(self) -> Any:
        """Return a Storage Read API client for bigquery_storage_api_endpoint (host:port): plain
        gRPC beside a local endpoint (emulators speak no TLS), else TLS with the client's credentials."""
        endpoint = self.settings.bigquery_storage_api_endpoint
        if not endpoint:
            raise ConfigError("no bigquery_storage_api_endpoint set (BQX_BIGQUERY_STORAGE_API_ENDPOINT)")
        if not _has_storage_api():
            raise ConfigError(f"bigquery_storage_api_endpoint={endpoint} needs google-cloud-bigquery-storage installed")
        from google.api_core.client_options import ClientOptions
        from google.cloud import bigquery_storage

        if self.settings.bigquery_api_endpoint:
            import grpc  # type: ignore[import-untyped]
            from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport

            transport = BigQueryReadGrpcTransport(host=endpoint, channel=grpc.insecure_channel(endpoint))
            return bigquery_storage.BigQueryReadClient(transport=transport)
        return bigquery_storage.BigQueryReadClient(
            credentials=self.client._credentials, client_options=ClientOptions(api_endpoint=endpoint)
        )

    def _retries(self) -> dict[str, Any]:
        """Return retry settings: bounded backoff on rate limits and transient errors."""
        from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY, DEFAULT_RETRY

        deadline = self.settings.bigquery_retry_deadline_s
        if deadline <= 0:
            return {"retry": None, "job_retry": None}
        return {
            "retry": DEFAULT_RETRY.with_deadline(deadline).with_timeout(deadline),
            "job_retry": DEFAULT_JOB_RETRY.with_deadline(deadline).with_timeout(deadline),
        }

    def _run(self, sql: str, what: str, **config: Any) -> Any:
        """Run a query and return its finished job; client errors become one BqxError line."""
        from google.api_core import exceptions as api_exceptions
        from google.cloud import bigquery

        retries = self._retries()
        job_config = bigquery.QueryJobConfig(use_query_cache=False, **config)
        try:
            job = self.client.query(sql, job_config=job_config, **retries)
            if not job_config.dry_run:
                job.result(retry=retries["retry"])
            return job
        except api_exceptions.GoogleAPICallError as exc:
            raise query_error(exc, what, config.get("maximum_bytes_billed")) from None
        except (OSError, api_exceptions.RetryError) as exc:
            raise WarehouseError(f"{what}: cannot reach BigQuery ({self.describe()}): {exc}") from None

    # --- the interface ------------------------------------------------------------------

    def catalog(self) -> Catalog:
        """Return tables and columns of the features and analytics datasets (one query each)."""
        if self._catalog is None:
            tables: dict[str, dict[str, Table]] = {}
            for dataset in dict.fromkeys([self.settings.features_dataset, self.settings.analytics_dataset]):
                check_identifier(dataset)
                job = self._run(
                    "SELECT table_name, column_name, data_type "
                    f"FROM `{self.project}.{dataset}.INFORMATION_SCHEMA.COLUMNS` "
                    "ORDER BY table_name, ordinal_position",
                    f"catalog of dataset {self.project}.{dataset}",
                )
                columns: dict[str, list[Column]] = {}
                for row in job.result().to_arrow(create_bqstorage_client=False).to_pylist():
                    columns.setdefault(row["table_name"], []).append(
                        Column(row["column_name"], base_type(row["data_type"]))
                    )
                if not columns:
                    raise WarehouseError(f"dataset {self.project}.{dataset} has no tables")
                tables[dataset] = {name: Table(dataset, name, tuple(cols)) for name, cols in columns.items()}
            self._catalog = Catalog(tables)
        return self._catalog

    def day_counts(self, table: Table) -> dict[date, int]:
        """Return rows per partition day of a table, from INFORMATION_SCHEMA.PARTITIONS (one query
        per dataset, cached for the run)."""
        if table.dataset not in self._partitions:
            check_identifier(table.dataset)
            job = self._run(
                "SELECT table_name, partition_id, total_rows "
                f"FROM `{self.project}.{table.dataset}.INFORMATION_SCHEMA.PARTITIONS` "
                "WHERE partition_id NOT IN ('__NULL__', '__UNPARTITIONED__')",
                f"partitions of dataset {self.project}.{table.dataset}",
            )
            partitions: dict[str, dict[date, int]] = {}
            for row in job.result().to_arrow(create_bqstorage_client=False).to_pylist():
                day = datetime.strptime(row["partition_id"], "%Y%m%d").date()
                partitions.setdefault(row["table_name"], {})[day] = int(row["total_rows"] or 0)
            self._partitions[table.dataset] = partitions
        counts = self._partitions[table.dataset].get(table.name)
        if counts is None:
            raise WarehouseError(
                f"table {self.project}.{table.qualified} is not partitioned by DATE({KEY_COLUMN}): "
                "sampling by day would scan all of it"
            )
        return dict(sorted(counts.items()))

    def _parameters(self, days: list[date]) -> list[Any]:
        from google.cloud import bigquery

        return [bigquery.ArrayQueryParameter("days", "DATE", sorted(days))]

    def dry_run(self, plan: QueryPlan, days: list[date]) -> CostEstimate:
        """Return BigQuery's own estimate for the plan (a dry run: free, nothing is read).

        A dry run gives total bytes only, so bytes billed is the upper bound with every table
        lifted to its 10 MiB minimum.
        """
        job = self._run(
            plan.sql,
            f"pair {plan.pair}: dry run",
            dry_run=True,
            query_parameters=self._parameters(days),
        )
        processed = int(job.total_bytes_processed or 0)
        billed = billing.billed_upper_bound(processed, len(plan.tables))
        return CostEstimate(
            pair=plan.pair,
            queries=plan.queries,
            tables=len(plan.tables),
            columns=len(plan.features) + len(plan.targets) + 1,
            bytes_processed=processed,
            bytes_billed=billed,
            cost_usd=billing.cost_usd(billed, self.settings.price_per_tib_usd),
            method="dry-run",
        )

    def estimate(self, plan: QueryPlan, days: list[date], settings: Settings) -> CostEstimate:
        """Return BigQuery's dry-run estimate for the plan (free: nothing is read)."""
        return self.dry_run(plan, days)

    def query(self, plan: QueryPlan, days: list[date], settings: Settings, context: QueryContext) -> QueryRows:
        """Return the plan's rows and bytes, never over budget: the cost guard.

        The plan is dry-run first; its cap (estimate + 11 MiB per table) is sent as
        maximum_bytes_billed, after the context's reservation of it (a run's shared ledger)
        succeeds, and the reservation is settled with the bytes BigQuery billed; the job carries
        the context's labels. Raises BudgetError("budget exhausted") when the cap is above the
        whole budget, or does not fit what the reservation has left.
        """
        estimate = self.dry_run(plan, days)
        cap = estimate.cap
        what = f"pair {plan.pair}"
        budget = billing.usd_to_bytes(settings.budget_usd, settings.price_per_tib_usd)
        if cap > budget:
            raise BudgetError(
                f"budget exhausted: {what} could be billed up to {cap:,} bytes, more than the whole budget "
                f"(${settings.budget_usd:.2f} = {budget:,} bytes); the query was not sent"
            )
        guard = context.reservation(cap, what) if context.reservation else nullcontext({"billed": cap})
        with guard as spent:
            try:
                fetched = self.fetch(plan, days, maximum_bytes_billed=cap, labels=dict(context.labels))
            except BudgetError:  # refused for bytesBilledLimitExceeded before it ran: nothing billed
                spent["billed"] = 0
                raise
            spent["billed"] = fetched.bytes_billed
        job_bytes = {
            "bytes_processed": fetched.bytes_processed,
            "bytes_billed": fetched.bytes_billed,
            "maximum_bytes_billed": cap,
            "estimated_bytes_billed": estimate.bytes_billed,
        }
        return QueryRows([fetched.reader], job_bytes)

    def frame_rows(self, plan: PairPlan, days: list[date], settings: Settings) -> int:
        """Return max_rows: the sampled days hold no more, and counting them would cost a query."""
        return settings.max_rows

    def close(self) -> None:
        """Keep the client: it holds nothing that grows with a pair."""

    def fetch(
        self,
        plan: QueryPlan,
        days: list[date],
        maximum_bytes_billed: int | None = None,
        labels: dict[str, str] | None = None,
    ) -> BilledRows:
        """Run the plan's one statement (capped, labelled) and return its rows as Arrow batches,
        with the bytes the job processed and billed."""
        job_labels = {"app": "bqx", "pair": label_value(plan.pair)}
        job_labels |= {k: label_value(v) for k, v in (labels or {}).items()}
        if maximum_bytes_billed is None:
            maximum_bytes_billed = self.dry_run(plan, days).cap
        job = self._run(
            plan.sql,
            f"pair {plan.pair}",
            query_parameters=self._parameters(days),
            maximum_bytes_billed=int(maximum_bytes_billed),
            labels=job_labels,
        )
        try:
            table = job.result().to_arrow(**self._result_reader())
        except Exception as exc:  # the rows are paged after the job: the same one-line rule
            from google.api_core import exceptions as api_exceptions

            if isinstance(exc, api_exceptions.GoogleAPICallError):
                raise query_error(exc, f"pair {plan.pair}", maximum_bytes_billed) from None
            raise
        return BilledRows(
            pa.RecordBatchReader.from_batches(table.schema, table.to_batches(BATCH_ROWS)),
            bytes_processed=int(job.total_bytes_processed or 0),
            bytes_billed=int(job.total_bytes_billed or 0),
        )

    def tables_modified(self, tables: Iterable[str]) -> dict[str, str]:
        """Return each dataset.table's lastModifiedTime (tables.get, free: no query, no bytes),
        which the extract cache keys on. A few calls at a time: a pair references hundreds."""
        from google.api_core import exceptions as api_exceptions

        def modified(qualified: str) -> str:
            try:
                table = self.client.get_table(f"{self.project}.{qualified}", retry=self._retries()["retry"])
            except api_exceptions.GoogleAPICallError as exc:
                raise query_error(exc, f"table {qualified}: tables.get") from None
            except (OSError, api_exceptions.RetryError) as exc:
                raise WarehouseError(f"table {qualified}: cannot reach BigQuery ({self.describe()}): {exc}") from None
            if table.modified is None:
                raise WarehouseError(f"table {qualified}: BigQuery returned no lastModifiedTime")
            return table.modified.isoformat()

        names = list(dict.fromkeys(tables))
        with ThreadPoolExecutor(max_workers=TABLES_GET_THREADS) as pool:
            return dict(zip(names, pool.map(modified, names), strict=True))


def _has_storage_api() -> bool:
    """Return whether the BigQuery Storage Read API client is installed (faster downloads)."""
    try:
        import google.cloud.bigquery_storage  # noqa: F401
    except ImportError:
        return False
    return True


def query_error(exc: Any, what: str, cap: int | None = None) -> WarehouseError | BudgetError:
    """Return one clear BqxError for a google-cloud-bigquery error, by its reason."""
    errors = getattr(exc, "errors", None) or [{}]
    first = errors[0] if isinstance(errors[0], dict) else {}
    reason = first.get("reason", "")
    message = (first.get("message") or getattr(exc, "message", "") or str(exc)).split("\n")[0].strip()
    if reason == "bytesBilledLimitExceeded":
        return BudgetError(
            f"{what}: BigQuery refused the query (bytesBilledLimitExceeded): it would bill more than "
            f"maximum_bytes_billed={cap:,} bytes; {message}"
            if cap
            else f"{what}: bytesBilledLimitExceeded: {message}"
        )
    if reason == "notFound":
        return WarehouseError(f"{what}: not found: {message}")
    if reason == "accessDenied":
        return WarehouseError(f"{what}: permission denied: {message}")
    if reason in ("quotaExceeded", "rateLimitExceeded"):
        return WarehouseError(f"{what}: BigQuery {reason} (retries with backoff gave up): {message}")
    if reason == "invalidQuery":
        return WarehouseError(f"{what}: invalid query: {message}")
    return WarehouseError(f"{what}: BigQuery error {reason or getattr(exc, 'code', '')}: {message}")
