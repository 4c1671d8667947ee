"""RecPO's clipped policy losses (method §5.5–5.7).

Ratios are r = exp(log π_θ − log π_rollout). The clipped objective per unit is
−min(r·A, clip(r, 1 − ε_low, 1 + ε_high)·A): the gradient vanishes once r leaves the trust region in the
direction the advantage favours.
"""

from __future__ import annotations

from typing import Literal

import torch

LossType = Literal["token_mean", "sequence_mean"]


def _clipped(ratio: torch.Tensor, advantage: torch.Tensor, eps_low: float, eps_high: float) -> torch.Tensor:
    return -torch.minimum(ratio * advantage, ratio.clamp(1.0 - eps_low, 1.0 + eps_high) * advantage)


def clipped_token_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    loss_type: LossType = "token_mean",
    denominator: torch.Tensor | float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token loss over all completion tokens (paths × T, ``mask`` marks real tokens incl. ``<answer>``).

    ``token_mean`` averages over every completion token of the batch (long paths weigh more):
    Σ loss_t / Σ mask; ``sequence_mean`` averages each path's tokens first, then the paths.
    ``denominator`` replaces the local count (tokens or paths) by the global batch's, when the batch
    is split over processes. Returns (loss, number of clipped tokens).
    """
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp(logprobs - old_logprobs)
    per_token = _clipped(ratio, advantages.view(-1, 1), eps_low, eps_high) * mask
    if loss_type == "token_mean":
        total, count = per_token.sum(), mask.sum()
    elif loss_type == "sequence_mean":
        total, count = (per_token.sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)).sum(), torch.tensor(float(len(mask)))
    else:
        raise ValueError(f"unknown loss_type {loss_type!r} (expected token_mean or sequence_mean)")
    loss = total / torch.as_tensor(count if denominator is None else denominator).clamp(min=1.0)
    clipped = ((ratio < 1.0 - eps_low) | (ratio > 1.0 + eps_high)).to(mask.dtype) * mask
    return loss, clipped.sum().detach()


def best_paths(advantages: torch.Tensor, topk: int = 1) -> torch.Tensor:
    """Boolean mask (users × G) of each group's ``relabel_topk`` paths with the highest advantage."""
    if not 1 <= topk <= advantages.shape[1]:
        raise ValueError(f"relabel_topk must be in 1..{advantages.shape[1]}, got {topk}")
    chosen = advantages.topk(topk, dim=1).indices
    return torch.zeros_like(advantages, dtype=torch.bool).scatter(1, chosen, True)


def clipped_item_loss(
    target_logprobs: torch.Tensor,
    old_target_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    selected: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    denominator: torch.Tensor | float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Item loss on the selected (best) paths only: the clipped form on p(v⁺)'s ratio, weighted by A.

    All inputs are (users × G); ``target_logprobs`` is log p(v⁺) under the in-batch softmax now, and
    ``old_target_logprobs`` the same at rollout time. Paths not selected contribute nothing; the sum
    is divided by the number of selected paths (``denominator``: of the global batch). Returns (loss,
    number of selected paths whose ratio is outside the trust region).
    """
    ratio = torch.exp(target_logprobs - old_target_logprobs)
    per_path = _clipped(ratio, advantages, eps_low, eps_high)
    weight = selected.to(per_path.dtype)
    count = weight.sum() if denominator is None else denominator
    clipped = ((ratio < 1.0 - eps_low) | (ratio > 1.0 + eps_high)).to(weight.dtype) * weight
    return (per_path * weight).sum() / torch.as_tensor(count).clamp(min=1.0), clipped.sum().detach()


def kl_penalty(
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    denominator: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Mean per-token KL(π_θ ‖ π_ref) with the k3 estimator: exp(ref − θ) − (ref − θ) − 1 (≥ 0)."""
    delta = ref_logprobs - logprobs
    per_token = (torch.exp(delta) - delta - 1.0) * mask.to(logprobs.dtype)
    count = mask.sum() if denominator is None else denominator
    return per_token.sum() / torch.as_tensor(count).clamp(min=1.0)
