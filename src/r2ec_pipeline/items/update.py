"""A catalog update applied to a model in memory: the new rows checked by the GX rules, given ids, rendered
as the prompts stage renders items and encoded into the item table (every other row kept bit for bit).

Shared by the catalog_update pipeline (a registered version) and the cold-start evaluation (a model just
trained without the items). Plain Python, no Kedro.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from r2ec_pipeline.config import PromptParams
from r2ec_pipeline.data.prompting import item_prompt_table
from r2ec_pipeline.data.validation import new_item_rules, validate_frames
from r2ec_pipeline.items.rows import CatalogUpdate, match_catalog, plan_update
from r2ec_pipeline.model.dual_head import R2ecModel


@dataclass(frozen=True)
class EncodedUpdate:
    plan: CatalogUpdate  # the updated catalog, the rows encoded, the ids added and updated
    items_truncated: int  # rows whose text was cut to max_item_prompt_tokens
    seconds: float  # encoding time of those rows

    def report(self) -> dict[str, Any]:
        """Items before and after, the added and updated raw ids, encoding seconds, rows whose text was cut."""
        raw_ids = dict(zip(self.plan.rows["item_id"], self.plan.rows["raw_item_id"], strict=True))
        after = len(self.plan.catalog)
        return {
            "items_before": after - len(self.plan.added),
            "items_after": after,
            "added": [raw_ids[i] for i in self.plan.added],
            "updated": [raw_ids[i] for i in self.plan.updated],
            "encode_seconds": round(self.seconds, 3),
            "items_truncated": self.items_truncated,
        }


def check_item_rows(
    rows: pd.DataFrame, catalog: pd.DataFrame, allow_updates: bool, example_rows: int
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, bytes]]:
    """The rows matched to ``catalog`` (``existing_item_id``), the GX rules' report on them and its Data Docs."""
    matched = match_catalog(rows, catalog)
    report, site = validate_frames({"new_items": (matched, new_item_rules(allow_updates))}, example_rows)
    return matched, report, site


def encode_update(
    model: R2ecModel, catalog: pd.DataFrame, matched: pd.DataFrame, prompts: PromptParams, batch_size: int
) -> EncodedUpdate:
    """Give the matched rows ids (new items after the catalog's largest) and encode only them into
    ``model``'s item table; the item prompts end with the model's own answer tag."""
    plan = plan_update(catalog, matched)
    rows = item_prompt_table(
        plan.rows, model.tokenizer, prompts.item_instruction, model.config.answer_tag, prompts.max_item_prompt_tokens
    )
    started = time.perf_counter()
    model.update_item_rows(rows["item_id"].tolist(), rows["prompt"].tolist(), batch_size=batch_size)
    return EncodedUpdate(plan, int(rows["text_truncated"].sum()), time.perf_counter() - started)
