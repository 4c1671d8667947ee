"""Validate the canonical tables with great-expectations and stop the run on any failed rule.

Two nodes: ``validate_tables`` always writes the JSON report and GX's Data Docs (HTML; both MLflow
artifacts), then ``enforce_report`` passes the tables through as ``validated_*`` or raises
``DataValidationError`` (naming the Data Docs page), so nothing downstream is written from data that
broke a rule. The rules and the GX runner live in ``data/validation.py``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from r2ec_pipeline.config import parse_block
from r2ec_pipeline.data.validation import (
    enforce,
    interaction_rules,
    item_rules,
    user_activity,
    user_activity_rules,
    validate_frames,
)

DATA_DOCS = "data/08_reporting/data_docs"  # where the catalog's validation_data_docs puts the site


def validate_tables(
    interactions: pd.DataFrame, items: pd.DataFrame, params: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Run every rule on ``interactions``, ``items`` and per-user activity; return the full report and
    GX's Data Docs site (HTML pages of the suites and of each validation result, with failing rows)."""
    config = parse_block("data_validation", params)
    catalog_ids = sorted(int(v) for v in items["item_id"].dropna().unique())
    return validate_frames(
        {
            "interactions": (interactions, interaction_rules(catalog_ids, config)),
            "items": (items, item_rules()),
            "user_activity": (user_activity(interactions), user_activity_rules(config)),
        },
        config.example_rows,
    )


def enforce_report(
    report: dict[str, Any], interactions: pd.DataFrame, items: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pass the tables through unchanged when every rule held; otherwise stop the run."""
    enforce(report, DATA_DOCS, "data/08_reporting/validation_report.json")
    return interactions, items
