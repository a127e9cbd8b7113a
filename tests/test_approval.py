"""The approval step: `bqx plan` writes the reviewed estimate, `bqx plan approve` signs it, and
`bqx-enqueue --plan` runs exactly that plan or refuses with one line (exit 2) when it is not
approved, was edited after approval, or the catalog, the sampled days or the settings changed.
A run of one pair reports what it measured and projects the full run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import jsonschema
import pytest

from bqx_queue.cli import enqueue_main, main
from bqx_queue.report.build import report_schema
from bqx_queue.runner.approval import read_plan

ENQUEUE = str(Path(sys.executable).with_name("bqx-enqueue"))


@pytest.fixture()
def warehouse(small_warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the small warehouse (some tests change it) and a private run folder."""
    monkeypatch.setenv("BQX_RUNS_DIR", str(tmp_path / "runs"))
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(small_warehouse, copy)
    return copy


def _plan(warehouse: Path, path: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["plan", "--pairs", "eurusd", "--horizons", "15", "--warehouse", str(warehouse), "-o", str(path)]) == 0
    out = capsys.readouterr().out
    assert "eurusd" in out and "within budget" in out and f"bqx plan approve {path} --by NAME" in out
    return json.loads(path.read_text())


def _refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert enqueue_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    return err


@pytest.mark.integration
def test_plan_records_the_estimate_and_fingerprints_and_approve_records_who_and_when(warehouse, tmp_path, capsys):
    plan = _plan(warehouse, tmp_path / "plan.json", capsys)
    manifest = plan["manifest"]
    assert manifest["pairs"] == ["eurusd"] and manifest["horizons"] == [15] and len(manifest["days"]) == 10
    assert manifest["estimate"]["pairs"]["eurusd"]["bytes_billed"] > 0
    assert manifest["plans"]["eurusd"]["predicted_peak_bytes"] > 0
    assert set(plan["fingerprints"]) == {"catalog", "days", "settings"} and plan["approval"] is None
    assert "run_id" not in manifest and "broker_url" not in plan["settings"]

    assert main(["plan", "approve", str(tmp_path / "plan.json"), "--by", "Ada Lovelace"]) == 0
    assert "approved by Ada Lovelace" in capsys.readouterr().out
    approval = json.loads((tmp_path / "plan.json").read_text())["approval"]
    assert approval["by"] == "Ada Lovelace" and approval["at"] and len(approval["digest"]) == 64


@pytest.mark.integration
def test_an_unapproved_plan_is_refused(warehouse, tmp_path, capsys):
    _plan(warehouse, tmp_path / "plan.json", capsys)
    err = _refused(["--plan", str(tmp_path / "plan.json")], capsys)
    assert "is not approved" in err and "bqx plan approve" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.integration
def test_a_plan_edited_after_approval_is_refused(warehouse, tmp_path, capsys):
    path = tmp_path / "plan.json"
    _plan(warehouse, path, capsys)
    main(["plan", "approve", str(path), "--by", "ada"])
    plan = json.loads(path.read_text())
    plan["manifest"]["pairs"] = ["eurusd", "gbpusd"]
    path.write_text(json.dumps(plan))
    assert "was changed after ada approved it" in _refused(["--plan", str(path)], capsys)


@pytest.mark.integration
def test_a_plan_with_a_misspelt_field_is_refused_naming_it(warehouse, tmp_path, capsys):
    path = tmp_path / "plan.json"
    plan = _plan(warehouse, path, capsys)
    plan["manifest"]["horizon"] = plan["manifest"].pop("horizons")
    path.write_text(json.dumps(plan))
    err = _refused(["--plan", str(path)], capsys)
    assert f"plan {path} is damaged: horizons: Field required; horizon: Extra inputs are not permitted" in err
    assert "write and approve a new plan" in err


@pytest.mark.integration
def test_changed_settings_are_refused_naming_the_setting(warehouse, tmp_path, capsys, monkeypatch):
    path = tmp_path / "plan.json"
    _plan(warehouse, path, capsys)
    main(["plan", "approve", str(path), "--by", "ada"])
    monkeypatch.setenv("BQX_SELECTION_PAIRS", "20")
    err = _refused(["--plan", str(path)], capsys)
    assert "settings changed since plan" in err and "selection_pairs: 50 -> 20" in err


@pytest.mark.integration
def test_a_changed_catalog_is_refused(warehouse, tmp_path, capsys):
    path = tmp_path / "plan.json"
    _plan(warehouse, path, capsys)
    main(["plan", "approve", str(path), "--by", "ada"])
    with duckdb.connect(str(warehouse)) as con:
        con.execute("ALTER TABLE bqx_features.reg_eurusd ADD COLUMN reg_new_45 DOUBLE")
    assert "the warehouse catalog changed since plan" in _refused(["--plan", str(path)], capsys)


