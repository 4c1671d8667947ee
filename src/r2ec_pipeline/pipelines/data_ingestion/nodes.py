"""Turn a raw source into the canonical ``interactions`` and ``items`` tables (method §1).

Canonical ``interactions``: user_id, item_id, rating, timestamp (Unix seconds), raw_user_id,
raw_item_id. Canonical ``items``: item_id, raw_item_id, title, then the dataset's text fields.
Ids are contiguous integers from 1 (0 is never a real item or user); raw ids are kept for export.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pandas as pd

from r2ec_pipeline.config import AmazonParams, parse_block
from r2ec_pipeline.data.amazon import filter_items, meta_items, to_unix, window_start

if TYPE_CHECKING:  # types only: the nodes import no Kedro dataset classes
    from r2ec_pipeline.datasets.raw_sources import LazyTables, RawTables

logger = logging.getLogger(__name__)

CANONICAL_INTERACTIONS = ["user_id", "item_id", "rating", "timestamp", "raw_user_id", "raw_item_id"]


class DataFormatError(ValueError):
    """A raw row cannot be parsed; the message names the column and quotes example rows."""


def _to_number(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    """Parse a numeric column; unparsable values stop ingestion with examples instead of becoming NaN."""
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = frame.loc[values.isna(), column]
    if len(bad):
        examples = bad.head(5).to_dict()
        raise DataFormatError(
            f"{source}: {len(bad)} row(s) with a non-numeric {column!r}; first ones (row: value): {examples}"
        )
    return values


def _raw_id_order(raw_ids: pd.Series) -> list[str]:
    """Distinct raw ids in a stable order: numerically when every id is a number, else lexically."""
    unique = pd.unique(raw_ids.astype(str))
    if all(value.isdigit() for value in unique):
        return sorted(unique, key=int)
    return sorted(unique)


def movielens_tables(raw: RawTables) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ML-100k atomic files → raw interactions and items; every rating is kept as an interaction."""
    inter, item = raw["inter"], raw["item"]
    interactions = pd.DataFrame(
        {
            "raw_user_id": inter["user_id"].astype(str),
            "raw_item_id": inter["item_id"].astype(str),
            "rating": _to_number(inter, "rating", "ml-100k.inter").astype(float),
            "timestamp": _to_number(inter, "timestamp", "ml-100k.inter").astype("int64"),
        }
    )
    items = pd.DataFrame(
        {
            "raw_item_id": item["item_id"].astype(str),
            "title": item["movie_title"].str.strip(),
            "year": item["release_year"].str.strip(),
            "genres": item["class"].str.split().str.join(", "),
        }
    )
    return interactions, items


