"""InfoNCE and the ranking metrics against values computed by hand."""

import math

import pytest
import torch

from r2ec_pipeline.metrics import ranking_metrics
from r2ec_pipeline.model.losses import (
    catalog_infonce,
    catalog_target_logprobs,
    in_batch_infonce,
)


def test_infonce_matches_a_hand_computed_softmax():
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    items = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # cosines: row0 = [1, 1/√2], row1 = [0, 1/√2]; τ = 0.5
    row0 = -math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(math.sqrt(2))))
    row1 = -math.log(math.exp(math.sqrt(2)) / (math.exp(0.0) + math.exp(math.sqrt(2))))
    loss = in_batch_infonce(users, items, torch.tensor([7, 8]), temperature=0.5)
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_duplicate_targets_are_not_negatives_of_each_other():
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = in_batch_infonce(users, items, torch.tensor([5, 5]), temperature=0.1)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)  # only the own column is left in each row


def test_sampled_negatives_join_the_softmax():
    users = torch.tensor([[1.0, 0.0]])
    items = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # the negative is as close as the target
    loss = in_batch_infonce(users, items, torch.tensor([3]), 1.0, column_ids=torch.tensor([3, 9]))
    assert loss.item() == pytest.approx(math.log(2.0), rel=1e-6)


TABLE = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0], [1.0, 1.0]])  # row 0: padding; item 2's row is stale


def test_catalog_softmax_matches_a_hand_computed_value():
    users = torch.tensor([[1.0, 0.0]])
    fresh = torch.tensor([[0.0, 3.0]])  # item 2 encoded now: its value is still the bank's (no fresh-vs-stale tell)
    # τ = 1: logits item 1: 1, item 2: cos((1, 0), (5, 5)) = 1/√2, item 3: 1/√2; padding left out
    expected = 1 / math.sqrt(2) - math.log(math.exp(1.0) + 2 * math.exp(1 / math.sqrt(2)))
    value = catalog_target_logprobs(users, fresh, torch.tensor([2]), TABLE, 1.0)
    assert value.item() == pytest.approx(expected, rel=1e-6)
    masked = catalog_target_logprobs(users, fresh, torch.tensor([2]), TABLE, 1.0, masks=[[1, 2]])
    assert masked.item() == pytest.approx(1 / math.sqrt(2) - math.log(2 * math.exp(1 / math.sqrt(2))), rel=1e-6)


def test_catalog_softmax_trains_users_and_fresh_targets_not_the_bank():
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    fresh = torch.tensor([[0.0, 3.0], [1.0, 0.5]], requires_grad=True)
    table = TABLE.clone().requires_grad_(True)
    catalog_infonce(users, fresh, torch.tensor([2, 3]), table, 0.5, masks=[[1], []]).backward()
    assert users.grad.abs().sum() > 0 and fresh.grad.abs().sum() > 0
    assert table.grad is None
    # the fresh encodings' gradient is the one their cosine would get in the target's column: d(−log p)/d logit
    # = p − 1 there, times d cos/d e; checked on one row against autograd of the plain expression
    row_user, row_fresh = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]], requires_grad=True)
    catalog_infonce(row_user, row_fresh, torch.tensor([2]), TABLE, 1.0).backward()
    logits = torch.tensor([1.0, 1 / math.sqrt(2), 1 / math.sqrt(2)])
    p_target = torch.softmax(logits, 0)[1]
    copy = row_fresh.detach().clone().requires_grad_()
    torch.nn.functional.cosine_similarity(row_user, copy).sum().backward()
    torch.testing.assert_close(row_fresh.grad, (p_target - 1) * copy.grad)


def test_ranking_metrics_by_hand_including_rank_k_and_k_plus_one():
    metrics = ranking_metrics([1, 5, 6, 10, 11], ks=(5, 10))
    assert metrics["hit_at_5"] == pytest.approx(2 / 5)
    assert metrics["hit_at_10"] == pytest.approx(4 / 5)
    assert metrics["ndcg_at_5"] == pytest.approx((1 + 1 / math.log2(6)) / 5)
    assert metrics["ndcg_at_10"] == pytest.approx((1 + 1 / math.log2(6) + 1 / math.log2(7) + 1 / math.log2(11)) / 5)
    assert metrics["mrr"] == pytest.approx((1 + 1 / 5 + 1 / 6 + 1 / 10 + 1 / 11) / 5)


def test_ranks_must_be_one_based():
    with pytest.raises(ValueError, match="1-based"):
        ranking_metrics([0, 1])
