"""Baselines: Popularity ranks by training counts; SASRec learns a simple sequential rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from r2ec_pipeline.baselines.popularity import Popularity
from r2ec_pipeline.baselines.sasrec import SASRecSettings, pad_sequences, train_sasrec
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


def test_sequences_keep_the_latest_items_left_padded():
    assert pad_sequences([[1, 2, 3, 4], [7], []], 3).tolist() == [[2, 3, 4], [0, 0, 7], [0, 0, 0]]


def test_sasrec_learns_a_next_item_rule_and_keeps_its_best_epoch():
    # the next item is always (last item mod 20) + 1: a rule only a sequential model can pick up
    rng = np.random.default_rng(0)
    histories, targets = [], []
    for _ in range(600):
        start, length = int(rng.integers(1, 21)), int(rng.integers(1, 6))
        sequence = [(start + step - 1) % 20 + 1 for step in range(length + 1)]
        histories.append(sequence[:-1])
        targets.append(sequence[-1])
    valid_histories, valid_targets = histories[:100], torch.tensor(targets[:100])

    def evaluate(model) -> float:
        with torch.no_grad():
            scores = model(pad_sequences(valid_histories, model.settings.max_length))
        return ndcg_at_k(target_ranks(scores, valid_targets).numpy(), 10)

    settings = SASRecSettings(max_length=8, hidden_size=32, dropout=0.0, batch_size=64, max_epochs=15, patience=3)
    model, log = train_sasrec(20, histories[100:], targets[100:], evaluate, settings)
    assert log[-1]["loss"] < log[0]["loss"], log
    assert evaluate(model) == max(entry["valid_ndcg_at_10"] for entry in log) > 0.9
