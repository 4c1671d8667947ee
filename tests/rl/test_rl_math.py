"""RecPO's math against values computed by hand (issue 4's unit-test list)."""

import math

import pytest
import torch

from r2ec_pipeline.rl import (
    best_paths,
    clipped_item_loss,
    clipped_token_loss,
    fused_reward,
    group_advantages,
    kl_penalty,
    rank_reward,
    similarity_reward,
)


def test_rank_reward_is_one_at_rank_one_and_zero_beyond_the_cutoff():
    rewards = rank_reward(torch.tensor([1, 3, 1000, 1001]), cutoff=1000)
    assert rewards[0].item() == 1.0
    assert rewards[1].item() == pytest.approx(1 / math.log2(4))  # 0.5
    assert rewards[2].item() == pytest.approx(1 / math.log2(1001))
    assert rewards[3].item() == 0.0


def test_similarity_reward_is_the_softmax_at_the_target_with_masked_items_excluded():
    scores = torch.tensor([[float("-inf"), 1.0, 2.0, float("-inf")]])
    expected = math.exp(2.0) / (math.exp(1.0) + math.exp(2.0))
    assert similarity_reward(scores, torch.tensor([2])).item() == pytest.approx(expected)


def test_fused_is_one_minus_beta_rank_plus_beta_sim_and_the_variants():
    rank, sim = torch.tensor([0.5, 0.0]), torch.tensor([0.2, 0.8])
    assert torch.allclose(fused_reward(rank, sim, beta=0.05), torch.tensor([0.95 * 0.5 + 0.05 * 0.2, 0.05 * 0.8]))
    assert torch.equal(fused_reward(rank, sim, reward_type="rank_only"), rank)
    assert torch.equal(fused_reward(rank, sim, reward_type="sim_only"), sim)
    with pytest.raises(ValueError, match="reward_beta must be in \\[0, 1\\], got 1.5"):
        fused_reward(rank, sim, beta=1.5)
    with pytest.raises(ValueError, match="unknown reward_type 'ndcg'"):
        fused_reward(rank, sim, reward_type="ndcg")


@pytest.mark.parametrize("kind", ["grpo", "rloo"])
@pytest.mark.parametrize(("group", "rank"), [(3, 5), (4, 5), (5, 16), (8, 4)])
def test_equal_rewards_give_exactly_zero_advantage_for_any_group_size(kind, group, rank):
    # G equal rank rewards 1/log2(rank + 1): rounding leaves a std of ~1e-8, which ÷ (std + 1e-8) once
    # turned into advantages of about ±0.5 for these (G, rank) pairs
    rewards = torch.full((2, group), 1 / math.log2(rank + 1))
    rewards[1, 0] = 1.0
    advantages = group_advantages(rewards, kind)
    assert torch.equal(advantages[0], torch.zeros(group))
    assert advantages[1, 0] > 0 and advantages[1, 1:].abs().min() > 0


def test_small_rewards_that_differ_keep_their_advantages():
    # every path beyond the NDCG cutoff: R = β·R_sim ≈ 1e-5; std 6.45e-7 < the old absolute 1e-6 zeroed the group
    rewards = torch.tensor([[1.00e-5, 1.05e-5, 1.10e-5, 1.15e-5], [2e-5, 2e-5, 2e-5, 2e-5]])
    advantages = group_advantages(rewards, "grpo")
    std = math.sqrt(((0.75e-6) ** 2 + (0.25e-6) ** 2) * 2 / 3)  # unbiased, by hand
    expected = torch.tensor([-0.75e-6, -0.25e-6, 0.25e-6, 0.75e-6]) / (std + 1e-8)  # ε = 1e-8
    assert torch.allclose(advantages[0], expected, atol=1e-3)
    assert torch.equal(advantages[1], torch.zeros(4))  # equal small rewards are still a tie


def test_grpo_uses_the_unbiased_std():
    advantages = group_advantages(torch.tensor([[1.0, 2.0, 3.0]]), "grpo")
    # mean 2, unbiased std 1 → (−1, 0, 1)
    assert torch.allclose(advantages, torch.tensor([[-1.0, 0.0, 1.0]]), atol=1e-6)


def test_rloo_is_exact_leave_one_out_on_a_hand_example():
    advantages = group_advantages(torch.tensor([[1.0, 2.0, 3.0, 6.0]]), "rloo")
    # A_1 = 1 − (2+3+6)/3 = −8/3; A_2 = 2 − 10/3; A_3 = 3 − 3 = 0; A_4 = 6 − 2 = 4
    assert torch.allclose(advantages, torch.tensor([[-8 / 3, 2 - 10 / 3, 0.0, 4.0]]), atol=1e-6)


def test_one_path_per_user_is_refused():
    with pytest.raises(ValueError, match="at least 2 paths per user"):
        group_advantages(torch.tensor([[1.0], [2.0]]), "grpo")


def _token_loss_at(ratio: float, advantage: float):
    logprob = torch.tensor([[math.log(ratio)]], requires_grad=True)
    loss, clipped = clipped_token_loss(logprob, torch.zeros(1, 1), torch.tensor([advantage]), torch.ones(1, 1))
    loss.backward()
    return loss.item(), logprob.grad.item(), clipped.item()


