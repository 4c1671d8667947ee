"""The baselines pipeline's Popularity node: training counts per catalog item, by hand."""

import pandas as pd
import pytest

from r2ec_pipeline.pipelines.baselines.nodes import fit_popularity


def test_fit_popularity_counts_every_training_interaction_and_gives_unseen_items_zero():
    sequences = pd.DataFrame({"user_id": [1, 2], "item_ids": [[3, 3, 1], [1, 2]]})
    items = pd.DataFrame({"item_id": [1, 2, 3, 4, 5], "title": list("abcde")})
    table = fit_popularity(sequences, items)
    assert table.to_dict("list") == {"item_id": [1, 2, 3, 4, 5], "count": [2, 1, 2, 0, 0]}
    assert table["count"].dtype.kind == "i"


def test_fit_popularity_refuses_an_item_outside_the_catalog():
    sequences = pd.DataFrame({"user_id": [1], "item_ids": [[1, 7]]})
    with pytest.raises(ValueError, match=r"item ids must lie in 1\.\.3, found 1\.\.7"):
        fit_popularity(sequences, pd.DataFrame({"item_id": [1, 2, 3]}))
