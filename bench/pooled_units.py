"""The same run's pair results pooled by days and by 3-hour blocks: which families each unit finds.

    python bench/pooled_units.py RUN_FOLDER [RUN_FOLDER ...] [--warehouse W.duckdb ...]

Every pair summary keeps its target-driven part per held-out day and per 3-hour block, so a run's
families can be pooled either way without running it again (report/families.py families_section
with `unit` days or blocks; `auto` picks one per cell). Per run folder it prints, per unit, the
families found, those only that unit finds, and, given the warehouses the run read, those with no
planted feature in any pair (the warehouse manifest's `planted`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bqx_queue.analysis.families import feature_family
from bqx_queue.config import load_settings
from bqx_queue.domain import WarehouseError
from bqx_queue.report.families import families_section
from bqx_queue.warehouse.duckdb_source import DuckDBSource


def planted_families(warehouses: list[Path], strip: tuple[str, ...]) -> set[str] | None:
    """Return the families of every feature planted in some pair of these warehouses, or None."""
    if not warehouses:
        return None
    planted = set()
    for path in warehouses:
        try:
            source = DuckDBSource(path)
        except WarehouseError as exc:
            raise SystemExit(str(exc)) from None
        manifest = source.manifest()
        source.close()
        if manifest is None:
            raise SystemExit(f"{path} has no synthetic warehouse manifest: which features were planted is unknown")
        planted |= {feature_family(f, strip) for pair in manifest["pairs"].values() for f in pair["planted"]}
    return planted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (each with pairs/*.json)")
    parser.add_argument("--warehouse", action="append", type=Path, default=[], help="a DuckDB warehouse the runs read")
    args = parser.parse_args()
    settings = load_settings()
    strip = settings.family_strip_tokens
    planted = planted_families(args.warehouse, strip)
    for run in args.runs:
        pairs = [json.loads(p.read_text()) for p in sorted((run / "pairs").glob("*.json"))]
        horizons = sorted({int(h) for p in pairs for h in p["horizons"]})
        found = {
            unit: [
                f["family"]
                for f in families_section(
                    pairs, horizons, strip, settings.family_fdr, settings.confirmation_draws, settings.seed, unit
                )["findings"]
            ]
            for unit in ("days", "blocks")
        }
        print(f"{run.name}: {len(pairs)} pairs, horizons {','.join(map(str, horizons))}")
        for unit, other in (("days", "blocks"), ("blocks", "days")):
            only = sorted(set(found[unit]) - set(found[other]))
            line = f"  {unit}: {len(found[unit])} families found; only by {unit}: {only or 'none'}"
            if planted is not None:
                line += f"; with no planted feature: {sorted(set(found[unit]) - planted) or 'none'}"
            print(line)


if __name__ == "__main__":
    main()
