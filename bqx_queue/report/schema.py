"""report.schema.json, generated from the report model (bqx_queue.models.Report), never edited by
hand: `python -m bqx_queue.report.schema` writes it, and a test fails when the shipped file is stale."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bqx_queue.models import Report

SCHEMA_PATH = Path(__file__).with_name("report.schema.json")


def generated_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of report.json as the report model defines it."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://bqx-queue/report.schema.json",
        **Report.model_json_schema(mode="validation"),
    }


def schema_text() -> str:
    return json.dumps(generated_schema(), indent=2) + "\n"


def main() -> None:
    SCHEMA_PATH.write_text(schema_text())
    print(SCHEMA_PATH)


if __name__ == "__main__":
    main()
