"""report.schema.json and feature_sets.schema.json, generated from their models
(models.Report and report.feature_sets.FeatureSets), never edited by hand: `python -m bqx_queue.report.schema`
writes both, and a test fails when a shipped file is stale."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bqx_queue.domain import Report
from bqx_queue.report.feature_sets import FeatureSets

SCHEMA_PATH = Path(__file__).with_name("report.schema.json")
FEATURE_SETS_SCHEMA_PATH = Path(__file__).with_name("feature_sets.schema.json")
MODELS: dict[Path, type[BaseModel]] = {SCHEMA_PATH: Report, FEATURE_SETS_SCHEMA_PATH: FeatureSets}


def generated_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of the file a shipped schema describes, as its model
    defines it (report.json by default)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://bqx-queue/{path.name}",
        **MODELS[path].model_json_schema(mode="validation"),
    }


def schema_text(path: Path = SCHEMA_PATH) -> str:
    return json.dumps(generated_schema(path), indent=2) + "\n"


def main() -> None:
    for path in MODELS:
        path.write_text(schema_text(path))
        print(path)


if __name__ == "__main__":
    main()
