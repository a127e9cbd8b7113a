"""A local BigQuery-compatible REST endpoint over a DuckDB warehouse, billed by BigQuery's rules.

It serves what google-cloud-bigquery's `Client.query(...).result().to_arrow()` calls:
`POST /projects/{p}/jobs` (jobs.insert, dry runs included), `GET /projects/{p}/jobs/{id}`
(jobs.get) and `GET /projects/{p}/queries/{id}` (getQueryResults pages: cells are strings,
TIMESTAMP as int64 microseconds). Queries are GoogleSQL, transpiled by sqlglot to DuckDB.
As in BigQuery, every finished query job names its result's `destinationTable`, an anonymous
table in a `_...` dataset, which tables.get and tabledata.list also serve. With that table
present, the client reads the rows through the Storage Read API when google-cloud-bigquery-storage
is installed, unless told not to; this endpoint serves REST only.
`dataset.INFORMATION_SCHEMA.COLUMNS` and `.PARTITIONS` answer from the warehouse's metadata.

Unlike the public emulators, it reports what BigQuery would bill: `totalBytesProcessed` is the
logical size of every referenced column in every scanned partition (a constant or parameter
filter `DATE(interval_time) IN UNNEST(@days)` on a table prunes its partitions), and
`totalBytesBilled` adds the 10 MiB minimum per table and MiB rounding. `maximumBytesBilled` is
enforced (reason `bytesBilledLimitExceeded`), and errors come back in BigQuery's JSON shape
(notFound, invalidQuery, accessDenied, duplicate, or any injected error such as
rateLimitExceeded). Every table with an `interval_time` column is partitioned by its day.

Run one by hand:  python -m tests.support.bigquery_server --warehouse data/warehouse.duckdb
then point bqx at it:  BQX_SOURCE=bigquery BQX_BIGQUERY_PROJECT=bqx-local
BQX_BIGQUERY_API_ENDPOINT=http://127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import traverse_scope

from bqx_queue.warehouse import billing
from bqx_queue.warehouse.catalog import KEY_COLUMN, Catalog
from bqx_queue.warehouse.duckdb_source import DuckDBSource

log = logging.getLogger(__name__)

API_PREFIX = "/bigquery/v2"
DEFAULT_PAGE_ROWS = 10_000
MAX_PAGE_BYTES = 10 * billing.MIB  # BigQuery caps a getQueryResults page near 10 MB
INFO_VIEWS = ("COLUMNS", "PARTITIONS")
INFO_DB = "__information_schema"  # where INFORMATION_SCHEMA views sit while a query is analysed
STATUS_NAMES = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 409: "ALREADY_EXISTS",
                429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}  # fmt: skip


class QueryError(Exception):
    """An error BigQuery would report: HTTP status, reason and message."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def error_proto(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "domain": "global"}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "errors": [self.error_proto()],
                "status": STATUS_NAMES.get(self.code, "UNKNOWN"),
            }
        }


@dataclass
class ScannedTable:
    """What a query reads of one table: columns, and the partition days (None: all of them)."""

    dataset: str
    name: str
    columns: set[str] = field(default_factory=set)
    days: set[date] | None = None

    @property
    def qualified(self) -> str:
        return f"{self.dataset}.{self.name}"


@dataclass
class Analysis:
    duckdb_sql: str
    scanned: dict[str, ScannedTable]
    info_views: int  # INFORMATION_SCHEMA views referenced (each billed its 10 MiB minimum)


