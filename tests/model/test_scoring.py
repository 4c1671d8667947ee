"""Rec-head scoring on hand-made vectors."""

import math

import pytest
import torch

from r2ec_pipeline.model.scoring import cosine_scores, mask_items, target_ranks, top_k

TABLE = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [1.0, 1.0]])  # rows = item ids 0..4


def test_cosine_over_temperature_and_item_zero_never_ranked():
    scores = cosine_scores(torch.tensor([[2.0, 0.0]]), TABLE, temperature=0.5)
    assert scores[0, 0] == float("-inf")
    assert torch.allclose(scores[0, 1:], torch.tensor([2.0, 0.0, -2.0, math.sqrt(0.5) / 0.5]))


def test_non_positive_temperature_is_rejected():
    with pytest.raises(ValueError, match="τ must be > 0, got 0"):
        cosine_scores(torch.ones(1, 2), TABLE, 0.0)


def test_history_items_are_masked_and_never_in_top_k():
    scores = cosine_scores(torch.tensor([[1.0, 0.1], [0.0, 1.0]]), TABLE, 1.0)
    mask_items(scores, [[1, 4], []])
    ids, values = top_k(scores, 2)
    assert ids[0].tolist() == [2, 3] and torch.isfinite(values[0]).all()
    assert ids[1, 0].item() == 2


def test_unknown_history_item_is_named():
    with pytest.raises(ValueError, match=r"unknown item ids in history: \[9\] \(catalog has 1..4\)"):
        mask_items(torch.zeros(1, 5), [[9]])


def test_ranks_are_one_based_and_ties_count_against_the_target():
    scores = torch.tensor([[float("-inf"), 0.9, 0.5, 0.5, 0.1]])
    assert target_ranks(scores, torch.tensor([1])).item() == 1
    assert target_ranks(scores, torch.tensor([2])).item() == 3  # tied with item 3: pessimistic
    assert target_ranks(scores, torch.tensor([4])).item() == 4
    constant = torch.tensor([[float("-inf"), 1.0, 1.0, 1.0, 1.0]])
    assert target_ranks(constant, torch.tensor([1])).item() == 4  # a constant scorer ranks its target last
