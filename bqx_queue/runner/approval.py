"""The approval step: a run is planned, reviewed and approved, then run exactly as planned.

`bqx plan --pairs all -o plan.json` writes the plan: the run manifest plan_run computes (pairs,
sampled days, settings, per-pair cost estimate and predicted peak memory) with fingerprints of
the warehouse catalog, the sampled days and the settings. `bqx plan approve plan.json --by NAME`
records who approved it and when, with a digest of what they approved. `bqx-enqueue --plan
plan.json` plans again from the current warehouse and settings and runs the approved manifest
only if nothing changed, as terraform applies a saved plan: an unapproved plan, a plan edited
after approval, or a changed catalog, calendar sample or setting is refused with one line.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field, ValidationError

from bqx_queue.artifacts import validation_problem
from bqx_queue.config import Settings
from bqx_queue.domain import ApprovedPlan, PlanError, Record, RunManifest, Timestamp
from bqx_queue.runner.run import HOST_SETTINGS, new_run_id, plan_run
from bqx_queue.warehouse.catalog import Catalog
from bqx_queue.warehouse.source import open_source

PLAN_KIND: Final = "bqx-plan"
PLAN_VERSION: Final = 1
# run-time fields of a manifest: they are set when the plan runs, not when it is written
RUN_FIELDS = {"run_id", "created_at"}


class PlanApproval(Record):
    """Who approved a plan and when, with the digest of everything they reviewed."""

    by: str
    at: Timestamp
    digest: str = Field(pattern="^[0-9a-f]{64}$")


class Plan(Record):
    """The plan file (`bqx plan -o plan.json`): a run's manifest without its run fields, the
    settings and fingerprints it was planned on, the plan command's options, and its approval."""

    keep_none = frozenset({"approval"})

    kind: Literal["bqx-plan"] = PLAN_KIND
    version: Literal[1] = PLAN_VERSION
    written_at: Timestamp
    overrides: dict[str, Any]
    settings: dict[str, Any]
    fingerprints: dict[str, str]
    # a RunManifest less RUN_FIELDS, kept as written (the approval digests it); read_plan checks it
    manifest: dict[str, Any]
    approval: PlanApproval | None = None


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def catalog_fingerprint(catalog: Catalog) -> str:
    """Return a digest of every dataset, table, column and type the warehouse catalog lists."""
    return _digest(
        [
            [dataset, table.name, [[c.name, c.type] for c in table.columns]]
            for dataset in sorted(catalog.tables)
            for table in catalog.dataset_tables(dataset)
        ]
    )


def run_settings_of(settings: Settings) -> dict[str, Any]:
    """Return the settings that shape a run (not where this host's broker and files are)."""
    return settings.model_dump(mode="json", exclude=HOST_SETTINGS)


def fingerprints(settings: Settings, days: list[date]) -> dict[str, str]:
    return {
        "catalog": catalog_fingerprint(open_source(settings).catalog()),
        "days": _digest([day.isoformat() for day in days]),
        "settings": _digest(run_settings_of(settings)),
    }


def write_plan(settings: Settings, pairs: list[str], overrides: dict[str, Any], path: Path) -> RunManifest:
    """Write the reviewed plan to `path` (unapproved) and return the manifest it plans.
    `overrides` are the plan command's options, applied again when the plan runs."""
    manifest = plan_run(settings, pairs, run_id="planned", enforce_budget=False)
    plan = Plan(
        written_at=datetime.now(UTC),
        overrides={k: v for k, v in overrides.items() if v is not None},
        settings=run_settings_of(settings),
        fingerprints=fingerprints(settings, manifest.days),
        manifest=manifest.model_dump(mode="json", exclude=RUN_FIELDS),
    )
    _write(path, plan)
    return manifest


def _write(path: Path, plan: Plan) -> None:
    Path(path).write_text(json.dumps(plan.model_dump(mode="json"), indent=2) + "\n")


def read_plan(path: Path) -> Plan:
    """Return the plan in `path`; raises PlanError for a file that is missing, not a plan, or a
    plan with a field missing, misspelt or of the wrong type."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PlanError(f"plan {path} does not exist: write one with `bqx plan --pairs ... -o {path}`") from None
    except json.JSONDecodeError as exc:
        raise PlanError(f"plan {path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != PLAN_KIND or data.get("version") != PLAN_VERSION:
        raise PlanError(f"{path} is not a bqx plan (version {PLAN_VERSION})")
    try:
        plan = Plan.model_validate(data)
        RunManifest.model_validate(plan.manifest | {"run_id": "planned", "created_at": plan.written_at})
    except ValidationError as exc:
        raise PlanError(f"plan {path} is damaged: {validation_problem(exc)}: write and approve a new plan") from None
    return plan


def _reviewed(plan: Plan) -> str:
    """Return the digest of what an approver reviews: everything in the plan but the approval."""
    return _digest(plan.model_dump(mode="json", exclude={"approval"}))


def approve_plan(path: Path, by: str) -> PlanApproval:
    """Record in the plan file who approved it and when; returns the approval."""
    if not by.strip():
        raise PlanError("--by must name the approver")
    plan = read_plan(path)
    approval = PlanApproval(by=by.strip(), at=datetime.now(UTC), digest=_reviewed(plan))
    _write(path, plan.model_copy(update={"approval": approval}))
    return approval


def _changed_settings(planned: dict[str, Any], current: dict[str, Any]) -> list[str]:
    keys = sorted(set(planned) | set(current))
    return [f"{k}: {planned.get(k)!r} -> {current.get(k)!r}" for k in keys if planned.get(k) != current.get(k)]


def manifest_from_plan(plan: Plan, settings: Settings, path: Path, run_id: str | None = None) -> RunManifest:
    """Return the manifest of a run of an approved plan; raises PlanError (one line) when the
    plan is unapproved or was edited after approval, or when the settings, the warehouse catalog
    or the sampled days differ from the plan's."""
    approval = plan.approval
    if approval is None:
        raise PlanError(f"plan {path} is not approved: review it, then `bqx plan approve {path} --by NAME`")
    if approval.digest != _reviewed(plan):
        raise PlanError(f"plan {path} was changed after {approval.by} approved it: approve it again")
    changed = _changed_settings(plan.settings, run_settings_of(settings))
    if changed:
        raise PlanError(
            f"settings changed since plan {path} was written ({'; '.join(changed[:3])}"
            f"{f'; {len(changed) - 3} more' if len(changed) > 3 else ''}): write and approve a new plan"
        )
    run_id = run_id or new_run_id()
    manifest = RunManifest.model_validate(
        plan.manifest
        | {
            "run_id": run_id,
            "created_at": datetime.now(UTC),
            "plan": ApprovedPlan(
                path=str(path),
                written_at=plan.written_at,
                approved_by=approval.by,
                approved_at=approval.at,
                fingerprints=plan.fingerprints,
            ),
        }
    )
    current = fingerprints(settings, manifest.days)
    if current["catalog"] != plan.fingerprints.get("catalog"):
        raise PlanError(f"the warehouse catalog changed since plan {path} was written: write and approve a new plan")
    replanned = plan_run(settings, manifest.pairs, run_id="check", enforce_budget=False)
    if replanned.days != manifest.days:
        raise PlanError(
            f"the sampled days changed since plan {path} was written ({len(manifest.days)} planned, "
            f"{len(replanned.days)} now; the targets' calendar moved): write and approve a new plan"
        )
    return manifest
