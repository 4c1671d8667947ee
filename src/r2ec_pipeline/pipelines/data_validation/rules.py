"""The data rules, as great-expectations 1.x suites built in code from parameters.

Each expectation carries its rule name in ``description``; that name is what a failing run reports,
what the JSON report lists, and what the tests look for.
"""

from __future__ import annotations

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd

from r2ec_pipeline.config import ValidationParams


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
                column="rating", min_value=params.rating_min, max_value=params.rating_max,
                description="rating_within_scale",
            ),
            gxe.ExpectColumnValuesToNotBeNull(column="timestamp", description="timestamp_not_null"),
            gxe.ExpectColumnValuesToBeBetween(
                column="timestamp", min_value=params.timestamp_min, max_value=params.timestamp_max,
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


def user_activity_rules(params: ValidationParams) -> gx.ExpectationSuite:
    """Rule on per-user counts: every user has at least ``min_user_interactions`` interactions."""
    return gx.ExpectationSuite(
        name="user_activity",
        expectations=[
            gxe.ExpectColumnValuesToBeBetween(
                column="n_interactions", min_value=params.min_user_interactions,
                description="user_has_min_interactions",
            ),
        ],
    )


def user_activity(interactions: pd.DataFrame) -> pd.DataFrame:
    """One row per user with the number of interactions (the table the activity rule checks)."""
    counts = interactions.groupby("user_id", dropna=False).size()
    return counts.rename("n_interactions").rename_axis("user_id").reset_index()