class WarehouseEngine:
    """Runs GoogleSQL on the DuckDB warehouse and measures it with BigQuery's billing rules."""

    def __init__(
        self,
        warehouse: Path | str,
        project: str,
        location: str = "US",
        denied_tables: Iterable[str] = (),
    ) -> None:
        self.source = DuckDBSource(warehouse)
        self.project = project
        self.location = location
        self.denied_tables = set(denied_tables)  # dataset.table a caller may not read
        self.catalog: Catalog = self.source.catalog()  # read before any view is registered
        self.lock = threading.Lock()  # one DuckDB connection, used by one request at a time
        self._views: dict[str, pa.Table] = {}

    # --- analysis: tables, columns, partitions ------------------------------------------

    def analyze(self, sql: str, params: dict[str, Any]) -> Analysis:
        """Return the DuckDB statement and what the query scans; raise QueryError like BigQuery."""
        try:
            tree = sqlglot.parse_one(sql, read="bigquery")
        except ParseError as exc:
            first = exc.errors[0] if exc.errors else {}
            where = f" at [{first.get('line', 1)}:{first.get('col', 1)}]" if first else ""
            raise QueryError(400, "invalidQuery", f"Syntax error: {first.get('description', exc)}{where}") from None
        if not isinstance(tree, exp.Query):
            raise QueryError(400, "invalidQuery", "only SELECT statements are served by this endpoint")
        ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
        info_views = 0
        for table in list(tree.find_all(exp.Table)):
            if not table.db and table.name in ctes:
                continue
            info_views += self._resolve_table(table)
        schema: dict[str, Any] = {
            ds: {t.name: {c.name: c.type for c in t.columns} for t in tables.values()}
            for ds, tables in self.catalog.tables.items()
        }
        schema[INFO_DB] = {name: dict(zip(view.column_names, map(str, view.schema.types), strict=True))
                           for name, view in self._views.items()}  # fmt: skip
        try:
            qualified = qualify(tree.copy(), schema=schema, dialect="bigquery", validate_qualify_columns=True)
        except OptimizeError as exc:
            name = re.search(r"Column '([^']+)'", str(exc))
            message = f"Unrecognized name: {name.group(1)}" if name else f"Invalid query: {exc}"
            raise QueryError(400, "invalidQuery", message) from None
        scanned = self._scanned(cast(exp.Expression, qualified), params)
        for table in tree.find_all(exp.Table):  # registered views live in DuckDB's default schema
            if table.db == INFO_DB:
                table.set("db", None)
        return Analysis(tree.sql(dialect="duckdb"), scanned, info_views)

    def _resolve_table(self, table: exp.Table) -> int:
        project = table.catalog or self.project
        dataset, name = table.db, table.name
        if not dataset:
            raise QueryError(
                400,
                "invalidQuery",
                f'Table "{name}" must be qualified with a dataset (e.g. dataset.table).',
            )
        if project != self.project:
            raise QueryError(
                403, "accessDenied",
                f"Access Denied: Table {project}:{dataset}.{name}: User does not have permission to query "
                f"table {project}:{dataset}.{name}, or perhaps it does not exist.",
            )  # fmt: skip
        if dataset not in self.catalog.tables:
            raise QueryError(
                404,
                "notFound",
                f"Not found: Dataset {project}:{dataset} was not found in location {self.location}",
            )
        if name.upper().startswith("INFORMATION_SCHEMA."):
            view = name.split(".", 1)[1].upper()
            if view not in INFO_VIEWS:
                raise QueryError(
                    404,
                    "notFound",
                    f"Not found: Table {project}:{dataset}.{name} (views served: {', '.join(INFO_VIEWS)})",
                )
            registered = self._register_info_view(dataset, view)
            table.set("catalog", None)
            table.set("db", exp.to_identifier(INFO_DB))
            table.set("this", exp.to_identifier(registered))
            if not table.alias:
                table.set("alias", exp.TableAlias(this=exp.to_identifier(view)))
            return 1
        if name not in self.catalog.tables[dataset]:
            raise QueryError(
                404,
                "notFound",
                f"Not found: Table {project}:{dataset}.{name} was not found in location {self.location}",
            )
        if f"{dataset}.{name}" in self.denied_tables:
            raise QueryError(
                403, "accessDenied",
                f"Access Denied: Table {project}:{dataset}.{name}: User does not have permission to query "
                f"table {project}:{dataset}.{name}, or perhaps it does not exist.",
            )  # fmt: skip
        table.set("catalog", None)
        return 0

    def _scanned(self, tree: exp.Expression, params: dict[str, Any]) -> dict[str, ScannedTable]:
        scanned: dict[str, ScannedTable] = {}
        days_seen: dict[str, list[set[date] | None]] = {}
        for scope in traverse_scope(tree):
            for column in scope.columns:
                source = scope.sources.get(column.table)
                if isinstance(source, exp.Table) and source.db not in ("", INFO_DB):
                    entry = scanned.setdefault(f"{source.db}.{source.name}", ScannedTable(source.db, source.name))
                    entry.columns.add(column.name)
            for source in scope.sources.values():
                if isinstance(source, exp.Table) and source.db not in ("", INFO_DB):
                    qualified = f"{source.db}.{source.name}"
                    scanned.setdefault(qualified, ScannedTable(source.db, source.name))
                    days_seen.setdefault(qualified, []).append(self._partition_days(source, params))
        for qualified, seen in days_seen.items():
            # a table read twice scans the union of what each reference keeps
            scanned[qualified].days = None if any(d is None for d in seen) else set().union(*seen)  # type: ignore[arg-type]
        return scanned

    def _partition_days(self, table: exp.Table, params: dict[str, Any]) -> set[date] | None:
        """Return the days a constant or parameter filter on DATE(interval_time) keeps, or None."""
        select = table.find_ancestor(exp.Select)
        where = select.args.get("where") if select else None
        if where is None:
            return None
        table_column = {c.name for c in self.catalog.tables[table.db][table.name].columns}
        if KEY_COLUMN not in table_column:
            return None
        names = {table.alias_or_name, table.name}
        days: set[date] | None = None
        condition = cast(exp.Expression, where.this)
        for predicate in condition.flatten() if isinstance(condition, exp.And) else [condition]:
            kept = _day_filter(cast(exp.Expression, predicate), names, params)
            if kept is not None:
                days = kept if days is None else days & kept
        return days

    def _register_info_view(self, dataset: str, view: str) -> str:
        name = f"__info_{dataset}__{view.lower()}"
        with self.lock:
            if name not in self._views:
                self._views[name] = self._info_view(dataset, view)
                self.source.connection.register(name, self._views[name])
        return name

    def _info_view(self, dataset: str, view: str) -> pa.Table:
        tables = self.catalog.dataset_tables(dataset)
        if view == "COLUMNS":
            rows: dict[str, list[Any]] = {k: [] for k in (
                "table_catalog", "table_schema", "table_name", "column_name", "ordinal_position",
                "is_nullable", "data_type", "is_partitioning_column")}  # fmt: skip
            for table in tables:
                for position, column in enumerate(table.columns, start=1):
                    column_values = (self.project, dataset, table.name, column.name, position, "YES", column.type,
                              "YES" if column.name == KEY_COLUMN else "NO")  # fmt: skip
                    for key, value in zip(rows, column_values, strict=True):
                        rows[key].append(value)
            return pa.table(rows)
        rows = {k: [] for k in ("table_catalog", "table_schema", "table_name", "partition_id", "total_rows",
                                "total_logical_bytes", "storage_tier")}  # fmt: skip
        for table in tables:
            if KEY_COLUMN in table.column_names():
                counts = {d.strftime("%Y%m%d"): n for d, n in self.source.day_counts(table).items()}
            else:
                total = self.source.connection.execute(
                    f'SELECT count(*) FROM "{table.dataset}"."{table.name}"'
                ).fetchall()
                counts = {"__UNPARTITIONED__": int(total[0][0])}
            width = sum(billing.type_width(c.type) for c in table.columns)
            for partition, count in counts.items():
                values = (
                    self.project,
                    dataset,
                    table.name,
                    partition,
                    count,
                    count * width,
                    "ACTIVE",
                )
                for key, value in zip(rows, values, strict=True):
                    rows[key].append(value)
        return pa.table(rows)

    # --- measuring and running ----------------------------------------------------------

    def scan_bytes(self, scanned: dict[str, ScannedTable]) -> dict[str, int]:
        """Return bytes processed per table: non-NULL values x width, strings 2 + UTF-8 length."""
        per_table = {}
        for qualified, entry in scanned.items():
            types = {c.name: c.type for c in self.catalog.table(entry.dataset, entry.name).columns}
            columns = sorted(entry.columns)
            if not columns:
                per_table[qualified] = 0
                continue
            measures = []
            for column in columns:
                measures.append(f'count("{column}")')
                if types[column] in ("STRING", "BYTES"):
                    measures.append(f'coalesce(sum(octet_length(CAST("{column}" AS BLOB))), 0)')
            where, args = "", {}
            if entry.days is not None:
                where = f"WHERE CAST({KEY_COLUMN} AS DATE) IN (SELECT unnest($days))"
                args = {"days": sorted(entry.days)}
            with self.lock:
                row = self.source.connection.execute(
                    f'SELECT {", ".join(measures)} FROM "{entry.dataset}"."{entry.name}" {where}',
                    args,
                ).fetchall()[0]
            values = iter(row or ())
            total = 0
            for column in columns:
                count = int(next(values) or 0)
                strings = int(next(values) or 0) if types[column] in ("STRING", "BYTES") else 0
                total += billing.column_bytes(types[column], count, strings)
            per_table[qualified] = total
        return per_table

    def execute(self, duckdb_sql: str, params: dict[str, Any]) -> pa.Table:
        with self.lock:
            try:
                return self.source.connection.sql(duckdb_sql, params=params or None).to_arrow_table()
            except duckdb.Error as exc:
                raise QueryError(400, "invalidQuery", f"Query error: {str(exc).splitlines()[0]}") from None


