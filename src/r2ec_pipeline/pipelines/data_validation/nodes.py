"""Validate the canonical tables with great-expectations and stop the run on any failed rule.

Two nodes: ``validate_tables`` always writes the JSON report and GX's Data Docs (HTML; both MLflow
artifacts), then ``enforce_report`` passes the tables through as ``validated_*`` or raises
``DataValidationError`` (naming the Data Docs page), so nothing downstream is written from data that
broke a rule.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import great_expectations as gx
import pandas as pd
from great_expectations.checkpoint import UpdateDataDocsAction
from great_expectations.data_context.types.base import ProgressBarsConfig

from r2ec_pipeline.config import parse_block
from r2ec_pipeline.pipelines.data_validation.rules import (
    interaction_rules,
    item_rules,
    user_activity,
    user_activity_rules,
)

logger = logging.getLogger(__name__)
DATA_DOCS_SITE = "r2ec"
DATA_DOCS_INDEX = "data/08_reporting/data_docs/index.html"  # where the catalog's validation_data_docs puts it


class DataValidationError(ValueError):
    """At least one expectation failed; the message names each with counts and example rows."""


def _json_safe(value: Any) -> Any:
    """Make example cells JSON-serialisable (numpy scalars, NaN, lists) without losing what they show."""
    return json.loads(pd.Series([value]).to_json(orient="values", default_handler=str))[0]


def _examples(frame: pd.DataFrame, indices: list[Any], limit: int) -> list[dict[str, Any]]:
    rows = frame.loc[[index for index in indices[:limit] if index in frame.index]]
    return [{column: _json_safe(value) for column, value in row.items()} for _, row in rows.iterrows()]


def _run_suite(
    context: Any, table: str, frame: pd.DataFrame, suite: gx.ExpectationSuite, limit: int
) -> list[dict[str, Any]]:
    """Validate ``frame`` against ``suite`` through a checkpoint that also renders the result into the
    context's Data Docs site; return one report entry per expectation."""
    asset = context.data_sources.add_pandas(f"{table}_source").add_dataframe_asset(table)
    definition = context.validation_definitions.add(gx.ValidationDefinition(
        name=table, data=asset.add_batch_definition_whole_dataframe("whole"), suite=context.suites.add(suite)))
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name=f"{table}_checkpoint", validation_definitions=[definition],
        actions=[UpdateDataDocsAction(name="data_docs")],
        result_format={"result_format": "COMPLETE", "partial_unexpected_count": limit}))
    [result] = checkpoint.run(batch_parameters={"dataframe": frame}).run_results.values()
    entries = []
    for outcome in result.results:
        config, details = outcome.expectation_config, outcome.result or {}
        raised = outcome.exception_info.get("exception_message") if outcome.exception_info else None
        entries.append(
            {
                "rule": config.description,
                "table": table,
                "expectation": config.type,
                "kwargs": {k: v for k, v in config.kwargs.items() if k not in {"batch_id", "value_set"}},
                "success": bool(outcome.success),
                "element_count": details.get("element_count", len(frame)),
                "unexpected_count": details.get("unexpected_count", 0 if outcome.success else None),
                "examples": _examples(frame, details.get("unexpected_index_list") or [], limit),
                "error": raised,
            }
        )
    return entries


def _site_files(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def validate_tables(
    interactions: pd.DataFrame, items: pd.DataFrame, params: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Run every rule on ``interactions``, ``items`` and per-user activity; return the full report and
    GX's Data Docs site (HTML pages of the suites and of each validation result, with failing rows)."""
    config = parse_block("data_validation", params)
    with tempfile.TemporaryDirectory() as site:
        report = _validate(interactions, items, config, Path(site))
        return report, _site_files(Path(site))


def _validate(interactions: pd.DataFrame, items: pd.DataFrame, config: Any, site: Path) -> dict[str, Any]:
    """The report; GX renders each table's suite and validation result into the Data Docs site at ``site``."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.add_data_docs_site(site_name=DATA_DOCS_SITE, site_config={
        "class_name": "SiteBuilder", "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site)}})
    catalog_ids = sorted(int(v) for v in items["item_id"].dropna().unique())
    tables = {
        "interactions": (interactions, interaction_rules(catalog_ids, config)),
        "items": (items, item_rules()),
        "user_activity": (user_activity(interactions), user_activity_rules(config)),
    }
    results = [
        entry
        for table, (frame, suite) in tables.items()
        for entry in _run_suite(context, table, frame, suite, config.example_rows)
    ]
    failed = [entry["rule"] for entry in results if not entry["success"]]
    report = {
        "success": not failed,
        "failed_rules": failed,
        "rows": {table: len(frame) for table, (frame, _) in tables.items()},
        "results": results,
    }
    logger.info("data validation: %d rules, %d failed %s", len(results), len(failed), failed or "")
    return report


def describe_failures(report: dict[str, Any]) -> str:
    """One line per failed rule: its name, table, expectation type, count and example rows."""
    lines = []
    for entry in report["results"]:
        if entry["success"]:
            continue
        count = entry["unexpected_count"]
        what = f"{count} of {entry['element_count']} rows" if count is not None else f"error: {entry['error']}"
        lines.append(
            f"- {entry['rule']} ({entry['table']}, {entry['expectation']} {entry['kwargs']}): {what}; "
            f"examples: {entry['examples']}"
        )
    return "\n".join(lines)


def enforce_report(
    report: dict[str, Any], interactions: pd.DataFrame, items: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pass the tables through unchanged when every rule held; otherwise stop the run."""
    if not report["success"]:
        raise DataValidationError(
            f"data validation failed ({len(report['failed_rules'])} rule(s): "
            f"{', '.join(report['failed_rules'])}); see {DATA_DOCS_INDEX} (GX Data Docs) and "
            f"data/08_reporting/validation_report.json\n"
            + describe_failures(report)
        )
    return interactions, items
