"""The cold-start split: the newest items by first interaction, held out and re-numbered; ids across catalogs."""

from __future__ import annotations

import pandas as pd
import pytest

from r2ec_pipeline.items.cold_start import (
    hold_out,
    id_map,
    newest_items,
    remap_interactions,
    remap_samples,
)

# first interactions: item 1 at 10, item 3 at 20, items 2 and 4 at 30 (a tie: the larger id is newer)
INTERACTIONS = pd.DataFrame(
    {
        "user_id": [1, 1, 1, 2, 2, 2],
        "item_id": [1, 3, 2, 1, 4, 3],
        "timestamp": [10, 20, 30, 15, 30, 40],
        "rating": [5.0, 4.0, 3.0, 2.0, 1.0, 5.0],
    }
)
ITEMS = pd.DataFrame({"item_id": [1, 2, 3, 4], "raw_item_id": ["a", "b", "c", "d"], "title": ["A", "B", "C", "D"]})


@pytest.mark.parametrize(("fraction", "newest"), [(0.25, [4]), (0.5, [2, 4]), (0.6, [2, 3, 4]), (0.01, [4])])
def test_the_newest_items_are_those_first_seen_last(fraction: float, newest: list[int]):
    assert newest_items(INTERACTIONS, fraction) == newest  # ceil(fraction × 4) items


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_a_fraction_outside_0_1_is_refused(fraction: float):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        newest_items(INTERACTIONS, fraction)


def test_held_out_items_leave_training_and_the_rest_is_renumbered_in_order():
    split = hold_out(INTERACTIONS, ITEMS, [2, 4])
    assert split.items[["item_id", "raw_item_id"]].values.tolist() == [[1, "a"], [2, "c"]]  # 3 → 2
    assert split.held_out[["item_id", "raw_item_id"]].values.tolist() == [[2, "b"], [4, "d"]]  # original ids
    assert split.interactions[["user_id", "item_id", "timestamp"]].values.tolist() == [
        [1, 1, 10],
        [1, 2, 20],
        [2, 1, 15],
        [2, 2, 40],
    ]
    with pytest.raises(ValueError, match=r"not in the catalog: \[9\]"):
        hold_out(INTERACTIONS, ITEMS, [9])


def test_ids_map_across_catalogs_by_raw_id():
    # after the catalog update: the two kept items 1..2, the held-out ones after them in file order
    updated = pd.DataFrame({"item_id": [1, 2, 3, 4], "raw_item_id": ["a", "c", "b", "d"]})
    ids = id_map(ITEMS, updated)
    assert ids == {1: 1, 2: 3, 3: 2, 4: 4}
    samples = pd.DataFrame({"user_id": [1], "target_item_id": [2], "history_item_ids": [[1, 3]], "prompt": ["p"]})
    mapped = remap_samples(samples, ids)
    assert (mapped["target_item_id"].tolist(), mapped["history_item_ids"].tolist()) == ([3], [[1, 2]])
    assert mapped["prompt"].tolist() == ["p"]
    assert remap_interactions(INTERACTIONS, ids)["item_id"].tolist() == [1, 2, 3, 1, 4, 2]
    with pytest.raises(ValueError, match="1 raw item id"):
        id_map(ITEMS, updated[updated["raw_item_id"] != "d"])