def _day_filter(predicate: exp.Expression, names: set[str], params: dict[str, Any]) -> set[date] | None:
    """Return the days `DATE(key) IN UNNEST(@p)`, `IN (...)` or `= ...` keeps, or None."""
    if isinstance(predicate, exp.Paren):
        predicate = predicate.this
    if isinstance(predicate, exp.In):
        target, values = predicate.this, None
        if predicate.args.get("unnest") is not None:
            inner = predicate.args["unnest"].expressions
            values = _values(inner[0], params) if len(inner) == 1 else None
        elif predicate.expressions:
            values = [v for e in predicate.expressions for v in (_values(e, params) or [None])]
    elif isinstance(predicate, exp.EQ):
        target, values = predicate.this, _values(predicate.expression, params)
    else:
        return None
    if not (isinstance(target, exp.Date) and isinstance(target.this, exp.Column)):
        return None
    column = target.this
    if column.name != KEY_COLUMN or (column.table and column.table not in names):
        return None
    if values is None or any(not isinstance(v, date) for v in values):
        return None
    return set(values)


def _values(node: exp.Expression, params: dict[str, Any]) -> list[Any] | None:
    if isinstance(node, exp.Parameter | exp.Placeholder):
        name = node.name
        value = params.get(name)
        return list(value) if isinstance(value, list) else [value]
    if isinstance(node, exp.Cast | exp.Date) and isinstance(node.this, exp.Literal):
        try:
            return [date.fromisoformat(node.this.name)]
        except ValueError:
            return None
    if isinstance(node, exp.Literal) and node.is_string:
        try:
            return [date.fromisoformat(node.name)]
        except ValueError:
            return None
    return None


