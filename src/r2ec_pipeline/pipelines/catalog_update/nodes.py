"""Nodes of the catalog_update pipeline: validate the new rows, encode them with the registered model's
backbone and adapters, and say what to register (the ``updated_model`` dataset registers it).

R²ec's item table is the backbone's encoding of each item's text, so an item unseen in training is
ranked as soon as its row is encoded: nothing is retrained, and the catalog's other rows stay as they
were, bit for bit.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from r2ec_pipeline.config import parse_block
from r2ec_pipeline.data.validation import enforce
from r2ec_pipeline.items.update import check_item_rows, encode_update
from r2ec_pipeline.model.dual_head_io import load_dual_head
from r2ec_pipeline.serving.registry import (
    COMPARED_TAGS,
    RegisteredVersion,
    Registration,
)

logger = logging.getLogger(__name__)
DATA_DOCS = "data/08_reporting/catalog_update_data_docs"
VALIDATION_REPORT = "data/08_reporting/catalog_update_validation.json"
KEPT_TAGS = tuple(tag for tag in COMPARED_TAGS if tag != "promotion_users")  # what the model was trained on


def check_new_items(
    new_items: pd.DataFrame, source: RegisteredVersion, update_params: dict[str, Any], validation_params: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, bytes]]:
    """The new rows matched to the source's catalog, the GX rules' report on them and its Data Docs site."""
    config, rules = parse_block("catalog_update", update_params), parse_block("data_validation", validation_params)
    return check_item_rows(new_items, source.items, config.allow_updates, rules.example_rows)


def accept_new_items(report: dict[str, Any], matched: pd.DataFrame) -> pd.DataFrame:
    """The matched rows when every rule held; otherwise stop: nothing is encoded or registered."""
    enforce(report, DATA_DOCS, VALIDATION_REPORT)
    return matched


def update_catalog(
    matched: pd.DataFrame,
    source: RegisteredVersion,
    prompts_params: dict[str, Any],
    model_params: dict[str, Any],
    registration_params: dict[str, Any],
) -> tuple[Registration, dict[str, Any]]:
    """Encode the new and updated items' rows with the source model and say what to register: the source
    with the updated catalog, as a new version (challenger; the promotion rules are unchanged)."""
    registration = parse_block("registration", registration_params)
    model = load_dual_head(source.checkpoint, source.backbone, backbone=str(source.backbone))
    update = encode_update(
        model,
        source.items,
        matched,
        parse_block("prompts", prompts_params),
        parse_block("model", model_params).item_batch_size,
    )
    plan = update.plan
    report = {"source": f"{source.name} version {source.version}", **update.report()}
    logger.info(
        "catalog update of %s: %d added, %d updated, %d items encoded in %.1f s",
        report["source"],
        len(plan.added),
        len(plan.updated),
        len(plan.rows),
        update.seconds,
    )
    tags = {tag: source.tags[tag] for tag in KEPT_TAGS if tag in source.tags} | {
        "catalog_update.source": report["source"],
        "catalog_update.added": str(len(plan.added)),
        "catalog_update.updated": str(len(plan.updated)),
    }
    example = pd.DataFrame(
        [{"history_item_ids": (report["added"] or report["updated"])[:5], "k": source.settings.default_k}]
    )
    return Registration(
        checkpoint=model,
        backbone=source.backbone,
        items=plan.catalog,
        settings=source.settings,
        input_example=example,
        model_name=source.name,
        metric=registration.promotion_metric,
        value=None,
        tags=tags,
    ), report
