"""RecPO's signal diagnostics (method §5.9), each against values computed by hand."""

import pytest
import torch

from r2ec_pipeline.model.dual_head_io import trainable_state
from r2ec_pipeline.rl.advantages import group_advantages
from r2ec_pipeline.rl.diagnostics import (
    group_reward_std,
    kl_to_reference,
    ratio_sums,
    spread,
    stop_codes,
    zero_advantage_groups,
)
from r2ec_pipeline.rl.step import rollout
from tests.rl.toy_task import SETTINGS, toy_batch, toy_model


def test_a_group_of_equal_rewards_counts_as_zero_advantage_and_a_group_that_differs_does_not():
    rewards = torch.tensor([[0.3, 0.3, 0.3, 0.3], [0.0, 0.0, 0.0, 1.0], [0.2, 0.2, 0.2, 0.2]])
    advantages = group_advantages(rewards, "grpo")
    assert zero_advantage_groups(advantages).tolist() == [1.0, 0.0, 1.0]
    assert zero_advantage_groups(advantages).mean().item() == pytest.approx(2 / 3)


def test_group_reward_std_is_the_unbiased_std_of_each_group():
    rewards = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5]])
    # mean 0.25; squared deviations 3 × 0.0625 + 0.5625 = 0.75; ÷ (4 − 1) = 0.25; √ = 0.5
    assert group_reward_std(rewards).tolist() == pytest.approx([0.5, 0.0])


def test_a_path_cut_at_the_cap_counts_as_truncated():
    codes = stop_codes(["tag", "length", "end_of_turn", "length"])
    assert codes.tolist() == [0, 2, 1, 2]
    assert (codes == 2).float().mean().item() == 0.5  # stop_length_share


def test_ratio_spread_over_real_tokens_only():
    logprobs = torch.log(torch.tensor([[1.0, 2.0, 5.0], [1.0, 3.0, 7.0]]))
    old = torch.zeros(2, 3)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])  # the 5 is padding
    total, squares = ratio_sums(logprobs, old, mask)
    assert total.item() == pytest.approx(1 + 2 + 1 + 3 + 7)
    assert squares.item() == pytest.approx(1 + 4 + 1 + 9 + 49)
    # ratios 1, 2, 1, 3, 7: mean 2.8, population variance (64 / 5) − 2.8² = 12.8 − 7.84 = 4.96
    assert spread(total.item(), squares.item(), 5) == pytest.approx(4.96**0.5)
    assert spread(5.0, 5.0, 5) == 0.0 and spread(0.0, 0.0, 0) == 0.0


def test_kl_to_the_starting_policy_is_zero_at_the_start_positive_after_a_move_and_leaves_the_weights(
    tiny_backbone_dir, tmp_path
):
    model = toy_model(tiny_backbone_dir, tmp_path)
    start, batch = trainable_state(model), toy_batch()
    paths = rollout(model, batch, SETTINGS, torch.Generator().manual_seed(0))
    kl = kl_to_reference(model, batch.prompts, paths, start, SETTINGS.num_generations, SETTINGS.temperature, 4096)
    assert kl == pytest.approx(0.0, abs=1e-5)
    with torch.no_grad():
        for parameter in (p for p in model.lm.parameters() if p.requires_grad):
            parameter.add_(0.5 * torch.randn_like(parameter))
    moved = trainable_state(model)
    paths = rollout(model, batch, SETTINGS, torch.Generator().manual_seed(0))
    assert (
        kl_to_reference(model, batch.prompts, paths, start, SETTINGS.num_generations, SETTINGS.temperature, 4096) > 1e-3
    )
    after = trainable_state(model)
    assert all(torch.equal(after[name], moved[name]) for name in moved)  # the current weights came back bit for bit
