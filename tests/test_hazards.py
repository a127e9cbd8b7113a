"""Real-export hazards, one table each in a small Parquet export (tests/hazard_export.py), run
through `process_pair_all_horizons` as a notebook would. For each, the product uses the table,
converts it, excludes a column with its reason in the ledger, fails one horizon with its reason,
or stops with one clear error; and a run's report shows what happened (json, md and html)."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
from hazard_export import PAIRS, ROWS_PER_DAY, Export, build_export, minutes, weekdays
from support.bigquery_server import BigQueryServer
from test_report_html import _distinct_colours, _visit, browser  # noqa: F401  (the headless Chromium fixture)

from bqx_queue.config import Settings, load_settings
from bqx_queue.domain.errors import DataError, WarehouseError
from bqx_queue.domain.universe import HORIZONS
from bqx_queue.report.build import report_schema, write_report
from bqx_queue.runner.pair import process_pair_all_horizons
from bqx_queue.runner.run import execute_pair, plan_run, write_manifest
from bqx_queue.warehouse import duckdb_source
from bqx_queue.warehouse.bigquery_source import BigQuerySource
from bqx_queue.warehouse.duckdb_source import DuckDBSource
from bqx_queue.warehouse.fetch import fetch_pair, pair_days
from bqx_queue.warehouse.source import open_source, query_pair_all_horizons
from bqx_queue.warehouse.sql import plan_pair

FAST = {"selection_pairs": 4, "lgbm_rounds": 10, "cv_folds": 1, "shap_rows": 200, "selection_blocks": 4}
ROWS = 24 * ROWS_PER_DAY


@pytest.fixture()
def export(tmp_path: Path) -> Export:
    return build_export(tmp_path / "export")


def fast_settings(export: Export, **overrides: object) -> Settings:
    return load_settings(warehouse=export.root, runs_dir=export.root.parent / "runs", **(FAST | overrides))


def run(export: Export, **overrides: object) -> tuple[dict, pd.DataFrame]:
    settings = fast_settings(export, **overrides)
    result = process_pair_all_horizons("eurusd", settings, source=open_source(settings))
    return result.summary.model_dump(mode="json"), result.ledger  # the summary as pairs/PAIR.json holds it


def quality_of(summary: dict, table: str) -> dict:
    return next(t for t in summary["data_quality"]["tables"] if t["table"] == table)


def reasons(ledger: pd.DataFrame) -> dict[str, str | None]:
    first = ledger.drop_duplicates("feature")
    return {f: (None if pd.isna(r) else r) for f, r in zip(first["feature"], first["excluded"], strict=True)}


def repeat_rows(frame: pd.DataFrame, positions: list[int], change: dict[str, object]) -> pd.DataFrame:
    """Return frame with a second row at each position's interval_time, its values changed."""
    extra = frame.iloc[positions].assign(**change)
    return pd.concat([extra, frame], ignore_index=True)  # the copies come first in the file


# Repeated timestamps ---------------------------------------------------------------------------


def repeat_timestamps(export: Export) -> None:
    """reg_ repeats 6 minutes (one of them three times), mom_ repeats 5 of the same minutes
    (joined as they are, those minutes would multiply), the targets repeat 2 minutes."""
    export.change(
        "reg_eurusd",
        lambda f: pd.concat([f.iloc[[10, 20, 30, 40, 50, 60]].assign(ret_1=1.0), f.iloc[[10]].assign(ret_1=None), f]),
    )
    export.change("mom_eurusd", lambda f: repeat_rows(f, [10, 20, 30, 40, 50], {"mom_30": -1.0}))
    export.change("targets_eurusd", lambda f: repeat_rows(f, [500, 900], {"target_bqx45_h15": -5.0}))


