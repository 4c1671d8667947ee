"""A catalog update's rows: read from a file, matched against a registered model's catalog, given ids.

New items take the ids after the catalog's largest; a row whose raw id the catalog already has is an
update of that item's text (when the update allows it). Plain pandas, no Kedro.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from r2ec_pipeline.data.amazon import clean_title, meta_items

CATALOG_COLUMNS = ["item_id", "raw_item_id", "title"]  # what a registered version's items.parquet holds
READERS = {".parquet": "parquet", ".csv": "csv", ".csv.gz": "csv", ".jsonl": "jsonl", ".jsonl.gz": "jsonl"}


class CatalogUpdateError(ValueError):
    """The new items cannot be read (missing file, unknown format, missing columns); the message says which."""


def _reader(path: Path) -> str:
    for suffix, kind in READERS.items():
        if path.name.endswith(suffix):
            return kind
    raise CatalogUpdateError(f"{path}: unknown format; new items come as {', '.join(READERS)}")


def _raw_id(value: object) -> str | None:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def read_item_rows(path: Path) -> pd.DataFrame:
    """New item rows in the project's item schema (``raw_item_id``, ``title``, optional text fields such as
    ``genres`` or ``description``), or Amazon Reviews 2023 metadata lines (``parent_asin``, ``title``, ...)."""
    if not path.is_file():
        raise CatalogUpdateError(f"new items file not found: {path} (set new_items_path in conf/local/globals.yml)")
    kind = _reader(path)
    ids = {"raw_item_id": str, "parent_asin": str}
    if kind == "parquet":
        frame = pd.read_parquet(path)
    elif kind == "csv":
        frame = pd.read_csv(path, dtype=ids, keep_default_na=False, na_values=[""])
    else:
        frame = pd.read_json(path, lines=True, dtype=ids)
    if "parent_asin" in frame.columns and "raw_item_id" not in frame.columns:  # Amazon Reviews 2023 metadata
        frame = meta_items(frame).assign(title=frame["title"].map(clean_title))
    missing = [column for column in ("raw_item_id", "title") if column not in frame.columns]
    if missing:
        raise CatalogUpdateError(
            f"{path}: missing column(s) {missing}; it has {list(frame.columns)} (expected "
            "raw_item_id, title and optional text fields, or Amazon 2023 metadata)"
        )
    frame = frame.drop(columns=["item_id"], errors="ignore").reset_index(drop=True)
    return frame.assign(raw_item_id=frame["raw_item_id"].map(_raw_id))


def match_catalog(rows: pd.DataFrame, catalog: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with ``existing_item_id``: the catalog's id of the row's raw id, null for a new item."""
    ids = dict(zip(catalog["raw_item_id"].astype(str), catalog["item_id"].astype(int), strict=True))
    return rows.assign(existing_item_id=rows["raw_item_id"].map(ids).astype("Int64"))


@dataclass(frozen=True)
class CatalogUpdate:
    catalog: pd.DataFrame  # the whole updated catalog (CATALOG_COLUMNS), by item id
    rows: pd.DataFrame  # the rows to encode: item_id, raw_item_id, title and their text fields
    added: list[int]  # ids given to new items
    updated: list[int]  # ids of catalog items whose text the update replaces


def plan_update(catalog: pd.DataFrame, matched: pd.DataFrame) -> CatalogUpdate:
    """Ids for the new items (after the catalog's largest, in file order) and the updated catalog; items the
    update does not name keep their row, id and title."""
    new = matched["existing_item_id"].isna().to_numpy()
    start = int(catalog["item_id"].max()) + 1
    ids = matched["existing_item_id"].astype("float").to_numpy(copy=True)
    ids[new] = range(start, start + int(new.sum()))
    rows = matched.drop(columns="existing_item_id").assign(item_id=ids.astype("int64"))
    titles = dict(zip(rows["item_id"], rows["title"].astype(str), strict=True))
    kept = catalog[CATALOG_COLUMNS].assign(
        title=catalog["item_id"].map(lambda i: titles.get(int(i))).fillna(catalog["title"])
    )
    merged = pd.concat([kept, rows.loc[new, CATALOG_COLUMNS]], ignore_index=True)
    return CatalogUpdate(
        catalog=merged.sort_values("item_id").reset_index(drop=True),
        rows=rows,
        added=rows.loc[new, "item_id"].tolist(),
        updated=rows.loc[~new, "item_id"].tolist(),
    )
