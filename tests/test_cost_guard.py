"""The cost guard end to end: the dry-run table, the approval gate before anything is enqueued,
the per-query cap, and the run ledger in Redis that no set of workers can overspend, all with
the real google-cloud-bigquery client against the local endpoint and a real Redis."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from support.bigquery_server import BigQueryServer

from bqx_queue.cli import enqueue_main
from bqx_queue.config import load_settings
from bqx_queue.domain import BudgetError, CostEstimate
from bqx_queue.runner.cost_ledger import RunLedger
from bqx_queue.runner.pair_fetch import fetch_run_pair
from bqx_queue.runner.run import plan_run
from bqx_queue.warehouse import billing
from bqx_queue.warehouse.bigquery_source import BigQuerySource
from bqx_queue.warehouse.synthetic import WarehouseSpec, build_warehouse

PROJECT = "bqx-cost"
PAIRS = ("eurusd", "gbpusd")
FAST_ANALYSIS = {
    "BQX_SELECTION_PAIRS": "5",
    "BQX_LGBM_ROUNDS": "10",
    "BQX_CV_FOLDS": "1",
    "BQX_SHAP_ROWS": "200",
}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cost") / "tiny.duckdb"
    build_warehouse(path, WarehouseSpec(pairs=PAIRS, days=3, features_per_pair=20, seed=13))
    return path


@pytest.fixture(scope="module")
def server(warehouse: Path) -> Iterator[BigQueryServer]:
    with BigQueryServer(warehouse, project=PROJECT) as running:
        yield running


@pytest.fixture()
def bq_env(server: BigQueryServer, queue_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = queue_env | {
        "BQX_BIGQUERY_PROJECT": PROJECT,
        "BQX_BIGQUERY_API_ENDPOINT": server.url,
        "BQX_BIGQUERY_RETRY_DEADLINE_S": "0",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def runs_in(env: dict[str, str]) -> list[Path]:
    root = Path(env["BQX_RUNS_DIR"])
    return sorted(root.iterdir()) if root.exists() else []


@pytest.mark.integration
def test_dry_run_prints_each_pair_and_the_total_against_the_budget(
    bq_env: dict[str, str], server: BigQueryServer, capsys: pytest.CaptureFixture[str]
) -> None:
    real_before = len(server.query_jobs(dry_run=False))
    dry_before = len(server.query_jobs(dry_run=True))
    assert enqueue_main(["--pairs", ",".join(PAIRS), "--source", "bigquery", "--dry-run"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    for pair in PAIRS:
        queries, tables, columns, processed, billed, usd = lines[pair][1:]
        assert (queries, int(tables)) == ("1", 9)  # targets + 8 own tables: shared ones come once
        assert int(processed.replace(",", "")) > 0
        assert int(billed.replace(",", "")) >= 9 * 10 * billing.MIB  # at least 10 MiB per table
        assert float(usd) == pytest.approx(billing.cost_usd(int(billed.replace(",", "")), 6.25), abs=1e-4)
    # the four shared tables (tri_, mkt_, var_, csi_) once for the whole run, in one query
    assert lines["shared-000"][1:3] == ["1", "4"] and "once per run" in out
    assert "estimate (dry-run)" in out and "budget $50.0000: within budget" in out
    # BigQuery dry runs only: nothing read, nothing written, nothing enqueued
    assert len(server.query_jobs(dry_run=True)) - dry_before == len(PAIRS) + 1
    assert len(server.query_jobs(dry_run=False)) - real_before == 3  # catalog (2) + partitions (1)
    assert runs_in(bq_env) == []
    assert redis.Redis.from_url(bq_env["BQX_BROKER_URL"]).dbsize() == 0


@pytest.mark.integration
def test_a_run_over_its_max_cost_is_refused_before_anything_is_enqueued(
    bq_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = enqueue_main(
        [
            "--pairs",
            ",".join(PAIRS),
            "--source",
            "bigquery",
            "--max-cost",
            "0.001",
            "--no-wait-for-workers",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "above the budget $0.0010" in err and "nothing was enqueued" in err
    assert len(err.strip().splitlines()) == 1
    assert runs_in(bq_env) == []  # no manifest
    assert redis.Redis.from_url(bq_env["BQX_BROKER_URL"]).dbsize() == 0  # no task, no ledger
    # the dry run says the same, with exit status 2
    assert enqueue_main(["--pairs", ",".join(PAIRS), "--source", "bigquery", "--dry-run", "--max-cost", "0.001"]) == 2
    assert "OVER BUDGET" in capsys.readouterr().out


@pytest.mark.integration
def test_the_manifest_carries_the_estimate_and_the_run_settings(bq_env: dict[str, str]) -> None:
    settings = load_settings(source="bigquery", budget_usd=5)
    manifest = plan_run(settings, list(PAIRS), run_id="cost-manifest").model_dump(mode="json")  # as written
    estimate = manifest["estimate"]
    assert estimate["method"] == "dry-run" and estimate["budget_usd"] == 5
    assert set(estimate["pairs"]) == set(PAIRS)
    parts = [*estimate["pairs"].values(), *estimate["shared"]]
    assert len(estimate["shared"]) == 1 and estimate["shared"][0]["tables"] == 4
    assert estimate["bytes_billed"] == sum(p["bytes_billed"] for p in parts)
    assert estimate["cost_usd"] == pytest.approx(billing.cost_usd(estimate["bytes_billed"], 6.25))
    assert manifest["shared_tables"] == {"queries": 1, "tables": 4}
    assert manifest["source"] == "bigquery"
    # workers label queries and find the ledger by the manifest's run id (settings hold no run)
    assert manifest["run_id"] == "cost-manifest" and "run_id" not in manifest["settings"]
    assert manifest["settings"]["bigquery_api_endpoint"] == bq_env["BQX_BIGQUERY_API_ENDPOINT"]


@pytest.mark.integration
def test_the_ledger_never_lets_concurrent_reservations_pass_the_budget(
    queue_env: dict[str, str],
) -> None:
    client = redis.Redis.from_url(queue_env["BQX_BROKER_URL"])
    ledger = RunLedger(client, "race", budget_bytes=10 * billing.MIB)
    granted, refused = [], []

    def reserve() -> None:
        other = RunLedger(redis.Redis.from_url(queue_env["BQX_BROKER_URL"]), "race", budget_bytes=10 * billing.MIB)
        try:
            other.reserve(billing.MIB, "a query")
            granted.append(1)
        except BudgetError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=reserve) for _ in range(25)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 10 and len(refused) == 15
    assert all(message.startswith("budget exhausted") for message in refused)
    state = ledger.state()
    assert (state.reserved, state.billed, state.refused) == (10 * billing.MIB, 0, 15)
    ledger.settle(billing.MIB, 3 * billing.MIB // 4)  # a query billed less than its cap frees the rest
    assert ledger.state().billed == 3 * billing.MIB // 4
    ledger.reserve(billing.MIB // 4, "a small query")  # which a later query may use


@pytest.mark.integration
def test_a_query_that_would_pass_the_run_budget_is_not_sent(bq_env: dict[str, str], server: BigQueryServer) -> None:
    probe = BigQuerySource(load_settings(source="bigquery"))
    days = sorted(probe.day_counts(probe.catalog().table("bqx_analytics", "targets_eurusd")))
    from bqx_queue.warehouse.sql import plan_pair

    cap = probe.dry_run(plan_pair("eurusd", probe.catalog(), probe.settings), days).cap
    # room for one pair's cap, not two
    budget_usd = billing.cost_usd(int(cap * 1.5), 6.25)
    settings = load_settings(source="bigquery", budget_usd=budget_usd)
    source = BigQuerySource(settings)
    sent_before = len(server.query_jobs(dry_run=False))
    cost = fetch_run_pair(source, "eurusd", settings, days, run_id="one-pair-budget").cost
    sent_after_first = len(server.query_jobs(dry_run=False))
    with pytest.raises(BudgetError, match="budget exhausted: pair gbpusd") as exhausted:
        fetch_run_pair(source, "gbpusd", settings, days, run_id="one-pair-budget")
    assert "the query was not sent" in str(exhausted.value)
    assert len(server.query_jobs(dry_run=False)) == sent_after_first  # gbpusd never reached BigQuery
    assert sent_after_first > sent_before
    ledger = RunLedger.for_run(settings, "one-pair-budget").state()
    assert (ledger.billed, ledger.reserved, ledger.queries, ledger.refused) == (
        cost["bytes_billed"],
        0,
        1,
        1,
    )


@pytest.mark.e2e
def test_a_full_run_on_bigquery_completes_and_a_pair_past_the_budget_ends_budget_exhausted(
    bq_env: dict[str, str],
    server: BigQueryServer,
    start_worker,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in FAST_ANALYSIS.items():
        monkeypatch.setenv(key, value)
    start_worker("bq", concurrency=1, **FAST_ANALYSIS)
    args = [
        "--pairs",
        ",".join(PAIRS),
        "--source",
        "bigquery",
        "--horizons",
        "15,60",
        "--wait",
        "--worker-timeout",
        "5",
    ]
    assert enqueue_main([*args, "--run-id", "bq-full"]) == 0
    report = json.loads((Path(bq_env["BQX_RUNS_DIR"]) / "bq-full" / "report.json").read_text())
    manifest = json.loads((Path(bq_env["BQX_RUNS_DIR"]) / "bq-full" / "manifest.json").read_text())
    assert report["totals"]["pairs_ok"] == 2 and report["run"]["source"] == "bigquery"
    # the actual cost includes the shared tables, queried once for the run
    assert report["shared"]["queries"] == 1 and report["shared"]["bytes_billed"] > 0
    assert (
        report["totals"]["bytes_billed"]
        == sum(p["bytes_billed"] for p in report["pairs"]) + report["shared"]["bytes_billed"]
    )
    jobs = {j["configuration"]["labels"]["pair"]: j for j in server.query_jobs(dry_run=False)
            if j["configuration"].get("labels", {}).get("run") == "bq-full"}  # fmt: skip
    # one labelled query per pair (sent by the worker) and one for the shared tables, once
    assert set(jobs) == {*PAIRS, "shared-000"}
    assert "tri_g000" in jobs["shared-000"]["configuration"]["query"]["query"]
    assert (Path(bq_env["BQX_RUNS_DIR"]) / "bq-full" / "shared" / "part-000.parquet").exists()
    for pair in PAIRS:
        assert "tri_g000" not in jobs[pair]["configuration"]["query"]["query"]
    for pair in report["pairs"]:
        assert pair["tables"] == 13  # targets, its own 8 tables and the 4 shared ones, joined locally
        billed = int(jobs[pair["pair"]]["statistics"]["query"]["totalBytesBilled"])
        assert pair["bytes_billed"] == billed  # the report's actual cost is what BigQuery billed
        assert billed <= manifest["estimate"]["pairs"][pair["pair"]]["bytes_billed"]  # within the estimate
        # the cap sent and the dry run's estimate reach the pair's summary and the report
        cap = int(jobs[pair["pair"]]["configuration"]["query"]["maximumBytesBilled"])
        assert pair["maximum_bytes_billed"] == cap and billed <= cap and pair["estimated_bytes_billed"] > 0
        summary = json.loads((Path(bq_env["BQX_RUNS_DIR"]) / "bq-full" / "pairs" / f"{pair['pair']}.json").read_text())
        assert summary["maximum_bytes_billed"] == cap
    capsys.readouterr()

    # a budget that passes the gate (the estimate) but not one pair's bill plus the other's cap
    estimates = list(manifest["estimate"]["pairs"].values())
    caps = [CostEstimate.model_validate(p).cap for p in estimates]
    least_bill = min(p["tables"] for p in estimates) * billing.MIN_BILLED_PER_TABLE
    least_bill += sum(p["tables"] for p in manifest["estimate"]["shared"]) * billing.MIN_BILLED_PER_TABLE
    between = (manifest["estimate"]["bytes_billed"] + least_bill + min(caps)) // 2
    assert manifest["estimate"]["bytes_billed"] < between < least_bill + min(caps)
    # --refresh: the extract cache holds bq-full's rows, and this run must query to meet its budget
    code = enqueue_main(
        [*args, "--run-id", "bq-tight", "--refresh", "--max-cost", repr(billing.cost_usd(between, 6.25))]
    )
    assert code == 1  # the run finished, with a failed pair
    summaries = {
        p: json.loads((Path(bq_env["BQX_RUNS_DIR"]) / "bq-tight" / "pairs" / f"{p}.json").read_text()) for p in PAIRS
    }
    statuses = sorted(s["status"] for s in summaries.values())
    assert statuses == ["failed", "ok"]
    failed = next(s for s in summaries.values() if s["status"] == "failed")
    assert failed["error"].startswith("budget exhausted")
    sent = [
        j for j in server.query_jobs(dry_run=False) if j["configuration"].get("labels", {}).get("run") == "bq-tight"
    ]
    # the shared tables and one pair; the refused pair's query never reached BigQuery
    assert sorted(j["configuration"]["labels"]["pair"] for j in sent)[-1] == "shared-000" and len(sent) == 2


@pytest.mark.integration
def test_the_embedded_source_is_estimated_from_metadata_and_gated_too(
    small_warehouse: Path, queue_env: dict[str, str]
) -> None:
    settings = load_settings(warehouse=small_warehouse, max_rows=3000)
    manifest = plan_run(settings, ["eurusd", "usdjpy"], run_id="duck-estimate").model_dump(mode="json")
    estimate = manifest["estimate"]
    assert estimate["method"] == "metadata"
    for entry in estimate["pairs"].values():
        assert entry["queries"] == 1
        assert entry["bytes_billed"] >= entry["tables"] * billing.MIN_BILLED_PER_TABLE
    assert estimate["bytes_billed"] == sum(e["bytes_billed"] for e in estimate["pairs"].values())
    with pytest.raises(BudgetError, match=r"above the budget \$0\.0001"):
        plan_run(settings.model_copy(update={"budget_usd": 0.0001}), ["eurusd", "usdjpy"])
    assert plan_run(settings.model_copy(update={"budget_usd": 0.0001}), ["eurusd"], enforce_budget=False).estimate


@pytest.mark.integration
def test_the_local_pool_fetches_the_shared_tables_once_too(
    bq_env: dict[str, str], server: BigQueryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bqx_queue.runner.run import run_parallel_testing

    for key, value in FAST_ANALYSIS.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(source="bigquery", horizons=(15, 60))
    report_path = run_parallel_testing(list(PAIRS), max_workers=2, settings=settings)
    report = json.loads(report_path.read_text())
    run_id = report["run"]["run_id"]
    assert report["totals"]["pairs_ok"] == 2
    labels = [j["configuration"]["labels"]["pair"] for j in server.query_jobs(dry_run=False)
              if j["configuration"].get("labels", {}).get("run") == run_id]  # fmt: skip
    # two pair processes, one shared fetch between them (a file lock), one query per pair
    assert sorted(labels) == sorted([*PAIRS, "shared-000"])


@pytest.mark.integration
def test_a_pair_plan_over_bigquerys_column_limit_is_split_and_estimated_as_such(
    bq_env: dict[str, str],
) -> None:
    # the tiny warehouse's pair queries return ~40 columns; pretend BigQuery allowed 15
    manifest = plan_run(load_settings(source="bigquery", max_query_columns=15), list(PAIRS)).model_dump(mode="json")
    whole = plan_run(load_settings(source="bigquery"), list(PAIRS)).model_dump(mode="json")
    for pair in PAIRS:
        split, single = manifest["estimate"]["pairs"][pair], whole["estimate"]["pairs"][pair]
        assert single["queries"] == 1 and split["queries"] >= 2
        assert manifest["plans"][pair]["queries"] == split["queries"]
        assert split["columns"] == single["columns"] and split["tables"] == single["tables"]
        assert split["bytes_processed"] == single["bytes_processed"]  # the same columns, read once
    assert manifest["estimate"]["queries"] > whole["estimate"]["queries"]
