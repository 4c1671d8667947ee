"""The rec head's in-batch softmax: SFT's InfoNCE (spec §4) and RecPO's p(v⁺) (spec §5.6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def in_batch_target_logprobs(
    user_states: torch.Tensor, item_states: torch.Tensor, own_columns: torch.Tensor, column_ids: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """log p of each row's own column under softmax_j(cos(h_i, e_j) / τ) over the batch's item columns.

    Row i's own column is ``own_columns[i]``; any other column holding the same item id (a duplicate
    target in the batch, or a sampled negative that happens to be it) is masked for that row.
    """
    assert user_states.shape[0] == len(own_columns) and item_states.shape[0] == len(column_ids), (
        user_states.shape, item_states.shape, len(own_columns), len(column_ids))
    logits = F.normalize(user_states.float(), dim=-1) @ F.normalize(item_states.float(), dim=-1).T / temperature
    columns = torch.arange(len(column_ids), device=logits.device)
    same_item = column_ids[own_columns].view(-1, 1) == column_ids.view(1, -1)
    duplicate = same_item & (own_columns.view(-1, 1) != columns.view(1, -1))
    logprobs = F.log_softmax(logits.masked_fill(duplicate, float("-inf")), dim=-1)
    return logprobs.gather(1, own_columns.view(-1, 1)).squeeze(1)


def in_batch_infonce(
    user_states: torch.Tensor, item_states: torch.Tensor, target_ids: torch.Tensor, temperature: float,
    column_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE of each user's target against the batch's other targets (and any sampled negatives).

    logits[i, j] = cos(h_i, e_j) / τ, where e_j (j < B) is the state of sample j's target and the
    columns after B are sampled negatives with ids ``column_ids[B:]``. The loss is
    −log softmax(logits[i])[i], averaged, with row i's duplicate item columns masked.
    """
    column_ids = target_ids if column_ids is None else column_ids
    own = torch.arange(len(target_ids), device=user_states.device)
    return -in_batch_target_logprobs(user_states, item_states, own, column_ids.to(own.device), temperature).mean()