# --- REST protocol --------------------------------------------------------------------------


def parameter_values(parameters: list[dict[str, Any]]) -> dict[str, Any]:
    """Return named query parameters (the REST queryParameters list) as Python values."""
    values = {}
    for parameter in parameters or []:
        name = parameter.get("name")
        if not name:
            raise QueryError(400, "invalidQuery", "positional query parameters are not supported here")
        kind = parameter["parameterType"]
        value = parameter.get("parameterValue", {})
        if kind["type"] == "ARRAY":
            element = kind["arrayType"]["type"]
            values[name] = [_scalar(element, item.get("value")) for item in value.get("arrayValues", [])]
        else:
            values[name] = _scalar(kind["type"], value.get("value"))
    return values


def _scalar(kind: str, text: str | None) -> Any:
    if text is None:
        return None
    if kind == "DATE":
        return date.fromisoformat(text)
    if kind in ("INT64", "INTEGER"):
        return int(text)
    if kind in ("FLOAT64", "FLOAT"):
        return float(text)
    if kind in ("BOOL", "BOOLEAN"):
        return text.lower() == "true"
    if kind == "TIMESTAMP":
        return datetime.fromisoformat(text.replace(" UTC", "+00:00").replace("Z", "+00:00"))
    if kind in ("NUMERIC", "BIGNUMERIC"):
        return Decimal(text)
    return text


