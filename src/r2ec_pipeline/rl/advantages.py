"""Group-relative advantages over the G reasoning paths of each user (spec §5.4)."""

from __future__ import annotations

from typing import Literal

import torch

AdvantageType = Literal["grpo", "rloo"]


def group_advantages(rewards: torch.Tensor, kind: AdvantageType = "grpo", eps: float = 1e-8) -> torch.Tensor:
    """A_i for rewards of shape (B users × G paths).

    - ``grpo``: A_i = (R_i − mean(R)) / (std(R) + ε), with the unbiased std (÷ G−1);
    - ``rloo``: A_i = R_i − mean of the other G−1 rewards (exact leave-one-out, not the reference
      code's R·(1 + 1/G) − mean).

    A group whose rewards are all equal gets exactly zero advantage under both.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (users × paths), got shape {tuple(rewards.shape)}")
    group = rewards.shape[1]
    if group < 2:
        raise ValueError(f"{kind} needs at least 2 paths per user (num_generations), got {group}")
    mean = rewards.mean(dim=1, keepdim=True)
    if kind == "grpo":
        centred = rewards - mean
        return centred / (rewards.std(dim=1, unbiased=True, keepdim=True) + eps)
    if kind == "rloo":
        others = (rewards.sum(dim=1, keepdim=True) - rewards) / (group - 1)
        return rewards - others
    raise ValueError(f"unknown advantage_type {kind!r} (expected grpo or rloo)")
