"""How big report.html gets and how long Chromium takes to load it, at 28 pairs x 7 horizons.

Builds the page from a real run's report.json, its pair results copied to all 28 pairs and 7
horizons (feature names renamed to each pair), at two widths: the run's own stable counts (the
demo's width), and each pair-horizon holding q stable features, all with held-out verdicts, half
confirmed: the most that stability selection can return at --features per pair (17,000 by
default). Prints bytes, render seconds and Chromium's load seconds (headless, --dump-dom, minus
an empty page's time).

    python bench/report_page.py RUN_FOLDER [--features 17000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bqx_queue.analysis.stability import choose_q
from bqx_queue.config import Settings
from bqx_queue.domain import Report, RunManifest
from bqx_queue.domain.universe import HORIZONS, PAIRS
from bqx_queue.report.build import across_pairs
from bqx_queue.report.confirmation import confirmation_section
from bqx_queue.report.html import render_html

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def widened(report: dict[str, Any], per_horizon: int | None) -> dict[str, Any]:
    """Return the report's pairs copied to all 28 pairs and 7 horizons; with per_horizon, each
    pair-horizon's stable list and verdicts padded to that many features (half confirmed)."""
    results = [(p["pair"], h) for p in report["pairs"] if p["status"] == "ok" for h in p["horizons"].values()]
    pairs = []
    for i, pair in enumerate(PAIRS):
        source_pair, _ = results[i % len(results)]
        template = next(p for p in report["pairs"] if p["pair"] == source_pair)
        horizons = {}
        for j, horizon in enumerate(HORIZONS):
            origin, result = results[(i + j) % len(results)]
            result = json.loads(json.dumps(result).replace(origin, pair))
            if per_horizon is not None and result.get("confirmation"):
                result = padded(result, per_horizon)
            horizons[str(horizon)] = result
        entry = json.loads(json.dumps(template).replace(source_pair, pair))
        pairs.append(entry | {"pair": pair, "horizons": horizons, "failed_horizons": {}})
    return report | {"pairs": pairs, "run": report["run"] | {"pairs": list(PAIRS), "horizons": list(HORIZONS)}}


def padded(result: dict[str, Any], count: int) -> dict[str, Any]:
    stable, verdicts = result["stable"], result["confirmation"]["features"]
    if not stable or not verdicts:
        return result
    extra_stable = [
        stable[k % len(stable)] | {"feature": f"{stable[k % len(stable)]['feature']}_w{k}"} for k in range(count)
    ]
    extra_verdicts = [
        verdicts[k % len(verdicts)] | {"feature": extra_stable[k]["feature"], "confirmed": k % 2 == 0}
        for k in range(count)
    ]
    confirmation = result["confirmation"] | {
        "features": extra_verdicts, "confirmed": [v["feature"] for v in extra_verdicts if v["confirmed"]],
        "k": count, "flagged": False, "flag_reason": None,
    }  # fmt: skip
    return result | {"stable": extra_stable, "n_stable": count, "confirmation": confirmation, "eras": None}


def chromium_load_s(page: Path) -> float:
    """Return seconds headless Chromium takes to load and lay out a page, less an empty page's."""

    def dump(url: str) -> float:
        with tempfile.TemporaryDirectory() as profile:
            started = time.perf_counter()
            subprocess.run(
                [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                 "--dump-dom", url], capture_output=True, check=True, timeout=300,
            )  # fmt: skip
            return time.perf_counter() - started

    return min(dump(page.as_uri()) for _ in range(2)) - min(dump("about:blank") for _ in range(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_folder", type=Path)
    parser.add_argument("--features", type=int, default=17_000)
    args = parser.parse_args()
    report = json.loads((args.run_folder / "report.json").read_text())
    manifest = RunManifest.model_validate(json.loads((args.run_folder / "manifest.json").read_text()))
    manifest = manifest.model_copy(update={"pairs": list(PAIRS), "horizons": list(HORIZONS), "estimate": None})
    settings = Settings.model_fields
    q = choose_q(args.features, settings["selection_threshold"].default, settings["expected_false_max"].default)
    for label, per_horizon in (("the run's stable counts", None), (f"q = {q} stable at {args.features:,} features", q)):
        data = widened(report, per_horizon)
        ok = Report.model_validate(data).ok_pairs
        rebuilt = Report.model_validate(data | {"confirmation": confirmation_section(ok), **across_pairs(ok, manifest)})
        started = time.perf_counter()
        page = render_html(rebuilt, manifest)
        render_s = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "report.html"
            path.write_text(page)
            load_s = chromium_load_s(path)
        rows = page.count("<tr")
        print(f"28 pairs x 7 horizons, {label}: {len(page.encode()):,} bytes, {rows:,} table rows, "
              f"rendered in {render_s:.2f} s, loaded in Chromium in {load_s:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