@pytest.mark.integration
def test_repeated_timestamps_keep_one_row_per_minute_by_the_stated_rule_and_are_counted(export):
    original = export.read("reg_eurusd")
    repeat_timestamps(export)
    settings = fast_settings(export)
    df = query_pair_all_horizons("eurusd", settings)
    assert len(df) == ROWS and df["interval_time"].is_unique  # no many-to-many growth
    by_time = df.set_index("interval_time")
    repeated = original["interval_time"].iloc[[10, 20, 30, 40, 50, 60]]
    # the rule: the row that sorts first by its columns, descending (largest first, NULL last)
    assert (by_time.loc[repeated, "reg_eurusd__ret_1"] == 1.0).all()
    assert (by_time.loc[original["interval_time"].iloc[[10, 20]], "mom_eurusd__mom_30"] != -1.0).all()
    target_times = export.read("targets_eurusd")["interval_time"].iloc[[0, 1]]  # the two copies, first in the file
    assert (by_time.loc[target_times, "target_bqx45_h15"] != -5.0).all()

    summary, _ = run(export)
    assert summary["status"] == "ok" and summary["rows"] == ROWS
    assert summary["data_quality"]["on_duplicate_timestamps"] == "drop"
    assert quality_of(summary, "bqx_features.reg_eurusd") == {
        "table": "bqx_features.reg_eurusd", "repeated_timestamps": 6, "rows_dropped": 7, "rows_missing": 0,
    }  # fmt: skip
    assert quality_of(summary, "bqx_features.mom_eurusd")["rows_dropped"] == 5
    assert quality_of(summary, "bqx_analytics.targets_eurusd")["repeated_timestamps"] == 2
    assert "bqx_features.vol_eurusd" not in {t["table"] for t in summary["data_quality"]["tables"]}


@pytest.mark.integration
def test_the_rule_does_not_depend_on_the_order_of_rows_in_the_export(export):
    repeat_timestamps(export)
    first = query_pair_all_horizons("eurusd", fast_settings(export))
    for table in ("reg_eurusd", "mom_eurusd", "targets_eurusd"):
        export.change(table, lambda f: f.sample(frac=1.0, random_state=3))
    again = query_pair_all_horizons("eurusd", fast_settings(export))
    pd.testing.assert_frame_equal(first, again)


@pytest.mark.integration
def test_on_duplicate_timestamps_fail_stops_the_pair_naming_the_tables(export):
    repeat_timestamps(export)
    with pytest.raises(DataError) as failure:
        run(export, on_duplicate_timestamps="fail")
    message = str(failure.value)
    assert "bqx_features.reg_eurusd (6 timestamps, 7 extra rows)" in message
    assert "bqx_features.mom_eurusd (5 timestamps, 5 extra rows)" in message
    assert "bqx_analytics.targets_eurusd" in message and "vol_eurusd" not in message
    # in a run: that pair fails with the message in its summary and the report, and the other goes on
    settings = fast_settings(export, on_duplicate_timestamps="fail")
    store = write_manifest(settings, plan_run(settings, list(PAIRS)))
    for pair in PAIRS:
        execute_pair(store, pair)
    report = json.loads(write_report(store).read_text())
    status = {p["pair"]: (p["status"], p["error"]) for p in report["pairs"]}
    assert status["eurusd"][0] == "failed" and "bqx_features.reg_eurusd (6 timestamps" in status["eurusd"][1]
    assert [p for p, (state, _) in status.items() if state == "ok"] == [p for p in PAIRS if p != "eurusd"]
    assert "bqx_features.reg_eurusd (6 timestamps" in (store.root / "report.md").read_text()


@pytest.mark.integration
def test_duckdb_table_groups_and_the_bigquery_split_see_the_same_rows_and_counts(export, monkeypatch):
    repeat_timestamps(export)
    settings = fast_settings(export)
    source = DuckDBSource(export.root)
    days = pair_days(source, "eurusd", settings)
    whole = fetch_pair(DuckDBSource(export.root), "eurusd", settings, days)
    monkeypatch.setattr(duckdb_source, "PART_TABLES", 1)  # one feature table per DuckDB statement
    grouped = fetch_pair(DuckDBSource(export.root), "eurusd", settings, days)
    with BigQueryServer(export.root, project="bqx-test") as server:
        bigquery = load_settings(
            source="bigquery", bigquery_project="bqx-test", bigquery_api_endpoint=server.url,
            bigquery_retry_deadline_s=0, max_query_columns=10,
        )  # fmt: skip
        split = fetch_pair(BigQuerySource(bigquery), "eurusd", bigquery, days)
    assert split.cost["queries"] >= 3  # past the column limit: split, joined back on interval_time
    for fetched in (grouped, split):
        frame = fetched.frame
        np.testing.assert_array_equal(frame.times, whole.frame.times)
        order = [frame.numeric_names.index(n) for n in whole.frame.numeric_names]
        np.testing.assert_array_equal(frame.numeric[:, order], whole.frame.numeric[:, : len(order)])
        assert frame.targets.equals(whole.frame.targets)
        assert fetched.cost["data_quality"] == whole.cost["data_quality"]
    assert quality_of(whole.cost, "bqx_features.reg_eurusd")["rows_dropped"] == 7


