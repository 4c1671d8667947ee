"""Great-expectations 1.x validation of tables, plain Python (no Kedro): the rules as suites built in
code from parameters, and a runner that checks frames against them, renders GX Data Docs (HTML) and
reports every expectation.

Each expectation carries its rule name in ``description``; that name is what a failing run reports,
what the JSON report lists, and what the tests look for. The data_validation and catalog_update
pipelines share it.
"""

from __future__ import annotations

import html
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.checkpoint import UpdateDataDocsAction
from great_expectations.data_context.types.base import ProgressBarsConfig

from r2ec_pipeline.config import ValidationParams

logger = logging.getLogger(__name__)
DATA_DOCS_SITE = "r2ec"
OVERVIEW_PAGE = "overview.html"  # beside GX's index.html: every rule's outcome, readable offline


def interaction_rules(catalog_item_ids: list[int], params: ValidationParams) -> gx.ExpectationSuite:
    """Rules on ``interactions``: ids present, items known, ratings in scale, valid times, no duplicates."""
    return gx.ExpectationSuite(
        name="interactions",
        expectations=[
            gxe.ExpectColumnValuesToNotBeNull(column="user_id", description="user_id_not_null"),
            gxe.ExpectColumnValuesToNotBeNull(column="item_id", description="item_id_not_null"),
            gxe.ExpectColumnValuesToBeInSet(
                column="item_id", value_set=catalog_item_ids, description="item_exists_in_items"
            ),
            gxe.ExpectColumnValuesToNotBeNull(column="rating", description="rating_not_null"),
            gxe.ExpectColumnValuesToBeBetween(
                column="rating",
                min_value=params.rating_min,
                max_value=params.rating_max,
                description="rating_within_scale",
            ),
            gxe.ExpectColumnValuesToNotBeNull(column="timestamp", description="timestamp_not_null"),
            gxe.ExpectColumnValuesToBeBetween(
                column="timestamp",
                min_value=params.timestamp_min,
                max_value=params.timestamp_max,
                description="timestamp_valid",
            ),
            gxe.ExpectCompoundColumnsToBeUnique(
                column_list=["user_id", "item_id", "timestamp"], description="no_duplicate_user_item_timestamp"
            ),
        ],
    )


def item_rules() -> gx.ExpectationSuite:
    """Rules on ``items``: ids present, unique and never 0; every title non-empty."""
    return gx.ExpectationSuite(
        name="items",
        expectations=[
            gxe.ExpectColumnValuesToNotBeNull(column="item_id", description="item_id_not_null"),
            gxe.ExpectColumnValuesToBeUnique(column="item_id", description="item_id_unique"),
            gxe.ExpectColumnValuesToBeBetween(column="item_id", min_value=1, description="item_id_not_zero"),
            gxe.ExpectColumnValuesToNotBeNull(column="title", description="title_not_null"),
            gxe.ExpectColumnValuesToNotMatchRegex(column="title", regex=r"^\s*$", description="title_not_empty"),
        ],
    )


def new_item_rules(allow_updates: bool) -> gx.ExpectationSuite:
    """Rules on the rows of a catalog update (``existing_item_id``: the catalog's id for the row's raw id,
    null for a new item): raw ids present and unique, titles non-empty, and unless ``allow_updates`` no
    raw id that already names a catalog item."""
    expectations = [
        gxe.ExpectColumnValuesToNotBeNull(column="raw_item_id", description="raw_item_id_not_null"),
        gxe.ExpectColumnValuesToBeUnique(column="raw_item_id", description="raw_item_id_unique"),
        gxe.ExpectColumnValuesToNotBeNull(column="title", description="title_not_null"),
        gxe.ExpectColumnValuesToNotMatchRegex(column="title", regex=r"^\s*$", description="title_not_empty"),
    ]
    if not allow_updates:
        expectations.append(
            gxe.ExpectColumnValuesToBeNull(column="existing_item_id", description="raw_item_id_not_in_catalog")
        )
    return gx.ExpectationSuite(name="new_items", expectations=expectations)


