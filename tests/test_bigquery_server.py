"""The local BigQuery endpoint, driven over HTTP by the real google-cloud-bigquery client.

What matters for the cost guard is that it bills like BigQuery: partition pruning, column
pruning, NULL and STRING sizes, 10 MiB per table, LIMIT saving nothing, dry runs, and
maximumBytesBilled refusing a job with reason bytesBilledLimitExceeded.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from support.bigquery_server import BigQueryServer

from bqx_queue.warehouse.billing import MIB
from bqx_queue.warehouse.duckdb_source import DuckDBSource
from bqx_queue.warehouse.synthetic import WarehouseSpec, build_warehouse

pytestmark = pytest.mark.integration

PROJECT = "bqx-test"
ROWS_PER_DAY = 1440


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bq") / "tiny.duckdb"
    build_warehouse(path, WarehouseSpec(pairs=("eurusd", "gbpusd"), days=3, features_per_pair=20, seed=5))
    return path


@pytest.fixture(scope="module")
def server(warehouse: Path) -> Iterator[BigQueryServer]:
    with BigQueryServer(warehouse, project=PROJECT, denied_tables={"bqx_features.mkt_g000"}) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: BigQueryServer) -> bigquery.Client:
    return bigquery.Client(
        project=PROJECT,
        location="US",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=server.url),
    )


@pytest.fixture(scope="module")
def days(warehouse: Path) -> list[date]:
    source = DuckDBSource(warehouse)
    return sorted(source.day_counts(source.catalog().table("bqx_analytics", "targets_eurusd")))


def run(client: bigquery.Client, sql: str, **config: object) -> bigquery.QueryJob:
    job = client.query(
        sql,
        job_config=bigquery.QueryJobConfig(use_query_cache=False, **config),
        retry=None,
        job_retry=None,
    )
    if not config.get("dry_run"):
        job.result(retry=None)
    return job


def days_param(days: list[date]) -> list[bigquery.ArrayQueryParameter]:
    return [bigquery.ArrayQueryParameter("days", "DATE", days)]


def test_information_schema_columns_match_the_warehouse(client: bigquery.Client, warehouse: Path) -> None:
    columns = f"`{PROJECT}.bqx_features.INFORMATION_SCHEMA.COLUMNS`"
    job = run(client, f"SELECT table_name, column_name, data_type FROM {columns} ORDER BY table_name, ordinal_position")
    rows = job.result().to_arrow(create_bqstorage_client=False).to_pylist()
    expected = [
        {"table_name": t.name, "column_name": c.name, "data_type": c.type}
        for t in DuckDBSource(warehouse).catalog().dataset_tables("bqx_features")
        for c in t.columns
    ]
    assert rows == expected
    assert {"STRING", "FLOAT64", "TIMESTAMP"} <= {r["data_type"] for r in rows}
    # INFORMATION_SCHEMA queries are billed their 10 MiB minimum, like BigQuery's
    assert job.total_bytes_billed == 10 * MIB


def test_information_schema_partitions_are_days_with_row_counts(client: bigquery.Client, days: list[date]) -> None:
    job = run(client, "SELECT partition_id, total_rows FROM bqx_analytics.INFORMATION_SCHEMA.PARTITIONS "
                      "WHERE table_name = 'targets_gbpusd' ORDER BY partition_id")  # fmt: skip
    rows = job.result().to_arrow(create_bqstorage_client=False).to_pylist()
    assert [r["partition_id"] for r in rows] == [d.strftime("%Y%m%d") for d in days]
    assert {r["total_rows"] for r in rows} == {ROWS_PER_DAY}


def test_a_day_filter_prunes_partitions_and_timestamps_round_trip(client: bigquery.Client, days: list[date]) -> None:
    sql = ("SELECT interval_time, agg_mean_45 FROM bqx_features.agg_eurusd "
           "WHERE DATE(interval_time) IN UNNEST(@days) ORDER BY interval_time")  # fmt: skip
    one_day = run(client, sql, query_parameters=days_param(days[1:2]))
    table = one_day.result().to_arrow(create_bqstorage_client=False)
    assert table.num_rows == ROWS_PER_DAY
    first = table.column("interval_time")[0].as_py()
    assert first == datetime(days[1].year, days[1].month, days[1].day, tzinfo=UTC)
    assert {t.date() for t in table.column("interval_time").to_pylist()} == {days[1]}
    # two FLOAT64/TIMESTAMP columns x 1,440 rows: 8 bytes each; billed the 10 MiB minimum
    assert one_day.total_bytes_processed == ROWS_PER_DAY * 16
    assert one_day.total_bytes_billed == 10 * MIB
    everything = run(client, "SELECT interval_time, agg_mean_45 FROM bqx_features.agg_eurusd")
    assert everything.total_bytes_processed == len(days) * ROWS_PER_DAY * 16


def test_only_referenced_columns_are_billed_and_limit_saves_nothing(
    client: bigquery.Client,
) -> None:
    one_column = run(client, "SELECT agg_mean_45 FROM bqx_features.agg_eurusd")
    two_columns = run(client, "SELECT agg_mean_45, agg_std_45 FROM bqx_features.agg_eurusd")
    limited = run(client, "SELECT agg_mean_45, agg_std_45 FROM bqx_features.agg_eurusd LIMIT 5")
    assert two_columns.total_bytes_processed == 2 * one_column.total_bytes_processed
    assert limited.total_bytes_processed == two_columns.total_bytes_processed
    assert limited.result().total_rows == 5


def test_strings_cost_two_bytes_plus_their_utf8_length(client: bigquery.Client, warehouse: Path) -> None:
    source = DuckDBSource(warehouse)
    text_columns = [c.name for c in source.catalog().table("bqx_features", "base_eurusd").columns if c.type == "STRING"]
    assert text_columns, "the synthetic warehouse plants a STRING column in base_{pair}"
    name = text_columns[0]
    lengths, count = source.connection.execute(
        f'SELECT sum(strlen("{name}")), count("{name}") FROM bqx_features.base_eurusd'
    ).fetchall()[0]
    job = run(client, f"SELECT `{name}` FROM bqx_features.base_eurusd")
    assert job.total_bytes_processed == 2 * count + lengths


def test_dry_run_reports_the_bytes_without_running(
    client: bigquery.Client, server: BigQueryServer, days: list[date]
) -> None:
    sql = (
        "SELECT interval_time, target_bqx45_h15 FROM bqx_analytics.targets_eurusd "
        "WHERE DATE(interval_time) IN UNNEST(@days)"
    )
    before = len(server.query_jobs(dry_run=False))
    dry = run(client, sql, dry_run=True, query_parameters=days_param(days[:2]))
    assert dry.total_bytes_processed == 2 * ROWS_PER_DAY * 16
    assert len(server.query_jobs(dry_run=False)) == before  # nothing was executed
    real = run(client, sql, query_parameters=days_param(days[:2]))
    assert real.total_bytes_processed == dry.total_bytes_processed


def test_maximum_bytes_billed_refuses_a_job_with_its_reason(client: bigquery.Client) -> None:
    sql = "SELECT agg_mean_45 FROM bqx_features.agg_eurusd"
    with pytest.raises(exceptions.GoogleAPICallError) as refused:
        run(client, sql, maximum_bytes_billed=10 * MIB - 1)
    assert refused.value.errors[0]["reason"] == "bytesBilledLimitExceeded"
    assert str(10 * MIB) in refused.value.errors[0]["message"]  # says what would be needed
    assert run(client, sql, maximum_bytes_billed=10 * MIB).total_bytes_billed == 10 * MIB


@pytest.mark.parametrize(
    ("sql", "reason", "names"),
    [
        ("SELECT x FROM bqx_features.no_such_table", "notFound", "bqx_features.no_such_table"),
        ("SELECT x FROM no_such_dataset.agg_eurusd", "notFound", "no_such_dataset"),
        ("SELECT no_such_column FROM bqx_features.agg_eurusd", "invalidQuery", "no_such_column"),
        ("SELEC agg_mean_45 FROM bqx_features.agg_eurusd", "invalidQuery", "Syntax error"),
        ("SELECT * FROM bqx_features.mkt_g000", "accessDenied", "bqx_features.mkt_g000"),
        ("SELECT * FROM `other-project.bqx_features.agg_eurusd`", "accessDenied", "other-project"),
    ],
)
def test_errors_come_back_in_bigquerys_shape(client: bigquery.Client, sql: str, reason: str, names: str) -> None:
    for dry_run in (True, False):
        with pytest.raises(exceptions.GoogleAPICallError) as failed:
            run(client, sql, dry_run=dry_run)
        assert failed.value.errors[0]["reason"] == reason
        assert names in failed.value.errors[0]["message"]


def test_results_come_in_pages(client: bigquery.Client, server: BigQueryServer, days: list[date]) -> None:
    sql = "SELECT interval_time, agg_mean_45 FROM bqx_features.agg_eurusd ORDER BY interval_time"
    job = run(client, sql)
    rows = job.result(page_size=1000, retry=None)
    pages = list(rows.pages)
    assert len(pages) == -(-len(days) * ROWS_PER_DAY // 1000)
    whole = job.result().to_arrow(create_bqstorage_client=False)
    assert sum(p.num_items for p in pages) == whole.num_rows == len(days) * ROWS_PER_DAY


def test_injected_rate_limit_is_retried_by_the_client(client: bigquery.Client, server: BigQueryServer) -> None:
    from google.cloud.bigquery.retry import DEFAULT_RETRY

    server.fail_next("rateLimitExceeded", code=403, times=1)
    before = server.inserts
    job = client.query(
        "SELECT agg_mean_45 FROM bqx_features.agg_eurusd",
        retry=DEFAULT_RETRY.with_deadline(30),
        job_retry=None,
    )
    assert job.result(retry=None).total_rows == 3 * ROWS_PER_DAY
    assert server.inserts == before + 2  # refused once, then accepted


def test_a_query_job_names_its_destination_table_which_rest_reads(client: bigquery.Client, days: list[date]) -> None:
    # BigQuery writes every query's result to an anonymous table in a `_...` dataset; the client
    # reads it from there (and through the Storage Read API when that is installed and allowed)
    sql = "SELECT interval_time, agg_mean_45 FROM bqx_features.agg_eurusd ORDER BY interval_time"
    job = run(client, sql)
    destination = job.destination
    assert destination is not None and destination.dataset_id.startswith("_")
    whole = job.result().to_arrow(create_bqstorage_client=False)
    assert whole.num_rows == len(days) * ROWS_PER_DAY
    assert client.get_table(destination).num_rows == whole.num_rows  # tables.get
    listed = client.list_rows(destination, page_size=1000, retry=None)  # tabledata.list pages
    assert listed.to_arrow(create_bqstorage_client=False).equals(whole)
    # what the real client decides from that table: with the storage library, it reads through it
    assert job.result()._should_use_bqstorage(None, create_bqstorage_client=True)
