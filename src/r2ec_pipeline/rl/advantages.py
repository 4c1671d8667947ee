"""Group-relative advantages over the G reasoning paths of each user (method §5.4)."""

from __future__ import annotations

from typing import Literal

import torch

AdvantageType = Literal["grpo", "rloo"]


# A group whose reward std is at most this fraction of its largest |reward| counts as all-equal. Rounding
# leaves a std of ~1e-8 on equal float32 rewards near 1 (which ÷ (std + ε) would blow up to advantages
# near ±0.4–0.8); relative to the scale, so rewards that all sit near 1e-5 (every path beyond the NDCG
# cutoff: R = β·R_sim) still count as different when they differ.
EQUAL_REWARDS_TOLERANCE = 1e-5


def group_advantages(
    rewards: torch.Tensor, kind: AdvantageType = "grpo", eps: float = 1e-8, tolerance: float = EQUAL_REWARDS_TOLERANCE
) -> torch.Tensor:
    """A_i for rewards of shape (B users × G paths).

    - ``grpo``: A_i = (R_i − mean(R)) / (std(R) + ε), with the unbiased std (÷ G−1);
    - ``rloo``: A_i = R_i − mean of the other G−1 rewards (exact leave-one-out, not the reference
      code's R·(1 + 1/G) − mean).

    A group whose rewards are all equal (std ≤ ``tolerance`` × its largest |reward|) gets exactly zero
    advantage under both, for any G.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (users × paths), got shape {tuple(rewards.shape)}")
    group = rewards.shape[1]
    if group < 2:
        raise ValueError(f"{kind} needs at least 2 paths per user (num_generations), got {group}")
    std = rewards.std(dim=1, unbiased=True, keepdim=True)
    if kind == "grpo":
        advantages = (rewards - rewards.mean(dim=1, keepdim=True)) / (std + eps)
    elif kind == "rloo":
        advantages = rewards - (rewards.sum(dim=1, keepdim=True) - rewards) / (group - 1)
    else:
        raise ValueError(f"unknown advantage_type {kind!r} (expected grpo or rloo)")
    scale = rewards.abs().amax(dim=1, keepdim=True)
    return advantages.masked_fill(std <= tolerance * scale, 0.0)
