"""The rec head's supervised loss for the SFT warm-start (spec §4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def in_batch_infonce(
    user_states: torch.Tensor, item_states: torch.Tensor, target_ids: torch.Tensor, temperature: float,
    column_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE of each user's target against the batch's other targets (and any sampled negatives).

    logits[i, j] = cos(h_i, e_j) / τ, where e_j (j < B) is the state of sample j's target and the
    columns after B are sampled negatives with ids ``column_ids[B:]``. The loss is
    −log softmax(logits[i])[i], averaged. A column holding row i's own target item (a duplicate target
    in the batch, or a negative that happens to be it) is masked for that row.
    """
    batch = len(target_ids)
    column_ids = target_ids if column_ids is None else column_ids
    assert user_states.shape[0] == batch and item_states.shape[0] == len(column_ids), (
        user_states.shape, item_states.shape, len(column_ids))
    logits = F.normalize(user_states.float(), dim=-1) @ F.normalize(item_states.float(), dim=-1).T / temperature
    same_item = target_ids.view(-1, 1) == column_ids.view(1, -1)
    own = torch.zeros_like(same_item)
    own[torch.arange(batch), torch.arange(batch)] = True
    duplicate = same_item & ~own
    logits = logits.masked_fill(duplicate, float("-inf"))
    return F.cross_entropy(logits, torch.arange(batch, device=logits.device))
