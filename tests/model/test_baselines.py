"""Baselines: Popularity ranks by training counts; SASRec learns a simple sequential rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from r2ec_pipeline.baselines.popularity import Popularity
from r2ec_pipeline.baselines.sasrec import (
    SASRec,
    catalog_scores,
    pad_sequences,
    sasrec_scores,
    train_sasrec,
    training_windows,
)
from r2ec_pipeline.config import SASRecParams
from r2ec_pipeline.metrics import ndcg_at_k
from r2ec_pipeline.model.scoring import mask_items, target_ranks


def test_popularity_ranks_by_count_and_never_ranks_padding():
    model = Popularity.fit([3, 3, 3, 1, 1, 2], num_items=4)
    scores = model.score([[], [3]])
    assert scores.shape == (2, 5) and torch.isinf(scores[:, 0]).all()
    ranks = target_ranks(mask_items(scores, [[], [3]]), torch.tensor([3, 1]))
    assert ranks.tolist() == [1, 1]  # item 3 is most popular; with 3 masked, item 1 leads
    with pytest.raises(ValueError, match=r"1\.\.4"):
        Popularity.fit([0, 5], num_items=4)


def test_popularity_from_saved_counts_gives_items_added_after_training_a_count_of_0():
    counts = pd.DataFrame({"item_id": [1, 2, 3], "count": [5, 0, 2]})
    assert Popularity.from_counts(counts).counts.tolist() == [0, 5, 0, 2]
    scores = Popularity.from_counts(counts, num_items=5).score([[]])
    assert scores[0, 1:].tolist() == [5, 0, 2, 0, 0] and torch.isinf(scores[0, 0])
    # pessimistic ties: a new item (count 0) ranks behind every counted item and every other count of 0
    assert target_ranks(scores, torch.tensor([4])).tolist() == [5]


def test_sasrec_over_a_grown_catalog_ranks_unseen_items_last_and_ignores_them_in_histories():
    torch.manual_seed(0)
    model = SASRec(3, SASRecParams(hidden_size=8, num_heads=2, max_length=4)).eval()
    scores = catalog_scores(model, [[1, 4, 2], [5, 3]], num_items=5)
    assert scores.shape == (2, 6) and torch.isinf(scores[:, 4:]).all()
    assert torch.equal(scores[:, :4], sasrec_scores(model, [[1, 2], [3]]))  # items 4, 5 left out of its input
    assert target_ranks(scores, torch.tensor([4, 5])).tolist() == [5, 5]


def test_sequences_keep_the_latest_items_left_padded():
    assert pad_sequences([[1, 2, 3, 4], [7], []], 3).tolist() == [[2, 3, 4], [0, 0, 7], [0, 0, 0]]


def test_training_windows_label_every_item_but_the_first_once():
    inputs, labels = training_windows([[1, 2, 3, 4, 5, 6], [7], [8, 9]], max_length=3)
    assert inputs.tolist() == [[3, 4, 5], [0, 1, 2], [0, 0, 8]]  # [7] alone has nothing to predict
    assert labels.tolist() == [[4, 5, 6], [0, 2, 3], [0, 0, 9]]


def test_sasrec_learns_a_next_item_rule_and_keeps_its_best_epoch():
    # the next item is always (last item mod 20) + 1: a rule only a sequential model can pick up
    rng = np.random.default_rng(0)
    sequences = []
    for _ in range(600):
        start, length = int(rng.integers(1, 21)), int(rng.integers(2, 7))
        sequences.append([(start + step - 1) % 20 + 1 for step in range(length)])
    valid_histories = [sequence[:-1] for sequence in sequences[:100]]
    valid_targets = torch.tensor([sequence[-1] for sequence in sequences[:100]])

    def evaluate(model) -> float:
        with torch.no_grad():
            scores = model(pad_sequences(valid_histories, model.settings.max_length))
        return ndcg_at_k(target_ranks(scores, valid_targets).numpy(), 10)

    settings = SASRecParams(max_length=8, hidden_size=32, dropout=0.0, batch_size=64, max_epochs=15, patience=3)
    model, log = train_sasrec(20, sequences[100:], evaluate, settings)
    assert log[-1]["loss"] < log[0]["loss"], log
    assert evaluate(model) == max(entry["valid_ndcg_at_10"] for entry in log) > 0.9
