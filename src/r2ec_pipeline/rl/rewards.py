"""RecPO's fused reward (method §5.3): how well the rec head ranks the target after a reasoning path."""

from __future__ import annotations

from typing import Literal

import torch

RewardType = Literal["fused", "rank_only", "sim_only"]


def rank_reward(ranks: torch.Tensor, cutoff: int = 1000) -> torch.Tensor:
    """R_rank = NDCG@K_r of the single target: 1 / log2(rank + 1) if rank ≤ K_r, else 0 (ranks 1-based)."""
    if cutoff < 1:
        raise ValueError(f"ndcg_cutoff must be >= 1, got {cutoff}")
    ranks = ranks.double()
    return torch.where(ranks <= cutoff, 1.0 / torch.log2(ranks + 1.0), torch.zeros_like(ranks))


def similarity_reward(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """R_sim = softmax over all items of s(·) (= cos/τ, masked items at −inf), taken at the target."""
    return torch.softmax(scores.double(), dim=-1).gather(1, targets.view(-1, 1)).squeeze(1)


def fused_reward(
    rank: torch.Tensor, similarity: torch.Tensor, beta: float = 0.05, reward_type: RewardType = "fused"
) -> torch.Tensor:
    """R = (1 − β)·R_rank + β·R_sim (``fused``), or one part alone (``rank_only``, ``sim_only``)."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"reward_beta must be in [0, 1], got {beta}")
    if reward_type == "fused":
        return (1.0 - beta) * rank + beta * similarity
    if reward_type == "rank_only":
        return rank.clone()
    if reward_type == "sim_only":
        return similarity.clone()
    raise ValueError(f"unknown reward_type {reward_type!r} (expected fused, rank_only or sim_only)")
