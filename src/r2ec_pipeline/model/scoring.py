"""The recommendation head's scoring (method §3), as pure tensor functions.

Scores are indexed by item id: column v is item v, column 0 (never a real item) is always −inf.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def cosine_scores(user_states: torch.Tensor, item_table: torch.Tensor, temperature: float) -> torch.Tensor:
    """s(v) = cos(h, H[v]) / τ for every user state h (B×d) and item row H[v] ((V+1)×d) → B×(V+1).

    Row 0 of the table is padding: its column is set to −inf so item 0 is never ranked.
    """
    if temperature <= 0:
        raise ValueError(f"similarity temperature τ must be > 0, got {temperature}")
    assert user_states.shape[-1] == item_table.shape[-1], (user_states.shape, item_table.shape)
    scores = F.normalize(user_states.float(), dim=-1) @ F.normalize(item_table.float(), dim=-1).T / temperature
    scores[:, 0] = float("-inf")
    return scores


def mask_items(scores: torch.Tensor, item_ids: Sequence[Sequence[int]]) -> torch.Tensor:
    """Set each row's listed item ids (the user's earlier history) to −inf, in place; return ``scores``."""
    assert len(item_ids) == scores.shape[0], (len(item_ids), scores.shape)
    rows = [row for row, ids in enumerate(item_ids) for _ in ids]
    cols = [item for ids in item_ids for item in ids]
    if cols:
        if max(cols) >= scores.shape[1] or min(cols) < 0:
            bad = sorted({c for c in cols if c >= scores.shape[1] or c < 0})
            raise ValueError(f"unknown item ids in history: {bad[:10]} (catalog has 1..{scores.shape[1] - 1})")
        scores[rows, cols] = float("-inf")
    return scores


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based rank of each row's target among all items: 1 + #other items scored ≥ the target.

    Ties count against the target (the pessimistic convention), so a model that scores every item
    alike ranks its target last rather than first. Masked (−inf) items never outrank a finite target.
    """
    target_scores = scores.gather(1, targets.view(-1, 1))
    return (scores[:, 1:] >= target_scores).sum(dim=1)  # column 0 is padding, not an item


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best item ids per row, best first, with their scores."""
    values, indices = scores.topk(min(k, scores.shape[1] - 1), dim=1)
    return indices, values