def amazon_tables(raw: RawTables, params: AmazonParams) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Amazon Reviews 2023 → raw interactions and items with the paper's preprocessing, and what it dropped.

    The item rules and the window are ``data.amazon``'s; the report counts every dropped item and
    review by reason, and gives the window that was used.
    """
    reviews, meta = raw["reviews"], raw["meta"]
    kept_meta, item_drops = filter_items(
        meta, params.max_title_words, params.min_title_chars, tuple(params.title_markers), params.require_price
    )
    logger.info("amazon: %d of %d item records kept (%s)", len(kept_meta), len(meta), item_drops)
    known = reviews["parent_asin"].isin(meta["parent_asin"])
    usable = reviews["parent_asin"].isin(kept_meta["parent_asin"])
    review_drops = {"item_without_metadata": int((~known).sum()), "item_dropped": int((known & ~usable).sum())}
    reviews = reviews[usable]
    seconds = _to_number(reviews, "timestamp", "reviews").astype("int64") // 1000  # the files give milliseconds
    start = window_start(
        seconds, reviews["parent_asin"], params.start_date, params.end_date, params.min_items, params.start_step_months
    )
    in_window = (seconds >= to_unix(start)) & (seconds < to_unix(params.end_date))
    review_drops["outside_window"] = int((~in_window).sum())
    kept = reviews[in_window]
    interactions = pd.DataFrame(
        {
            "raw_user_id": kept["user_id"].astype(str),
            "raw_item_id": kept["parent_asin"].astype(str),
            "rating": _to_number(kept, "rating", "reviews").astype(float),
            "timestamp": seconds[in_window],
        }
    )
    before = len(interactions)
    interactions = interactions.drop_duplicates(["raw_user_id", "raw_item_id", "timestamp"])
    review_drops["duplicate_review"] = before - len(interactions)
    logger.info(
        "amazon: window %s..%s (exclusive) holds %d items (target %d); reviews dropped: %s",
        start,
        params.end_date,
        interactions["raw_item_id"].nunique(),
        params.min_items,
        review_drops,
    )
    items = meta_items(kept_meta)
    report = {
        "items": {"read": len(meta), "kept": len(kept_meta), "dropped": item_drops},
        "reviews": {
            "read": len(raw["reviews"]),
            "kept": len(interactions),
            "dropped": {reason: n for reason, n in review_drops.items() if n},
        },
        "window": {
            "start": start.isoformat(),
            "end_exclusive": params.end_date.isoformat(),
            "start_step_months": params.start_step_months,
            "min_items": params.min_items,
        },
    }
    return interactions.reset_index(drop=True), items.reset_index(drop=True), report


def canonicalize(
    interactions: pd.DataFrame, items: pd.DataFrame, min_user_interactions: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop users below ``min_user_interactions``, keep the catalog's items, assign contiguous ids.

    Interactions whose raw item id is not in the item table are *kept* with an id outside the catalog,
    so the validation pipeline reports them instead of ingestion silently dropping them.
    """
    counts = interactions["raw_user_id"].map(interactions["raw_user_id"].value_counts())
    dropped = int((counts < min_user_interactions).sum())
    if dropped:
        logger.info("dropped %d interactions of users with < %d interactions", dropped, min_user_interactions)
    interactions = interactions[counts >= min_user_interactions]

    known = items[items["raw_item_id"].isin(interactions["raw_item_id"])]
    item_ids = {raw: index for index, raw in enumerate(_raw_id_order(known["raw_item_id"]), start=1)}
    unknown = sorted(set(interactions["raw_item_id"]) - set(item_ids))
    item_ids.update({raw: len(item_ids) + offset for offset, raw in enumerate(unknown, start=1)})
    user_ids = {raw: index for index, raw in enumerate(_raw_id_order(interactions["raw_user_id"]), start=1)}

    canonical = interactions.assign(
        user_id=interactions["raw_user_id"].map(user_ids).astype("int64"),
        item_id=interactions["raw_item_id"].map(item_ids).astype("int64"),
    )[CANONICAL_INTERACTIONS]
    catalog = known.assign(item_id=known["raw_item_id"].map(item_ids).astype("int64"))
    catalog = catalog[["item_id", *[c for c in catalog.columns if c != "item_id"]]].sort_values("item_id")
    return canonical.reset_index(drop=True), catalog.reset_index(drop=True)


def ingest(
    movielens_100k: LazyTables, amazon_2023: LazyTables, params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Read only the source named by ``data_ingestion.source``; canonical tables and what was dropped, by reason."""
    config = parse_block("data_ingestion", params)
    if config.source == "movielens_100k":
        interactions, items = movielens_tables(movielens_100k())
        report: dict[str, Any] = {"reviews": {"read": len(interactions), "dropped": {}}}
    else:
        interactions, items, report = amazon_tables(amazon_2023(), config.amazon)
    before = len(interactions)
    interactions, items = canonicalize(interactions, items, config.min_user_interactions)
    if before - len(interactions):
        report["reviews"]["dropped"]["user_below_min_interactions"] = before - len(interactions)
    report["reviews"]["kept"] = len(interactions)
    report.update(source=config.source, users=int(interactions["user_id"].nunique()), catalog_items=len(items))
    logger.info(
        "%s: %d interactions, %d users, %d items",
        config.source,
        len(interactions),
        interactions["user_id"].nunique(),
        len(items),
    )
    return interactions, items, report
