"""The rec head's softmax losses: SFT's InfoNCE (method §4; in-batch or over the catalog), RecPO's p(v⁺) (§5.6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def in_batch_target_logprobs(
    user_states: torch.Tensor,
    item_states: torch.Tensor,
    own_columns: torch.Tensor,
    column_ids: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """log p of each row's own column under softmax_j(cos(h_i, e_j) / τ) over the batch's item columns.

    Row i's own column is ``own_columns[i]``; any other column holding the same item id (a duplicate
    target in the batch, or a sampled negative that happens to be it) is masked for that row.
    """
    assert user_states.shape[0] == len(own_columns) and item_states.shape[0] == len(column_ids), (
        user_states.shape,
        item_states.shape,
        len(own_columns),
        len(column_ids),
    )
    logits = F.normalize(user_states.float(), dim=-1) @ F.normalize(item_states.float(), dim=-1).T / temperature
    columns = torch.arange(len(column_ids), device=logits.device)
    same_item = column_ids[own_columns].view(-1, 1) == column_ids.view(1, -1)
    duplicate = same_item & (own_columns.view(-1, 1) != columns.view(1, -1))
    logprobs = F.log_softmax(logits.masked_fill(duplicate, float("-inf")), dim=-1)
    return logprobs.gather(1, own_columns.view(-1, 1)).squeeze(1)


def in_batch_infonce(
    user_states: torch.Tensor,
    item_states: torch.Tensor,
    target_ids: torch.Tensor,
    temperature: float,
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


def catalog_target_logprobs(
    user_states: torch.Tensor,
    target_states: torch.Tensor,
    target_ids: torch.Tensor,
    table: torch.Tensor,
    temperature: float,
    masks: list[list[int]] | None = None,
    own: torch.Tensor | None = None,
) -> torch.Tensor:
    """log p of each row's target under softmax over the whole catalog, as evaluation ranks it.

    Every item's logit is cos(h_i, H[v]) / τ with H the item table: a memory bank that may be a few
    steps old and takes no gradient. The batch's targets get the gradient of their fresh encodings
    ``target_states`` (straight through: their value stays the bank's). Were the value fresh, the
    model could tell fresh columns from stale ones and lower the loss without ranking better (the
    first SFT search measured exactly that). Column 0 (padding) and each row's ``masks`` items (its
    earlier history, masked at evaluation too) are left out; a target never is.

    Row i's target is ``target_ids[i]`` (one fresh encoding per row), or ``own[i]`` when the fresh
    encodings are a set of columns of their own (RecPO: the batch's targets, shared by every path and
    every micro-batch, so that micro-batches add up to the one-shot gradient).
    """
    own = target_ids if own is None else own
    assert user_states.shape[0] == len(own) and target_states.shape[0] == len(target_ids), (
        user_states.shape,
        target_states.shape,
        len(target_ids),
        len(own),
    )
    users = F.normalize(user_states.float(), dim=-1)
    bank = users @ F.normalize(table.detach().float().to(users.device), dim=-1).T / temperature
    fresh = users.detach() @ F.normalize(target_states.float(), dim=-1).T / temperature
    through = bank[:, target_ids] + fresh - fresh.detach()  # the bank's value, the fresh encodings' gradient
    logits = bank.index_copy(1, target_ids, through)  # a target listed twice has the same text: same column
    excluded = torch.zeros_like(logits, dtype=torch.bool)
    excluded[:, 0] = True
    for row, items in enumerate(masks or []):
        excluded[row, list(items)] = True
    excluded[torch.arange(len(own), device=logits.device), own] = False
    logprobs = F.log_softmax(logits.masked_fill(excluded, float("-inf")), dim=-1)
    return logprobs.gather(1, own.view(-1, 1)).squeeze(1)


def catalog_infonce(
    user_states: torch.Tensor,
    target_states: torch.Tensor,
    target_ids: torch.Tensor,
    table: torch.Tensor,
    temperature: float,
    masks: list[list[int]] | None = None,
) -> torch.Tensor:
    """−mean log p(target) over the whole catalog (``catalog_target_logprobs``): SFT's ``softmax: catalog``."""
    return -catalog_target_logprobs(user_states, target_states, target_ids, table, temperature, masks).mean()
