"""What a RecPO step's signal looks like (method §5.9): the numbers that tell a run that learns from one that cannot.

- **Groups without signal**: a group whose G rewards are all equal gets zero advantage, so its paths
  teach nothing (``zero_advantage_share``); the mean within-group reward std says how much the paths
  of one user differ at all (``reward_group_std``).
- **How paths end**: by the answer tag, by end of turn, or cut at the length cap (``stop_*_share``), and
  their length.
- **How far the update moved**: the token ratio's spread and clip fraction (``policy_update``), and the
  KL of the rollout policy to the starting policy on the rollout's own tokens (``kl_to_reference``).

Pure functions of tensors, unit-tested by hand; ``rollout_metrics`` aggregates them over the global batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from r2ec_pipeline.model.dual_head_io import ITEM_TABLE_KEY, restore_trainable, trainable_state
from r2ec_pipeline.model.generation import STOP_REASONS, StopReason
from r2ec_pipeline.rl.distributed import Collective
from r2ec_pipeline.rl.losses import kl_penalty
from r2ec_pipeline.rl.policy import policy_forward

if TYPE_CHECKING:
    from r2ec_pipeline.model.dual_head import R2ecModel
    from r2ec_pipeline.rl.step import Rollout


def zero_advantage_groups(advantages: torch.Tensor) -> torch.Tensor:
    """Per group (users × G → users), 1.0 where every path's advantage is exactly zero (equal rewards)."""
    return (advantages == 0).all(dim=1).float()


def group_reward_std(rewards: torch.Tensor) -> torch.Tensor:
    """Per group (users × G → users), the unbiased std of its rewards: the spread GRPO normalises by."""
    return rewards.std(dim=1, unbiased=True)


def stop_codes(reasons: Sequence[StopReason], device: torch.device | None = None) -> torch.Tensor:
    """Each path's stop reason as its index in ``STOP_REASONS`` (tag 0, end_of_turn 1, length 2)."""
    return torch.tensor([STOP_REASONS.index(reason) for reason in reasons], device=device)


def ratio_sums(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ r_t and Σ r_t² over the real completion tokens (summable over micro-batches and processes)."""
    ratio = torch.exp(logprobs.detach() - old_logprobs) * mask
    return ratio.sum(), (ratio * ratio).sum()


def spread(total: float, squares: float, count: float) -> float:
    """Population std from a sum, a sum of squares and a count (0 for fewer than one value)."""
    if count < 1:
        return 0.0
    mean = total / count
    return max(squares / count - mean * mean, 0.0) ** 0.5


def rollout_metrics(paths: Rollout, collective: Collective | None = None) -> dict[str, float]:
    """Reward, advantage, signal and completion statistics of the global batch."""
    collective = collective or Collective()
    rewards = collective.gather_values(paths.rewards.flatten())
    lengths = collective.gather_values(paths.mask.sum(dim=1))
    reasons = collective.gather_values(stop_codes(paths.stop_reasons, lengths.device))
    return {
        "reward_mean": rewards.mean().item(),
        "reward_std": rewards.std().item(),
        "reward_rank": collective.gather_values(paths.rank_part).mean().item(),
        "reward_sim": collective.gather_values(paths.sim_part).mean().item(),
        "reward_group_std": collective.gather_values(group_reward_std(paths.rewards)).mean().item(),
        "zero_advantage_share": collective.gather_values(zero_advantage_groups(paths.advantages)).mean().item(),
        "advantage_std": collective.gather_values(paths.advantages.flatten()).std().item(),
        "completion_length": lengths.float().mean().item(),
        **{f"stop_{reason}_share": (reasons == code).float().mean().item() for code, reason in enumerate(STOP_REASONS)},
    }


@torch.no_grad()
def kl_to_reference(
    model: R2ecModel,
    prompts: Sequence[str],
    paths: Rollout,
    reference: dict[str, torch.Tensor],
    group: int,
    temperature: float,
    chunk_tokens: int,
    collective: Collective | None = None,
) -> float:
    """KL(π_rollout ‖ π_reference) per completion token (k3 estimator) on the rollout's own tokens.

    ``reference`` is a ``trainable_state`` (the starting policy's adapters): they are put in for one
    forward pass without gradient, then the current weights go back bit for bit. The rollout policy's
    log-probs are the ones the rollout kept, so the estimate costs that one forward pass.
    """
    collective = collective or Collective()
    table = model.item_table  # the forward pass reads no item row: the live table stays in place, uncopied
    current = {**trainable_state(model, with_table=False), ITEM_TABLE_KEY: table}
    was_training = model.lm.training
    model.lm.eval()
    try:
        restore_trainable(model, {**reference, ITEM_TABLE_KEY: table}, "the starting policy")
        ref_logprobs, _ = policy_forward(model, prompts, paths.token_ids, group, temperature, chunk_tokens)
    finally:
        restore_trainable(model, current)
        model.lm.train(was_training)
    width = ref_logprobs.shape[1]
    mask = paths.mask[:, :width]
    tokens = collective.total(mask.sum())
    kl = kl_penalty(paths.old_logprobs[:, :width], ref_logprobs, mask, denominator=tokens)
    return collective.total(kl).item()