def bigquery_field(arrow_field: pa.Field) -> dict[str, str]:
    """Return the REST schema field BigQuery would give an Arrow result column."""
    t = arrow_field.type
    if pa.types.is_floating(t):
        kind = "FLOAT"
    elif pa.types.is_integer(t):
        kind = "INTEGER"
    elif pa.types.is_boolean(t):
        kind = "BOOLEAN"
    elif pa.types.is_timestamp(t):
        kind = "TIMESTAMP"
    elif pa.types.is_date(t):
        kind = "DATE"
    elif pa.types.is_decimal(t):
        kind = "NUMERIC"
    else:
        kind = "STRING"
    return {"name": arrow_field.name, "type": kind, "mode": "NULLABLE"}


def _cells(column: pa.ChunkedArray, kind: str, int64_timestamps: bool) -> list[str | None]:
    """Return one result column as BigQuery's JSON cells (strings, None for NULL)."""
    if kind == "TIMESTAMP":
        micros = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()
        if int64_timestamps:
            return [None if m is None else str(m) for m in micros]
        return [None if m is None else repr(m / 1e6) for m in micros]
    values = column.to_pylist()
    if kind == "FLOAT":
        return [None if v is None else _float_text(v) for v in values]
    if kind == "BOOLEAN":
        return [None if v is None else ("true" if v else "false") for v in values]
    if kind == "DATE":
        return [None if v is None else v.isoformat() for v in values]
    return [None if v is None else str(v) for v in values]


def _float_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(float(value))


@dataclass
class Job:
    resource: dict[str, Any]
    result: pa.Table | None = None