# Histories, families and calendars -------------------------------------------------------------


@pytest.mark.integration
def test_a_table_whose_history_starts_later_and_ends_earlier_is_used_and_its_gaps_counted(export):
    days = weekdays(24)
    export.change("vol_eurusd", lambda f: f[f["interval_time"].dt.date.between(days[5], days[17])])
    summary, ledger = run(export)
    assert summary["status"] == "ok" and summary["rows"] == ROWS
    assert quality_of(summary, "bqx_features.vol_eurusd")["rows_missing"] == 11 * ROWS_PER_DAY
    assert reasons(ledger)["vol_eurusd__vol_30"] is None  # used: its missing minutes are NULL (the mean)


@pytest.mark.integration
def test_a_pair_missing_a_whole_family_of_tables_is_analysed_with_what_it_has(export):
    export.remove("mom_eurusd")
    summary, ledger = run(export)
    assert summary["status"] == "ok"
    assert summary["data_quality"]["missing_families"] == ["mom"]
    assert not any(f.startswith("mom_") for f in ledger["feature"])
    settings = fast_settings(export)
    other = process_pair_all_horizons("gbpusd", settings, source=open_source(settings))
    assert other.summary.data_quality is not None and other.summary.data_quality.missing_families == []


@pytest.mark.integration  # it builds an export and analyses a pair
def test_weekend_and_holiday_gaps_are_days_never_sampled(tmp_path):
    holiday = date(2024, 1, 15)
    export = build_export(tmp_path / "export", skip=(holiday,))
    sunday_open = minutes([date(2024, 1, 7)])[:30]  # the market opens on Sunday evening in some feeds
    export.change("reg_eurusd", lambda f: pd.concat([f, f.head(30).assign(interval_time=sunday_open)]))
    settings = fast_settings(export)
    days = pair_days(DuckDBSource(export.root), "eurusd", settings)
    assert holiday not in days and all(d.weekday() < 5 for d in days) and len(days) == 24
    df = query_pair_all_horizons("eurusd", settings)
    assert not df["interval_time"].isin(sunday_open).any() and len(df) == ROWS
    summary, _ = run(export)
    assert summary["status"] == "ok" and summary["data_quality"]["tables"] == []


@pytest.mark.integration
def test_a_targets_table_shorter_than_the_feature_tables_reads_only_the_targets_days(export):
    last = weekdays(24)[15]
    export.change("targets_eurusd", lambda f: f[f["interval_time"].dt.date <= last])
    days = pair_days(DuckDBSource(export.root), "eurusd", fast_settings(export))
    assert max(days) == last and len(days) == 16
    summary, _ = run(export)
    assert summary["status"] == "ok" and summary["rows"] == 16 * ROWS_PER_DAY
    assert summary["data_quality"]["tables"] == []  # every feature table has every targets minute


# Values and types ------------------------------------------------------------------------------