@pytest.mark.integration
def test_changed_sampled_days_are_refused(warehouse, tmp_path, capsys):
    path = tmp_path / "plan.json"
    plan = _plan(warehouse, path, capsys)
    main(["plan", "approve", str(path), "--by", "ada"])
    with duckdb.connect(str(warehouse)) as con:  # the targets lose a day: the calendar moved, the catalog did not
        con.execute(
            "DELETE FROM bqx_analytics.targets_eurusd WHERE CAST(interval_time AS DATE) = ?",
            [plan["manifest"]["days"][0]],
        )
    assert "the sampled days changed since plan" in _refused(["--plan", str(path)], capsys)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pairs", "gbpusd"], "--plan takes pairs and settings from the plan: drop --pairs"),
        (["--max-cost", "5"], "drop --max-cost"),
    ],
)
def test_run_options_beside_a_plan_are_refused(warehouse, tmp_path, capsys, args, message):
    path = tmp_path / "plan.json"
    _plan(warehouse, path, capsys)
    assert message in _refused(["--plan", str(path), *args], capsys)


@pytest.mark.unit
def test_a_missing_or_foreign_plan_file_is_refused(tmp_path, capsys):
    assert "does not exist" in _refused(["--plan", str(tmp_path / "none.json")], capsys)
    (tmp_path / "other.json").write_text('{"run_id": "x"}')
    assert "is not a bqx plan" in _refused(["--plan", str(tmp_path / "other.json")], capsys)
    assert main(["plan", "approve", str(tmp_path / "none.json"), "--by", "ada"]) == 2


@pytest.mark.unit
def test_a_plan_approved_before_times_were_typed_reads_back_as_it_was_approved(tmp_path):
    # the approval is a digest of the plan as read back: its times must dump as the strings they were
    plan = {
        "kind": "bqx-plan", "version": 1, "written_at": "2026-12-05T10:00:00.123456+00:00", "overrides": {},
        "settings": {}, "fingerprints": {},
        "manifest": {"pairs": ["eurusd"], "horizons": [15], "days": ["2026-01-05"], "warehouse": "w.duckdb",
                     "source": "duckdb", "plans": {}, "settings": {}},
        "approval": {"by": "ada", "at": "2026-12-05T10:05:00+00:00", "digest": "0" * 64},
    }  # fmt: skip
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    assert read_plan(path).model_dump(mode="json") == plan


@pytest.mark.e2e
def test_an_approved_one_pair_plan_runs_and_its_report_shows_the_approval_and_the_projection(
    small_warehouse, tmp_path, queue_env, start_worker, capsys
):
    path = tmp_path / "plan.json"
    _plan(small_warehouse, path, capsys)
    main(["plan", "approve", str(path), "--by", "ada"])
    start_worker("w1", concurrency=2)
    done = subprocess.run([ENQUEUE, "--plan", str(path), "--wait"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "approved by ada" in done.stderr
    report_path = Path(done.stdout.strip().splitlines()[-1]).with_name("report.json")  # the last line: report.html
    report = json.loads(report_path.read_text())
    jsonschema.validate(report, report_schema())
    plan = json.loads(path.read_text())
    assert report["run"]["pairs"] == ["eurusd"] and report["run"]["horizons"] == [15]
    assert report["approval"]["approved_by"] == "ada" and report["approval"]["fingerprints"] == plan["fingerprints"]
    assert (report["approval"]["written_at"], report["approval"]["approved_at"]) == (
        plan["written_at"],
        plan["approval"]["at"],
    )
    manifest = json.loads((report_path.parent / "manifest.json").read_text())
    assert manifest["days"] == plan["manifest"]["days"] and manifest["estimate"] == plan["manifest"]["estimate"]
    pilot = report["pilot"]
    pair = report["pairs"][0]
    assert pilot["measured"]["cost_usd"] == pair["cost_usd"] and pilot["measured"]["wall_s"] == pair["wall_s"]
    assert pilot["projected"]["pairs"] == 28 and pilot["projected"]["slots"] == 2 and pilot["projected"]["waves"] == 14
    assert pilot["projected"]["cost_usd"] == pytest.approx(28 * pair["cost_usd"], abs=1e-6)
    assert pilot["projected"]["wall_s"] == pytest.approx(14 * pair["wall_s"], rel=1e-3)
    markdown = (report_path.parent / "report.md").read_text()
    assert "approved by **ada**" in markdown and "projected for 28 pairs" in markdown
    page = (report_path.parent / "report.html").read_text()
    assert "approved by ada" in page and "projected: 28 pairs" in page
    assert f"approved by ada</b> at {plan['approval']['at']}" in page