def user_activity_rules(params: ValidationParams) -> gx.ExpectationSuite:
    """Rule on per-user counts: every user has at least ``min_user_interactions`` interactions."""
    return gx.ExpectationSuite(
        name="user_activity",
        expectations=[
            gxe.ExpectColumnValuesToBeBetween(
                column="n_interactions",
                min_value=params.min_user_interactions,
                description="user_has_min_interactions",
            ),
        ],
    )


def user_activity(interactions: pd.DataFrame) -> pd.DataFrame:
    """One row per user with the number of interactions (the table the activity rule checks)."""
    counts = interactions.groupby("user_id", dropna=False).size()
    return counts.rename("n_interactions").rename_axis("user_id").reset_index()


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
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(
            name=table, data=asset.add_batch_definition_whole_dataframe("whole"), suite=context.suites.add(suite)
        )
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{table}_checkpoint",
            validation_definitions=[definition],
            actions=[UpdateDataDocsAction(name="data_docs")],
            result_format={"result_format": "COMPLETE", "partial_unexpected_count": limit},
        )
    )
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
    return {
        path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()
    }


def validate_frames(
    tables: dict[str, tuple[pd.DataFrame, gx.ExpectationSuite]], example_rows: int
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Check each named frame against its suite; return the report and GX's Data Docs site as files
    (HTML pages of the suites and of each validation result, failing rows included)."""
    with tempfile.TemporaryDirectory() as site:
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.add_data_docs_site(
            site_name=DATA_DOCS_SITE,
            site_config={
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": site},
            },
        )
        results = [
            entry
            for table, (frame, suite) in tables.items()
            for entry in _run_suite(context, table, frame, suite, example_rows)
        ]
        files = _site_files(Path(site))
    failed = [entry["rule"] for entry in results if not entry["success"]]
    report = {
        "success": not failed,
        "failed_rules": failed,
        "rows": {table: len(frame) for table, (frame, _) in tables.items()},
        "results": results,
    }
    logger.info("data validation: %d rules, %d failed %s", len(results), len(failed), failed or "")
    return report, {**files, OVERVIEW_PAGE: _overview(report, files)}


def _overview(report: dict[str, Any], files: dict[str, bytes]) -> bytes:
    """A static page of every rule's outcome linking each table's GX validation page. GX's own index draws
    its tables with scripts from CDNs, so offline it shows headings only; this page needs nothing."""
    rows = []
    for entry in report["results"]:
        page = next((path for path in sorted(files) if path.startswith(f"validations/{entry['table']}/")), None)
        table = (
            f'<a href="{html.escape(page)}">{html.escape(entry["table"])}</a>' if page else html.escape(entry["table"])
        )
        outcome = (
            "passed" if entry["success"] else f"FAILED: {entry['unexpected_count']} of {entry['element_count']} rows"
        )
        rows.append(
            f"<tr><td>{table}</td><td>{html.escape(str(entry['rule']))}</td>"
            f"<td>{html.escape(entry['expectation'])}</td><td>{html.escape(outcome)}</td></tr>"
        )
    status = "every rule held" if report["success"] else f"failed: {', '.join(report['failed_rules'])}"
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Data validation</title></head><body>"
        f"<h1>Data validation: {html.escape(status)}</h1><p>Full GX Data Docs: <a href='index.html'>index.html</a>"
        f"</p><table border='1' cellpadding='4'><tr><th>table</th><th>rule</th><th>expectation</th>"
        f"<th>outcome</th></tr>{''.join(rows)}</table></body></html>"
    ).encode()


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


def enforce(report: dict[str, Any], data_docs: str, report_path: str) -> None:
    """Raise ``DataValidationError`` naming every failed rule and where the Data Docs (folder ``data_docs``)
    and the JSON report are."""
    if not report["success"]:
        raise DataValidationError(
            f"data validation failed ({len(report['failed_rules'])} rule(s): "
            f"{', '.join(report['failed_rules'])}); see {data_docs}/{OVERVIEW_PAGE} (each rule, readable offline), "
            f"{data_docs}/index.html (GX Data Docs) and {report_path}\n" + describe_failures(report)
        )
