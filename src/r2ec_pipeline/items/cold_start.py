"""The cold-start protocol: the catalog's newest items held out of training, and ids across two catalogs.

An item's age is its first interaction. The newest ``fraction`` of the items (ties broken by item id)
are held out: the models train on the interactions and catalog without them, re-numbered 1..N' in the
original order, which is the catalog a model trained before those items existed would have had. A
catalog update later gives them the ids after N'. The same raw item then has one id per catalog, so the
evaluation maps histories and targets by ``raw_item_id``. Plain pandas, no Kedro.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class HeldOut:
    interactions: pd.DataFrame  # every interaction but the held-out items', their item ids re-numbered
    items: pd.DataFrame  # the catalog without the held-out items, re-numbered 1..N' in the old order
    held_out: pd.DataFrame  # the held-out items' catalog rows, with their original ids


def newest_items(interactions: pd.DataFrame, fraction: float) -> list[int]:
    """The ``ceil(fraction · items)`` items whose first interaction is the latest (ties: the larger id is
    newer), over the items that have an interaction; sorted by id."""
    if not 0 < fraction < 1:
        raise ValueError(f"the held-out fraction must lie strictly between 0 and 1, got {fraction}")
    first = interactions.groupby("item_id", sort=True)["timestamp"].min().reset_index()
    order = first.sort_values(["timestamp", "item_id"], kind="stable")
    return sorted(order["item_id"].tail(math.ceil(fraction * len(order))).astype(int).tolist())


def hold_out(interactions: pd.DataFrame, items: pd.DataFrame, item_ids: list[int]) -> HeldOut:
    """Interactions and catalog without ``item_ids``, the kept items re-numbered 1..N' in their old order."""
    held = items["item_id"].isin(item_ids)
    unknown = sorted(set(item_ids) - set(items["item_id"].astype(int)))
    if unknown:
        raise ValueError(f"held-out item ids not in the catalog: {unknown[:10]}")
    kept = items[~held].sort_values("item_id", kind="stable")
    ids = dict(zip(kept["item_id"].astype(int), range(1, len(kept) + 1), strict=True))
    rows = interactions[~interactions["item_id"].isin(item_ids)]
    return HeldOut(
        interactions=rows.assign(item_id=rows["item_id"].map(ids).astype("int64")).reset_index(drop=True),
        items=kept.assign(item_id=kept["item_id"].map(ids).astype("int64")).reset_index(drop=True),
        held_out=items[held].sort_values("item_id", kind="stable").reset_index(drop=True),
    )


def id_map(source: pd.DataFrame, target: pd.DataFrame) -> dict[int, int]:
    """Each ``source`` item id → the id of the same raw item in ``target`` (both catalogs: item_id, raw_item_id)."""
    by_raw = dict(zip(target["raw_item_id"].astype(str), target["item_id"].astype(int), strict=True))
    missing = sorted(set(source["raw_item_id"].astype(str)) - set(by_raw))
    if missing:
        raise ValueError(f"{len(missing)} raw item id(s) missing from the target catalog, e.g. {missing[:5]}")
    return {int(i): by_raw[str(raw)] for i, raw in zip(source["item_id"], source["raw_item_id"], strict=True)}


def remap_samples(samples: pd.DataFrame, ids: dict[int, int]) -> pd.DataFrame:
    """``samples`` with their target and history item ids in another catalog's ids (prompts unchanged)."""
    return samples.assign(
        target_item_id=samples["target_item_id"].astype(int).map(ids).astype("int64"),
        history_item_ids=[[ids[int(i)] for i in history] for history in samples["history_item_ids"]],
    )


def remap_interactions(interactions: pd.DataFrame, ids: dict[int, int]) -> pd.DataFrame:
    """``interactions`` with their item ids in another catalog's ids (order and everything else unchanged)."""
    return interactions.assign(item_id=interactions["item_id"].astype(int).map(ids).astype("int64"))