@pytest.mark.integration
def test_infinite_values_become_null_and_are_counted_per_column(export):
    def poison(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[frame.index[100:110], "ret_15"] = np.inf
        frame.loc[frame.index[200:205], "ret_15"] = -np.inf
        return frame.assign(overflow=np.where(np.arange(len(frame)) % 2, np.inf, -np.inf))

    export.change("reg_eurusd", poison)
    export.change(
        "targets_eurusd", lambda f: f.assign(target_bqx45_h30=f["target_bqx45_h30"].where(f.index != 7, np.inf))
    )
    summary, ledger = run(export)
    assert summary["status"] == "ok"
    assert summary["data_quality"]["non_finite"] == [
        {"column": "reg_eurusd__overflow", "values": ROWS},
        {"column": "reg_eurusd__ret_15", "values": 15},
        {"column": "target_bqx45_h30", "values": 1},
    ]
    why = reasons(ledger)
    assert why["reg_eurusd__ret_15"] is None and why["reg_eurusd__overflow"] == "all NULL"
    assert np.isfinite(ledger.loc[ledger["feature"] == "reg_eurusd__ret_15", "frequency"]).all()


@pytest.mark.integration
def test_int64_numeric_bignumeric_and_bool_features_are_converted_to_numbers(export):
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = export.read("reg_eurusd")
    values = np.round(frame["ret_15"].to_numpy() * 1e4, 4)
    table = pa.table(
        {
            "interval_time": pa.array(frame["interval_time"]),
            "ticks": pa.array((values * 10).astype(np.int64)),
            "price": pa.array([decimal.Decimal(f"{v:.4f}") for v in values], pa.decimal128(18, 4)),
            "wide": pa.array([decimal.Decimal(f"{v:.4f}") for v in values], pa.decimal128(38, 20)),
            "widest": pa.array([decimal.Decimal(f"{v:.4f}") for v in values], pa.decimal256(76, 38)),
            "up": pa.array(values > 0),
        }
    )
    pq.write_table(table, export.path("agg_eurusd"))
    types = {c.name: c.type for c in DuckDBSource(export.root).catalog().table("bqx_features", "agg_eurusd").columns}
    # widest: DuckDB reads a decimal past 38 digits as DOUBLE, as it would a BigQuery export of one
    assert types == {"interval_time": "TIMESTAMP", "ticks": "INT64", "price": "NUMERIC", "wide": "BIGNUMERIC",
                     "widest": "FLOAT64", "up": "BOOL"}  # fmt: skip
    df = query_pair_all_horizons("eurusd", fast_settings(export)).set_index("interval_time")
    expected = pd.Series(values, index=frame["interval_time"])
    for name in ("price", "wide", "widest"):
        np.testing.assert_allclose(df[f"agg_eurusd__{name}"], expected.loc[df.index], rtol=1e-6, atol=1e-6)
    assert (df["agg_eurusd__up"] == (expected.loc[df.index] > 0).astype(float).to_numpy()).all()
    summary, ledger = run(export)
    why = reasons(ledger)
    assert summary["status"] == "ok"
    assert all(why[f"agg_eurusd__{name}"] is None or why[f"agg_eurusd__{name}"].startswith("duplicate of")
               for name in ("ticks", "price", "wide", "widest", "up"))  # fmt: skip
    assert why["agg_eurusd__ticks"] is None and why["agg_eurusd__up"] is None


@pytest.mark.integration
def test_datetime_and_timezone_aware_keys_join_on_the_same_instant(export):
    export.change("reg_eurusd", lambda f: f.assign(interval_time=f["interval_time"].dt.tz_localize(None)))
    export.change("mom_eurusd", lambda f: f.assign(interval_time=f["interval_time"].dt.tz_convert("America/New_York")))
    catalog = DuckDBSource(export.root).catalog()
    assert catalog.table("bqx_features", "reg_eurusd").key_type() == "DATETIME"
    assert catalog.table("bqx_features", "mom_eurusd").key_type() == "TIMESTAMP"
    assert "TIMESTAMP(interval_time) AS interval_time" in plan_pair("eurusd", catalog, fast_settings(export)).sql
    df = query_pair_all_horizons("eurusd", fast_settings(export))
    original = export.read("reg_eurusd")
    np.testing.assert_allclose(df["reg_eurusd__ret_1"], original["ret_1"], rtol=1e-6)  # every minute matched
    assert df["mom_eurusd__mom_30"].notna().all()
    summary, _ = run(export)
    assert summary["status"] == "ok" and summary["data_quality"]["tables"] == []


@pytest.mark.integration
def test_a_key_that_is_not_a_timestamp_stops_with_one_clear_error(export):
    export.change("vol_eurusd", lambda f: f.assign(interval_time=f["interval_time"].dt.date))
    with pytest.raises(WarehouseError, match="bqx_features.vol_eurusd: interval_time is DATE, but must be TIMESTAMP"):
        run(export)


@pytest.mark.integration
def test_date_and_timestamp_columns_that_are_not_the_key_are_excluded_with_their_reason(export):
    export.change(
        "reg_eurusd",
        lambda f: f.assign(
            as_of=f["interval_time"].dt.date,
            updated_at=f["interval_time"] + pd.Timedelta(seconds=5),
            local_time=f["interval_time"].dt.tz_convert("Europe/London").dt.tz_localize(None),
        ),
    )
    settings = fast_settings(export)
    plan = plan_pair("eurusd", DuckDBSource(export.root).catalog(), settings)
    assert "as_of" not in plan.sql and "updated_at" not in plan.sql  # not queried, so not billed
    summary, ledger = run(export)
    why = reasons(ledger)
    assert summary["status"] == "ok"
    assert why["reg_eurusd__as_of"] == "DATE column that is not the key (a calendar value, not a measurement)"
    assert why["reg_eurusd__updated_at"].startswith("TIMESTAMP column that is not the key")
    assert why["reg_eurusd__local_time"].startswith("DATETIME column that is not the key")


@pytest.mark.integration
def test_reserved_word_and_mixed_case_column_names_are_queried_and_leaks_caught_in_any_case(export):
    export.change(
        "reg_eurusd",
        lambda f: f.rename(columns={"ret_1": "select", "ret_15": "Order", "zscore_60": "MixedCase"}).assign(
            **{"from": f["ret_15"] ** 2, "Target_bqx45_h15": f["ret_1"]}
        ),
    )
    original = export.read("reg_eurusd")
    df = query_pair_all_horizons("eurusd", fast_settings(export))
    for name in ("select", "Order", "MixedCase"):
        np.testing.assert_allclose(df[f"reg_eurusd__{name}"], original[name], rtol=1e-6)
    summary, ledger = run(export)
    why = reasons(ledger)
    assert summary["status"] == "ok"
    assert all(why[f"reg_eurusd__{name}"] is None for name in ("select", "from", "Order", "MixedCase"))
    assert why["reg_eurusd__Target_bqx45_h15"] == "forward-looking column (leaks the target)"


@pytest.mark.integration
def test_very_long_string_values_are_left_out_as_free_text_and_still_billed(export):
    export.change(
        "reg_eurusd",
        lambda f: f.assign(
            note=[f"{i:06d}" + "x" * 5000 for i in range(len(f))],
            session=np.where(f["interval_time"].dt.hour < 9, "asia", "london"),
        ),
    )
    summary, ledger = run(export)
    why = reasons(ledger)
    assert summary["status"] == "ok"
    assert why["reg_eurusd__note"] == "string values up to 5,006 characters (free text, not a category)"
    assert why["reg_eurusd__session=asia"] is None  # short strings: one-hot encoded
    assert summary["bytes_processed"] > ROWS * 5008  # BigQuery bills every character


# One horizon's target ----------------------------------------------------------------------------


@pytest.mark.integration
def test_a_target_null_or_constant_on_every_row_fails_only_its_horizon(export):
    export.change("targets_eurusd", lambda f: f.assign(target_bqx45_h60=np.nan, target_bqx45_h90=0.25))
    summary, ledger = run(export)
    assert summary["status"] == "ok"
    assert summary["horizons"]["60"] == {
        "status": "failed",
        "error": "target target_bqx45_h60 is NULL on every sampled row",
    }
    assert summary["horizons"]["90"] == {
        "status": "failed", "error": "target target_bqx45_h90 is constant (0.25) on every sampled row",
    }  # fmt: skip
    ok = [str(h) for h in HORIZONS if h not in (60, 90)]
    assert all("metrics" in summary["horizons"][h] for h in ok)
    assert set(ledger["horizon"]) == {int(h) for h in ok}
    assert summary["rows_used"] > ROWS - 200  # the NULL target does not take the other horizons' rows


@pytest.mark.integration
def test_every_target_unusable_fails_the_pair_with_each_reason(export):
    export.change("targets_eurusd", lambda f: f.assign(**{c: np.nan for c in f.columns if c.startswith("target_")}))
    with pytest.raises(DataError, match="pair eurusd: every horizon failed: target target_bqx45_h15 is NULL"):
        run(export)


# The report ----------------------------------------------------------------------------------------


@pytest.fixture()
def hazard_run(export: Export) -> Path:
    """A two-pair run over an export with several hazards at once; returns the run folder."""
    export.change("reg_eurusd", lambda f: f.assign(ret_15=f["ret_15"].where(f.index % 100 != 0, np.inf)))
    repeat_timestamps(export)  # copies of rows 10..60: none of them holds an inf
    export.remove("vol_eurusd")
    export.change("targets_eurusd", lambda f: f.assign(target_bqx45_h60=np.nan))
    settings = fast_settings(export)
    store = write_manifest(settings, plan_run(settings, list(PAIRS)))
    for pair in PAIRS:
        execute_pair(store, pair)
    write_report(store)
    return store.root


@pytest.mark.integration
def test_the_report_has_a_data_quality_section_in_json_markdown_and_html(hazard_run):
    data = json.loads((hazard_run / "report.json").read_text())
    jsonschema.validate(data, report_schema())
    quality = data["data_quality"]
    assert "largest value first, NULL last" in quality["duplicate_rule"]
    assert {"pair": "eurusd", "table": "bqx_features.reg_eurusd", "repeated_timestamps": 6, "rows_dropped": 7,
            "rows_missing": 0} in quality["tables"]  # fmt: skip
    assert {"pair": "eurusd", "families": ["vol"]} in quality["missing_families"]
    assert quality["non_finite"] == [{"pair": "eurusd", "column": "reg_eurusd__ret_15", "values": 44}]
    assert quality["failed_horizons"] == [
        {"pair": "eurusd", "horizon": 60, "error": "target target_bqx45_h60 is NULL on every sampled row"}
    ]
    eurusd = next(p for p in data["pairs"] if p["pair"] == "eurusd")
    assert eurusd["status"] == "ok" and "60" not in eurusd["horizons"] and len(eurusd["horizons"]) == 6
    assert data["totals"]["pairs_ok"] == 2

    markdown = (hazard_run / "report.md").read_text()
    assert "## Data quality" in markdown
    assert "| eurusd | bqx_features.reg_eurusd | 6 | 7 | 0 |" in markdown
    assert "- eurusd: vol" in markdown and "- eurusd h60: target target_bqx45_h60 is NULL" in markdown

    page = (hazard_run / "report.html").read_text()
    assert "<h2>Data quality</h2>" in page
    assert "<code>bqx_features.reg_eurusd</code></td><td>6</td><td>7</td><td>0</td>" in page
    assert "eurusd h60: horizon failed: target target_bqx45_h60 is NULL on every sampled row" in page
    assert "eurusd <code>reg_eurusd__ret_15</code>: 44" in page


@pytest.mark.integration
def test_the_data_quality_section_renders_in_headless_chromium(hazard_run, browser):  # noqa: F811
    page = (hazard_run / "report.html").as_uri()
    visit = asyncio.run(_visit(browser.page_websocket(), page, sections=("Data quality",)))
    assert visit["problems"] == []
    [section] = visit["sections"]["Data quality"]  # one section, drawn, with its rows on screen
    assert section["width"] > 500 and section["height"] > 100
    assert "bqx_features.reg_eurusd" in section["text"]
    assert "eurusd h60: target target_bqx45_h60 is NULL on every sampled row" in section["text"]
    assert visit["facts"]["text"] > 1000
    colours, ink, _ = _distinct_colours(visit["png"])
    assert colours >= 50 and 0.03 < ink < 0.6  # drawn, not blank