@pytest.mark.parametrize(
    ("ratio", "advantage", "clipped"),
    [
        (1.27, 1.0, False),
        (1.29, 1.0, True),  # upper bound 1 + ε_high = 1.28 binds for A > 0
        (0.81, -1.0, False),
        (0.79, -1.0, True),  # lower bound 1 − ε_low = 0.8 binds for A < 0
        (0.5, 1.0, False),
        (2.0, -1.0, False),  # the other side is never clipped (min keeps r·A)
    ],
)
def test_clipping_engages_exactly_beyond_the_bounds(ratio, advantage, clipped):
    loss, gradient, _ = _token_loss_at(ratio, advantage)
    if clipped:
        assert gradient == 0.0
        bound = 1.28 if advantage > 0 else 0.8
        assert loss == pytest.approx(-bound * advantage)
    else:
        assert gradient != 0.0
        assert loss == pytest.approx(-ratio * advantage)


def test_clip_count_counts_tokens_outside_the_trust_region():
    logprobs = torch.log(torch.tensor([[1.0, 1.5, 0.5, 1.0]]))
    _, clipped = clipped_token_loss(logprobs, torch.zeros(1, 4), torch.tensor([1.0]), torch.ones(1, 4))
    assert clipped.item() == 2.0


@pytest.mark.parametrize("loss_type", ["token_mean", "sequence_mean"])
def test_halves_with_the_global_denominator_add_up_to_the_whole_batch(loss_type):
    # what two processes compute: each its own paths, divided by the whole batch's count
    torch.manual_seed(0)
    logprobs, old = torch.randn(4, 3), torch.randn(4, 3)
    mask = torch.tensor([[1.0, 0, 0], [1, 1, 0], [1, 1, 1], [1, 0, 0]])
    advantages = torch.tensor([1.0, -0.5, 2.0, -1.0])
    whole, _ = clipped_token_loss(logprobs, old, advantages, mask, loss_type=loss_type)
    count = mask.sum() if loss_type == "token_mean" else 4.0
    halves = [
        clipped_token_loss(
            logprobs[rows], old[rows], advantages[rows], mask[rows], loss_type=loss_type, denominator=count
        )[0]
        for rows in (slice(0, 2), slice(2, 4))
    ]
    assert (halves[0] + halves[1]).item() == pytest.approx(whole.item())


def test_token_mean_and_sequence_mean_differ_on_ragged_lengths():
    # ratio 1 everywhere, so each token's loss is −A. Path 1: 1 token, A = 1; path 2: 3 tokens, A = 2.
    mask = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    zeros, advantages = torch.zeros(2, 3), torch.tensor([1.0, 2.0])
    token_mean, _ = clipped_token_loss(zeros, zeros, advantages, mask, loss_type="token_mean")
    sequence_mean, _ = clipped_token_loss(zeros, zeros, advantages, mask, loss_type="sequence_mean")
    assert token_mean.item() == pytest.approx(-(1 + 2 * 3) / 4)  # −7/4
    assert sequence_mean.item() == pytest.approx(-(1 + 2) / 2)  # −3/2


def test_zero_advantage_group_gives_no_gradient():
    logprobs = torch.randn(2, 3, requires_grad=True)
    loss, _ = clipped_token_loss(logprobs, logprobs.detach() - 0.1, torch.zeros(2), torch.ones(2, 3))
    loss.backward()
    assert torch.equal(logprobs.grad, torch.zeros(2, 3))


def test_item_loss_touches_only_the_best_paths():
    advantages = torch.tensor([[0.5, -1.0, 1.5, -1.0]])
    selected = best_paths(advantages, topk=1)
    assert selected.tolist() == [[False, False, True, False]]
    target_logprobs = torch.zeros(1, 4, requires_grad=True)
    loss, clipped = clipped_item_loss(target_logprobs, torch.zeros(1, 4), advantages, selected)
    loss.backward()
    assert clipped.item() == 0
    assert loss.item() == pytest.approx(-1.5)  # ratio 1 on the one selected path: −A
    assert target_logprobs.grad[0].nonzero().flatten().tolist() == [2]
    assert best_paths(advantages, topk=2).tolist() == [[True, False, True, False]]


def test_item_clip_count_covers_selected_paths_outside_the_trust_region_only():
    # ratios e^0.5 ≈ 1.65 (outside 1 + 0.28), e^-0.5 ≈ 0.61 (outside 1 − 0.2), e^0.1 ≈ 1.11 (inside), e^1 (not selected)
    new = torch.tensor([[0.5, -0.5, 0.1, 1.0]])
    selected = torch.tensor([[True, True, True, False]])
    loss, clipped = clipped_item_loss(new, torch.zeros(1, 4), torch.tensor([[1.0, 1.0, -1.0, 2.0]]), selected)
    assert clipped.item() == 2
    # by hand, divided by the 3 selected paths: A=1, r=1.65 → −min(1.65, 1.28) = −1.28;
    # A=1, r=0.61 → −min(0.61, 0.8) = −0.61; A=−1, r=1.11 → −min(−1.11, −1.11) = 1.11
    expected = (-1.28 - math.exp(-0.5) + math.exp(0.1)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_kl_penalty_is_zero_for_identical_policies_and_positive_otherwise():
    logprobs, mask = torch.tensor([[-1.0, -2.0]]), torch.ones(1, 2)
    assert kl_penalty(logprobs, logprobs, mask).item() == 0.0
    delta = 0.5
    expected = (math.exp(delta) - delta - 1) / 2
    assert kl_penalty(logprobs, logprobs + torch.tensor([[delta, 0.0]]), mask).item() == pytest.approx(expected)
