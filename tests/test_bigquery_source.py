"""BigQuerySource through the real google-cloud-bigquery client against the local endpoint:
the same catalog, calendar and pair frame as the embedded DuckDB source, with parameters,
labels and a cap on every query, and one clear error line for every failure."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from support.bigquery_server import BigQueryServer

from bqx_queue.artifacts.run_folder import RunStore
from bqx_queue.config import Settings, load_settings
from bqx_queue.domain.errors import BudgetError, ConfigError, WarehouseError
from bqx_queue.warehouse import billing
from bqx_queue.warehouse.bigquery_source import BigQuerySource
from bqx_queue.warehouse.duckdb_source import DuckDBSource
from bqx_queue.warehouse.fetch import QueryContext, fetch_pair
from bqx_queue.warehouse.source import open_source
from bqx_queue.warehouse.sql import plan_pair
from bqx_queue.warehouse.synthetic import WarehouseSpec, build_warehouse

pytestmark = pytest.mark.integration

PROJECT = "bqx-test"


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bqsource") / "tiny.duckdb"
    build_warehouse(path, WarehouseSpec(pairs=("eurusd", "gbpusd"), days=3, features_per_pair=20, seed=9))
    return path


@pytest.fixture(scope="module")
def server(warehouse: Path) -> Iterator[BigQueryServer]:
    with BigQueryServer(warehouse, project=PROJECT) as running:
        yield running


def bq_settings(server: BigQueryServer, **overrides: object) -> Settings:
    values = {
        "source": "bigquery",
        "bigquery_project": PROJECT,
        "bigquery_api_endpoint": server.url,
        "bigquery_retry_deadline_s": 0,
        "max_rows": 3000,
    } | overrides
    return load_settings(**values)


@pytest.fixture()
def source(server: BigQueryServer) -> BigQuerySource:
    chosen = open_source(bq_settings(server))
    assert isinstance(chosen, BigQuerySource)
    return chosen


def test_catalog_and_calendar_match_the_warehouse(
    source: BigQuerySource, warehouse: Path, server: BigQueryServer
) -> None:
    local = DuckDBSource(warehouse)
    before = server.inserts
    catalog = source.catalog()
    assert server.inserts - before == 2  # one INFORMATION_SCHEMA query per dataset
    assert catalog.tables == {ds: t for ds, t in local.catalog().tables.items() if ds in catalog.tables}
    assert set(catalog.tables) == {"bqx_features", "bqx_analytics"}
    for name in ("targets_eurusd", "targets_gbpusd"):
        table = catalog.table("bqx_analytics", name)
        assert source.day_counts(table) == local.day_counts(table)
    assert server.inserts - before == 3  # partitions: one query for the dataset, then cached
    source.catalog()
    assert server.inserts - before == 3  # the catalog is cached for the run


def test_fetch_pair_equals_the_embedded_source_and_caps_the_query(
    source: BigQuerySource, warehouse: Path, server: BigQueryServer
) -> None:
    settings = bq_settings(server)
    source = BigQuerySource(settings)
    local = DuckDBSource(warehouse)
    days = sorted(local.day_counts(local.catalog().table("bqx_analytics", "targets_eurusd")))[:2]
    fetched = fetch_pair(source, "eurusd", settings, days, QueryContext(labels={"run": "Run-42"}))
    frame, cost = fetched.frame, fetched.cost
    embedded = fetch_pair(local, "eurusd", load_settings(max_rows=3000), days)
    expected, expected_cost = embedded.frame, embedded.cost

    assert frame.rows == expected.rows == 2 * 1440
    assert frame.numeric_names == expected.numeric_names
    np.testing.assert_array_equal(frame.times, expected.times)
    width = len(expected.numeric_names)  # columns past these are spare room for one-hot strings
    np.testing.assert_allclose(frame.numeric[:, :width], expected.numeric[:, :width], rtol=0, atol=0, equal_nan=True)
    assert frame.targets.equals(expected.targets)
    for name, values in expected.strings.items():
        assert list(frame.strings[name]) == list(values)
    # BigQuery's own bytes (the job's statistics) equal the embedded source's measurement
    assert cost["bytes_processed"] == expected_cost["bytes_processed"]
    assert (
        cost["bytes_billed"]
        == expected_cost["bytes_billed"]
        == len(plan_tables(source, settings)) * 10 * billing.MIB  # each small table billed its 10 MiB minimum
    )

    job = server.query_jobs(dry_run=False)[-1]
    query = job["configuration"]["query"]
    # the cap is the dry-run estimate plus 11 MiB per referenced table
    tables = len(plan_tables(source, settings))
    assert int(query["maximumBytesBilled"]) == cost["bytes_processed"] + tables * 11 * billing.MIB
    assert cost["maximum_bytes_billed"] == int(query["maximumBytesBilled"])
    assert job["configuration"]["labels"] == {"app": "bqx", "pair": "eurusd", "run": "run-42"}
    # the days travel as a DATE array parameter, never as SQL text
    (parameter,) = query["queryParameters"]
    assert parameter["name"] == "days"
    assert parameter["parameterType"] == {"type": "ARRAY", "arrayType": {"type": "DATE"}}
    assert [v["value"] for v in parameter["parameterValue"]["arrayValues"]] == [d.isoformat() for d in days]
    assert days[0].isoformat() not in query["query"]
    assert "IN UNNEST(@days)" in query["query"]


def plan_tables(source: BigQuerySource, settings: Settings) -> tuple[str, ...]:
    return plan_pair("eurusd", source.catalog(), settings).tables


def test_dry_run_matches_the_real_job(source: BigQuerySource, server: BigQueryServer) -> None:
    settings = source.settings
    plan = plan_pair("gbpusd", source.catalog(), settings)
    days = sorted(source.day_counts(source.catalog().table("bqx_analytics", "targets_gbpusd")))
    estimate = source.dry_run(plan, days)
    assert estimate.method == "dry-run"
    fetched = source.fetch(plan, days)
    assert fetched.reader.read_all().num_rows == 3 * 1440
    assert fetched.bytes_processed == estimate.bytes_processed
    assert estimate.bytes_billed >= fetched.bytes_billed  # an upper bound
    assert estimate.cap >= fetched.bytes_billed


def test_a_cap_below_the_bill_is_a_budget_error(source: BigQuerySource) -> None:
    plan = plan_pair("eurusd", source.catalog(), source.settings)
    days = sorted(source.day_counts(source.catalog().table("bqx_analytics", "targets_eurusd")))
    with pytest.raises(BudgetError, match="bytesBilledLimitExceeded") as refused:
        source.fetch(plan, days, maximum_bytes_billed=billing.MIB)
    assert "pair eurusd" in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"features_dataset": "no_such_dataset"}, r"not found: .*Dataset bqx-test:no_such_dataset"),
        ({"bigquery_project": "someone-else"}, r"permission denied: .*someone-else"),
    ],
)
def test_catalog_errors_name_the_object(server: BigQueryServer, overrides: dict[str, str], message: str) -> None:
    source = BigQuerySource(bq_settings(server, **overrides))
    with pytest.raises(WarehouseError, match=message) as failed:
        source.catalog()
    assert "\n" not in str(failed.value)


def test_a_table_without_permission_names_the_table(source: BigQuerySource, server: BigQueryServer) -> None:
    # var_g000 is shared by every pair; the endpoint denies it to this caller for this test
    plan = plan_pair("eurusd", source.catalog(), source.settings)
    assert "bqx_features.var_g000" in plan.tables
    server.engine.denied_tables.add("bqx_features.var_g000")
    try:
        with pytest.raises(
            WarehouseError,
            match=r"pair eurusd: dry run: permission denied: .*bqx_features\.var_g000",
        ):
            source.dry_run(plan, [date(2020, 1, 2)])
    finally:
        server.engine.denied_tables.discard("bqx_features.var_g000")


def test_rate_limits_are_retried_with_bounded_backoff(server: BigQueryServer) -> None:
    source = BigQuerySource(bq_settings(server, bigquery_retry_deadline_s=20))
    server.fail_next("rateLimitExceeded", code=403, times=2)
    before = server.inserts
    assert "bqx_features" in source.catalog().tables
    assert server.inserts - before == 4  # two refusals, then both dataset queries
    # a quota that stays exhausted ends as one line once retries give up (quotaExceeded is not retried)
    server.fail_next(
        "quotaExceeded",
        code=403,
        message="Quota exceeded: Your project exceeded quota for free query bytes scanned",
    )
    with pytest.raises(WarehouseError, match="quotaExceeded") as failed:
        BigQuerySource(bq_settings(server)).catalog()
    assert "\n" not in str(failed.value)


def test_settings_and_credentials_errors_are_clear(server: BigQueryServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="bigquery_project"):
        BigQuerySource(load_settings(source="bigquery"))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")
    source = BigQuerySource(load_settings(source="bigquery", bigquery_project="p"))
    with pytest.raises(WarehouseError, match="no Google credentials for project p"):
        source.catalog()


def test_shared_tables_fetched_once_join_into_the_same_frame(
    server: BigQueryServer, warehouse: Path, tmp_path: Path
) -> None:
    from bqx_queue.runner.pair_fetch import fetch_run_pair
    from bqx_queue.runner.shared_tables import fetch_shared
    from bqx_queue.warehouse.sql import plan_shared_tables

    settings = bq_settings(server, runs_dir=tmp_path)
    source = BigQuerySource(settings)
    local = DuckDBSource(warehouse)
    days = sorted(local.day_counts(local.catalog().table("bqx_analytics", "targets_eurusd")))[1:]
    # split on purpose (5 columns per query) to exercise the join of several parts
    plans = plan_shared_tables(source.catalog(), settings, max_columns=5)
    assert len(plans) == 4 and all(p.columns <= 5 for p in plans)
    sent_before = len(server.query_jobs(dry_run=False))
    index = fetch_shared(source, plans, days, settings, RunStore(tmp_path, "shared-run"))
    assert index.queries == 4 and index.tables == 4
    assert all(part.maximum_bytes_billed and part.estimated_bytes_billed for part in index.parts)  # the caps sent
    assert index.bytes_billed == sum(int(j["statistics"]["query"]["totalBytesBilled"])
                                        for j in server.query_jobs(dry_run=False)[sent_before:])  # fmt: skip

    fetched = fetch_run_pair(source, "eurusd", settings, days, run_id="shared-run")
    frame, cost = fetched.frame, fetched.cost
    pair_sql = server.query_jobs(dry_run=False)[-1]["configuration"]["query"]["query"]
    assert "tri_g000" not in pair_sql and "targets_eurusd" in pair_sql  # the pair read its own tables only
    expected = fetch_pair(local, "eurusd", load_settings(max_rows=3000), days).frame
    assert sorted(frame.numeric_names) == sorted(expected.numeric_names)
    order = [frame.numeric_names.index(n) for n in expected.numeric_names]
    np.testing.assert_array_equal(frame.times, expected.times)
    np.testing.assert_allclose(
        frame.numeric[:, order], expected.numeric[:, : len(order)], rtol=0, atol=0, equal_nan=True
    )
    assert cost["tables"] == len(plan_pair("eurusd", source.catalog(), settings).tables)


def test_a_plan_past_the_column_limit_is_split_and_joined_back(server: BigQueryServer, warehouse: Path) -> None:
    settings = bq_settings(server, max_query_columns=12)
    source = BigQuerySource(settings)
    local = DuckDBSource(warehouse)
    days = sorted(local.day_counts(local.catalog().table("bqx_analytics", "targets_gbpusd")))[:2]
    sent_before = len(server.query_jobs(dry_run=False))
    fetched = fetch_pair(source, "gbpusd", settings, days)
    frame, cost = fetched.frame, fetched.cost
    sent = [  # the pair's queries (the source's catalog queries carry no labels)
        j
        for j in server.query_jobs(dry_run=False)[sent_before:]
        if j["configuration"].get("labels", {}).get("pair", "").startswith("gbpusd")
    ]
    assert cost["queries"] == len(sent) >= 4  # the report shows the split
    for job in sent:
        assert len(job["statistics"]["query"]["schema"]["fields"]) <= 12
    assert cost["bytes_billed"] == sum(int(j["statistics"]["query"]["totalBytesBilled"]) for j in sent)
    expected = fetch_pair(local, "gbpusd", load_settings(max_rows=3000), days).frame
    assert sorted(frame.numeric_names) == sorted(expected.numeric_names)
    order = [frame.numeric_names.index(n) for n in expected.numeric_names]
    np.testing.assert_array_equal(frame.times, expected.times)
    np.testing.assert_allclose(
        frame.numeric[:, order], expected.numeric[:, : len(order)], rtol=0, atol=0, equal_nan=True
    )
    assert frame.targets.equals(expected.targets)
    assert sorted(frame.strings) == sorted(expected.strings)


# --- how results are read: REST beside a local endpoint, the Storage Read API where configured ---


def test_beside_a_local_endpoint_results_come_through_rest_not_googles_storage_host(
    source: BigQuerySource, server: BigQueryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.cloud import bigquery_storage  # the test extra installs it: the path production takes

    built: list[object] = []
    original = bigquery_storage.BigQueryReadClient.__init__

    def spy(self: object, *args: object, **kwargs: object) -> None:
        built.append(kwargs)
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bigquery_storage.BigQueryReadClient, "__init__", spy)
    plan = plan_pair("eurusd", source.catalog(), source.settings)
    days = sorted(source.day_counts(source.catalog().table("bqx_analytics", "targets_eurusd")))
    rows = source.fetch(plan, days).reader.read_all()
    assert rows.num_rows == 3 * 1440
    job = server.query_jobs(dry_run=False)[-1]
    assert job["configuration"]["query"]["destinationTable"]["datasetId"].startswith("_")
    # the client would have read that table through the storage API (at bigquerystorage.googleapis.com)
    result = source.client.get_job(job["jobReference"]["jobId"]).result()
    assert result._should_use_bqstorage(None, create_bqstorage_client=True)
    assert built == []  # no storage client was made, so nothing went to Google's storage host


def test_the_storage_client_goes_to_the_configured_storage_endpoint(server: BigQueryServer) -> None:
    import socket
    import threading

    from google.api_core import exceptions as api_exceptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery, bigquery_storage

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        endpoint = f"127.0.0.1:{listener.getsockname()[1]}"
        received: list[bytes] = []

        def accept() -> None:
            connection, _ = listener.accept()
            with connection:
                received.append(connection.recv(24))  # a gRPC client opens with the HTTP/2 preface

        waiter = threading.Thread(target=accept, daemon=True)
        waiter.start()
        # beside a local endpoint: plain gRPC to the storage endpoint
        source = BigQuerySource(bq_settings(server, bigquery_storage_api_endpoint=endpoint))
        assert "bqstorage_client" in source._result_reader()
        reader = source.storage_client()
        assert reader._transport._host == endpoint
        with pytest.raises(api_exceptions.GoogleAPICallError):
            reader.create_read_session(
                parent=f"projects/{PROJECT}",
                read_session=bigquery_storage.types.ReadSession(table=f"projects/{PROJECT}/datasets/_x/tables/t"),
                retry=None,
                timeout=5,
            )
        waiter.join(5)
    assert received and received[0].startswith(b"PRI * HTTP/2.0")
    # in production a storage endpoint (e.g. a private one) is used with the client's credentials
    settings = load_settings(
        source="bigquery", bigquery_project=PROJECT, bigquery_storage_api_endpoint="read.example:443"
    )
    client = bigquery.Client(project=PROJECT, credentials=AnonymousCredentials())
    production = BigQuerySource(settings, client=client).storage_client()
    assert production._transport._host == "read.example:443"
    # and without one, the Storage Read API at Google's host whenever the library is installed
    assert BigQuerySource(
        load_settings(source="bigquery", bigquery_project=PROJECT), client=client
    )._result_reader() == {"create_bqstorage_client": True}
