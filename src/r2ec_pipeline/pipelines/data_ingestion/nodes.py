"""Turn a raw source into the canonical ``interactions`` and ``items`` tables (spec §1).

Canonical ``interactions``: user_id, item_id, rating, timestamp (Unix seconds), raw_user_id,
raw_item_id. Canonical ``items``: item_id, raw_item_id, title, then the dataset's text fields.
Ids are contiguous integers from 1 (0 is never a real item or user); raw ids are kept for export.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

import pandas as pd

from r2ec_pipeline.config import AmazonParams, parse_block

if TYPE_CHECKING:  # types only: the nodes run without Kedro's dataset classes (benchmarks/gpu_run.py)
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


def _to_unix(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())


def _description_text(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(part).strip() for part in value if str(part).strip())
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value).strip()


def amazon_tables(raw: RawTables, params: AmazonParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Amazon Reviews 2023 → raw interactions and items with the paper's preprocessing.

    Items without a usable title are dropped; reviews are kept from ``start_date`` to ``end_date``,
    moving ``start_date`` back by ``start_step_days`` until the window covers ``min_items`` items
    (or all the data); exact duplicate (user, item, timestamp) reviews are kept once.
    """
    reviews, meta = raw["reviews"], raw["meta"]
    meta = meta.assign(title=meta["title"].map(_description_text)).drop_duplicates("parent_asin")
    titled = meta[meta["title"].str.len() > 0]
    logger.info("amazon: %d of %d items have a usable title", len(titled), len(meta))
    reviews = reviews[reviews["parent_asin"].isin(titled["parent_asin"])]
    seconds = _to_number(reviews, "timestamp", "reviews").astype("int64") // 1000
    end, start = _to_unix(params.end_date), _to_unix(params.start_date)
    step, earliest = params.start_step_days * 86_400, int(seconds.min()) if len(seconds) else start
    while True:
        in_window = (seconds >= start) & (seconds < end)
        n_items = reviews.loc[in_window, "parent_asin"].nunique()
        if n_items >= params.min_items or start <= earliest:
            break
        start -= step
    logger.info(
        "amazon: window %s..%s holds %d items (target %d)",
        datetime.fromtimestamp(start, timezone.utc).date(), params.end_date, n_items, params.min_items,
    )
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
    if before - len(interactions):
        logger.info("amazon: dropped %d duplicate (user, item, timestamp) reviews", before - len(interactions))
    items = pd.DataFrame(
        {
            "raw_item_id": titled["parent_asin"].astype(str),
            "title": titled["title"],
            "description": titled["description"].map(_description_text),
            "average_rating": titled["average_rating"],
            "rating_number": titled["rating_number"],
        }
    )
    return interactions.reset_index(drop=True), items.reset_index(drop=True)


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
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read only the source named by ``data_ingestion.source`` and return canonical tables."""
    config = parse_block("data_ingestion", params)
    if config.source == "movielens_100k":
        interactions, items = movielens_tables(movielens_100k())
    else:
        interactions, items = amazon_tables(amazon_2023(), config.amazon)
    interactions, items = canonicalize(interactions, items, config.min_user_interactions)
    logger.info(
        "%s: %d interactions, %d users, %d items",
        config.source, len(interactions), interactions["user_id"].nunique(), len(items),
    )
    return interactions, items