class BigQueryServer:
    """A BigQuery REST endpoint on 127.0.0.1 in a background thread (a context manager).

    `query_jobs()` returns every accepted job resource (configuration as sent: query, parameters,
    labels, maximumBytesBilled) so tests can check what the client asked for. `fail_next(...)` makes the
    next jobs.insert calls answer with an HTTP error, e.g. rateLimitExceeded.
    """

    def __init__(
        self,
        warehouse: Path | str,
        project: str = "bqx-local",
        location: str = "US",
        host: str = "127.0.0.1",
        port: int = 0,
        denied_tables: Iterable[str] = (),
    ) -> None:
        self.engine = WarehouseEngine(warehouse, project, location, denied_tables)
        self.project = project
        self.location = location
        self.jobs: dict[str, Job] = {}  # real jobs by id (jobs.get, getQueryResults)
        self.dry_runs: list[dict[str, Any]] = []
        self.inserts = 0  # jobs.insert calls received, including refused ones
        self.modified: dict[str, float] = {}  # dataset.table -> lastModifiedTime set by touch_table
        self.anonymous_dataset = f"_{uuid.uuid4().hex}"  # where query results live, as in BigQuery
        self.results: dict[str, str] = {}  # anonymous table -> the job whose result it holds
        self._failures: list[QueryError] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), _handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"http://{name}:{port}"

    def start(self) -> BigQueryServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="bigquery-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(10)

    def __enter__(self) -> BigQueryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(self, reason: str, code: int = 403, message: str | None = None, times: int = 1) -> None:
        """Answer the next `times` jobs.insert calls with this error instead of running them."""
        with self._lock:
            self._failures += [QueryError(code, reason, message or f"Injected error: {reason}")] * times

    def query_jobs(self, dry_run: bool | None = None) -> list[dict[str, Any]]:
        """Return accepted job resources, in order (dry runs only, real only, or all)."""
        if dry_run is None:
            return list(self.dry_runs) + [j.resource for j in self.jobs.values()]
        return list(self.dry_runs) if dry_run else [j.resource for j in self.jobs.values()]

    # --- API methods ---------------------------------------------------------------------

    def insert_job(self, project: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.inserts += 1
            failure = self._failures.pop(0) if self._failures else None
        if failure:
            raise failure
        if project != self.project:
            raise QueryError(403, "accessDenied", f"Access Denied: Project {project}: User does not have "
                             f"bigquery.jobs.create permission in project {project}.")  # fmt: skip
        configuration = body.get("configuration", {})
        query = configuration.get("query")
        if not query:
            raise QueryError(400, "invalid", "Only query jobs are served by this endpoint")
        if query.get("useLegacySql"):
            raise QueryError(
                400,
                "invalidQuery",
                "Legacy SQL is not served by this endpoint; set useLegacySql=false",
            )
        reference = dict(body.get("jobReference") or {})
        job_id = reference.get("jobId") or f"job_{uuid.uuid4().hex}"
        dry_run = bool(configuration.get("dryRun"))
        if not dry_run and job_id in self.jobs:
            raise QueryError(409, "duplicate", f"Already Exists: Job {project}:{self.location}.{job_id}")
        reference.update(projectId=project, jobId=job_id, location=self.location)
        now = str(int(time.time() * 1000))
        resource: dict[str, Any] = {
            "kind": "bigquery#job",
            "id": f"{project}:{self.location}.{job_id}",
            "jobReference": reference,
            "configuration": configuration | {"jobType": "QUERY"},
            "status": {"state": "DONE"},
            "statistics": {"creationTime": now, "startTime": now},
            "user_email": "anonymous@local",
        }
        try:
            params = parameter_values(query.get("queryParameters", []))
            analysis = self.engine.analyze(query["query"], params)
            per_table = self.engine.scan_bytes(analysis.scanned)
            processed = sum(per_table.values())
            billed = billing.bytes_billed(list(per_table.values()) + [0] * analysis.info_views)
            statistics: dict[str, Any] = {
                "totalBytesProcessed": str(processed),
                "statementType": "SELECT",
                "referencedTables": [
                    {"projectId": project, "datasetId": t.dataset, "tableId": t.name} for t in analysis.scanned.values()
                ],
            }
            if dry_run:
                resource["statistics"] |= {
                    "totalBytesProcessed": str(processed),
                    "query": statistics,
                }
                self.dry_runs.append(resource)
                return resource
            limit = query.get("maximumBytesBilled")
            if limit is not None and billed > int(limit):
                message = f"Query exceeded limit for bytes billed: {int(limit)}. {billed} or higher required."
                raise QueryError(400, "bytesBilledLimitExceeded", message)
            table = self.engine.execute(analysis.duckdb_sql, params)
        except QueryError as error:
            if dry_run:
                raise
            resource["status"] = {
                "state": "DONE",
                "errorResult": error.error_proto(),
                "errors": [error.error_proto()],
            }
            resource["statistics"]["endTime"] = str(int(time.time() * 1000))
            self.jobs[job_id] = Job(resource)
            return resource
        destination = {"projectId": project, "datasetId": self.anonymous_dataset, "tableId": f"anon{job_id}"}
        resource["configuration"]["query"] = query | {"destinationTable": destination}
        self.results[destination["tableId"]] = job_id
        statistics |= {
            "totalBytesBilled": str(billed),
            "billingTier": 1,
            "cacheHit": False,
            "schema": {"fields": [bigquery_field(f) for f in table.schema]},
            "totalPartitionsProcessed": str(sum(len(t.days or ()) for t in analysis.scanned.values())),
        }
        resource["statistics"] |= {
            "endTime": str(int(time.time() * 1000)),
            "totalBytesProcessed": str(processed),
            "query": statistics,
        }
        self.jobs[job_id] = Job(resource, table)
        log.info(
            "job %s: %d bytes processed, %d billed, %d rows",
            job_id,
            processed,
            billed,
            table.num_rows,
        )
        return resource

    def get_table(self, project: str, dataset: str, table: str) -> dict[str, Any]:
        """tables.get: the table's reference, type, schema and lastModifiedTime (ms since epoch:
        the warehouse file's mtime, or when touch_table last marked the table written)."""
        if project != self.project:
            raise QueryError(404, "notFound", f"Not found: Project {project}")
        if dataset == self.anonymous_dataset:
            return self._result_table(project, table)
        if dataset not in self.engine.catalog.tables or table not in self.engine.catalog.tables[dataset]:
            raise QueryError(404, "notFound", f"Not found: Table {project}:{dataset}.{table}")
        modified = self.modified.get(f"{dataset}.{table}", Path(self.engine.source.path).stat().st_mtime)
        columns = self.engine.catalog.table(dataset, table).columns
        return {
            "kind": "bigquery#table",
            "id": f"{project}:{dataset}.{table}",
            "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
            "type": "TABLE",
            "schema": {"fields": [{"name": c.name, "type": c.type, "mode": "NULLABLE"} for c in columns]},
            "lastModifiedTime": str(int(modified * 1000)),
            "location": self.location,
        }

    def _result_job(self, project: str, table: str) -> Job:
        job_id = self.results.get(table)
        if job_id is None:
            raise QueryError(404, "notFound", f"Not found: Table {project}:{self.anonymous_dataset}.{table}")
        return self.jobs[job_id]

    def _result_table(self, project: str, table: str) -> dict[str, Any]:
        """tables.get of a query's anonymous destination table."""
        job = self._result_job(project, table)
        assert job.result is not None
        return {
            "kind": "bigquery#table",
            "id": f"{project}:{self.anonymous_dataset}.{table}",
            "tableReference": {"projectId": project, "datasetId": self.anonymous_dataset, "tableId": table},
            "type": "TABLE",
            "schema": {"fields": [bigquery_field(f) for f in job.result.schema]},
            "numRows": str(job.result.num_rows),
            "lastModifiedTime": job.resource["statistics"]["endTime"],
            "location": self.location,
        }

    def table_data(self, project: str, dataset: str, table: str, query: dict[str, list[str]]) -> dict[str, Any]:
        """tabledata.list: pages of a query's destination table (the only tables read this way)."""
        if dataset != self.anonymous_dataset:
            raise QueryError(400, "invalid", "tabledata.list is served for query destination tables only")
        job = self._result_job(project, table)
        assert job.result is not None
        body: dict[str, Any] = {"kind": "bigquery#tableDataList", "totalRows": str(job.result.num_rows)}
        return body | _page(job.result, query)

    def touch_table(self, qualified: str, when: float | None = None) -> None:
        """Mark dataset.table as written now (its lastModifiedTime), as a load or DML job would."""
        self.modified[qualified] = time.time() if when is None else when

    def get_job(self, project: str, job_id: str) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        if job is None or job.resource["jobReference"]["projectId"] != project:
            raise QueryError(404, "notFound", f"Not found: Job {project}:{self.location}.{job_id}")
        return job.resource

    def query_results(self, project: str, job_id: str, query: dict[str, list[str]]) -> dict[str, Any]:
        resource = self.get_job(project, job_id)
        job = self.jobs[job_id]
        if "errorResult" in resource["status"]:
            error = resource["status"]["errorResult"]
            code = {"notFound": 404, "accessDenied": 403}.get(error["reason"], 400)
            raise QueryError(code, error["reason"], error["message"])
        table = job.result
        assert table is not None
        body: dict[str, Any] = {
            "kind": "bigquery#getQueryResultsResponse",
            "jobReference": resource["jobReference"],
            "schema": {"fields": [bigquery_field(f) for f in table.schema]},
            "totalRows": str(table.num_rows),
            "jobComplete": True,
            "totalBytesProcessed": resource["statistics"]["query"]["totalBytesProcessed"],
            "cacheHit": False,
        }
        return body | _page(table, query)


def _page(table: pa.Table, query: dict[str, list[str]]) -> dict[str, Any]:
    """Return one page of rows (`rows`, and `pageToken` when more follow) as the REST API pages
    them: from pageToken or startIndex, at most maxResults rows and about 10 MB."""
    start = int(query.get("pageToken", query.get("startIndex", ["0"]))[0])
    max_results = query.get("maxResults", [None])[0]
    rows_wanted = DEFAULT_PAGE_ROWS if max_results is None else int(max_results)
    int64 = query.get("formatOptions.useInt64Timestamp", ["false"])[0].lower() == "true"
    if table.num_columns:
        rows_wanted = min(rows_wanted, max(1, MAX_PAGE_BYTES // (16 * table.num_columns)))
    page = table.slice(start, rows_wanted)
    if rows_wanted <= 0 or not page.num_rows:
        return {}
    fields = [bigquery_field(f) for f in table.schema]
    columns = [_cells(page.column(i), fields[i]["type"], int64) for i in range(page.num_columns)]
    body: dict[str, Any] = {"rows": [{"f": [{"v": column[r]} for column in columns]} for r in range(page.num_rows)]}
    if start + page.num_rows < table.num_rows:
        body["pageToken"] = str(start + page.num_rows)
    return body


def _handler(server: BigQueryServer) -> type[BaseHTTPRequestHandler]:
    routes = [
        ("POST", re.compile(rf"^{API_PREFIX}/projects/([^/]+)/jobs$"), "insert"),
        ("GET", re.compile(rf"^{API_PREFIX}/projects/([^/]+)/jobs/([^/]+)$"), "get"),
        ("GET", re.compile(rf"^{API_PREFIX}/projects/([^/]+)/queries/([^/]+)$"), "results"),
        ("GET", re.compile(rf"^{API_PREFIX}/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)$"), "table"),
        ("GET", re.compile(rf"^{API_PREFIX}/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)/data$"), "data"),
    ]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("%s " + format, self.address_string(), *args)

        def do_GET(self) -> None:  # noqa: N802
            self._dispatch("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._dispatch("POST")

        def _dispatch(self, method: str) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                for verb, pattern, action in routes:
                    match = pattern.match(url.path)
                    if verb == method and match:
                        if action == "insert":
                            body = server.insert_job(match.group(1), json.loads(raw or b"{}"))
                        elif action == "table":
                            body = server.get_table(match.group(1), match.group(2), match.group(3))
                        elif action == "data":
                            body = server.table_data(match.group(1), match.group(2), match.group(3), query)
                        elif action == "get":
                            body = server.get_job(match.group(1), match.group(2))
                        else:
                            body = server.query_results(match.group(1), match.group(2), query)
                        self._send(200, body)
                        return
                raise QueryError(
                    404,
                    "notFound",
                    f"Not found: {method} {url.path} is not served by this endpoint",
                )
            except QueryError as error:
                self._send(error.code, error.body())
            except Exception as exc:  # a bug here must reach the client as an error, not a hang
                log.exception("bigquery server error")
                self._send(500, QueryError(500, "internalError", f"{type(exc).__name__}: {exc}").body())

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local BigQuery REST endpoint over a DuckDB warehouse.")
    parser.add_argument("--warehouse", default="data/warehouse.duckdb", help="DuckDB file or Parquet folder")
    parser.add_argument("--project", default="bqx-local")
    parser.add_argument("--location", default="US")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9050)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    server = BigQueryServer(args.warehouse, args.project, args.location, args.host, args.port)
    print(f"BigQuery endpoint {server.url} (project {args.project}) over {args.warehouse}", flush=True)
    print(
        f"  BQX_SOURCE=bigquery BQX_BIGQUERY_PROJECT={args.project} BQX_BIGQUERY_API_ENDPOINT={server.url}",
        flush=True,
    )
    try:
        server._httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._httpd.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
