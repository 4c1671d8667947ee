"""SASRec (Kang & McAuley, 2018), compact: causal self-attention over the last ``max_length`` items.

The usual setup: item + learned position embeddings, ``num_blocks`` pre-norm Transformer blocks,
each position's state dotted with every item embedding (shared input/output table), trained with
cross-entropy over the full catalog at every position (next-item prediction, as SASRec+CE in
Klenitskiy & Vasilev, RecSys 2023), early-stopped on validation NDCG@10. One pass over a user's
sequence trains all its prefixes, so an epoch over ML-100k takes seconds, not minutes.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from r2ec_pipeline.config import SASRecParams

logger = logging.getLogger(__name__)


def pad_sequences(histories: Sequence[Sequence[int]], max_length: int) -> torch.Tensor:
    """The latest ``max_length`` items of each history, oldest first, left-padded with 0."""
    rows = torch.zeros(len(histories), max_length, dtype=torch.long)
    for index, history in enumerate(histories):
        kept = list(history)[-max_length:]
        if kept:
            rows[index, max_length - len(kept) :] = torch.as_tensor(kept, dtype=torch.long)
    return rows


class SASRec(nn.Module):
    """Scores every item (column 0 = padding, never ranked) from a user's recent items."""

    def __init__(self, num_items: int, settings: SASRecParams) -> None:
        super().__init__()
        self.settings = settings
        size = settings.hidden_size
        self.items = nn.Embedding(num_items + 1, size, padding_idx=0)
        self.positions = nn.Embedding(settings.max_length, size)
        block = nn.TransformerEncoderLayer(
            size, settings.num_heads, size, settings.dropout, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(block, settings.num_blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(size)
        self.dropout = nn.Dropout(settings.dropout)
        for table in (self.items, self.positions):  # small init, as RecBole's SASRec: logits start near 0
            nn.init.normal_(table.weight, std=0.02)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def _attention_mask(self, sequences: torch.Tensor) -> torch.Tensor:
        """Additive mask: no future items, no padding; every position may see itself (no empty row)."""
        length = sequences.shape[1]
        future = torch.ones(length, length, dtype=torch.bool, device=sequences.device).triu(1)
        blocked = future.unsqueeze(0) | (sequences == 0).unsqueeze(1)
        blocked &= ~torch.eye(length, dtype=torch.bool, device=sequences.device)
        mask = torch.zeros(blocked.shape, device=sequences.device).masked_fill(blocked, -1e9)
        return mask.repeat_interleave(self.settings.num_heads, dim=0)

    def states(self, sequences: torch.Tensor) -> torch.Tensor:
        """The user state after each position (users × max_length × hidden) of left-padded sequences."""
        positions = torch.arange(sequences.shape[1], device=sequences.device)
        x = self.items(sequences) + self.positions(positions)
        return self.norm(self.blocks(self.dropout(x), mask=self._attention_mask(sequences)))

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        """Next-item scores (users × (num_items + 1)) from left-padded sequences (users × max_length)."""
        scores = self.states(sequences)[:, -1] @ self.items.weight.T
        scores[:, 0] = float("-inf")
        return scores


def training_windows(sequences: Sequence[Sequence[int]], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, next-item labels), both left-padded with 0, from windows of ``max_length`` + 1 items.

    Each sequence is cut from its end, windows overlapping by one item, so every item but the
    first is a label exactly once and each input sees up to ``max_length`` earlier items.
    """
    inputs, labels = [], []
    for sequence in map(list, sequences):
        end = len(sequence)
        while end >= 2:
            start = max(0, end - max_length - 1)
            inputs.append(sequence[start : end - 1])
            labels.append(sequence[start + 1 : end])
            end = start + 1 if start > 0 else 0
    return pad_sequences(inputs, max_length), pad_sequences(labels, max_length)


def train_sasrec(
    num_items: int,
    sequences: Sequence[Sequence[int]],
    evaluate: Callable[[SASRec], float],
    settings: SASRecParams,
) -> tuple[SASRec, list[dict[str, float]]]:
    """Fit on users' training sequences (oldest first); keep the epoch with the best ``evaluate`` (valid N@10)."""
    inputs, labels = training_windows(sequences, settings.max_length)
    if not len(inputs):
        raise ValueError(f"no training pairs in {len(sequences)} sequences: each needs at least 2 items")
    torch.manual_seed(settings.seed)
    order_rng = np.random.default_rng(settings.seed)
    model = SASRec(num_items, settings)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    best_value, best_state, stale, log = -1.0, copy.deepcopy(model.state_dict()), 0, []
    for epoch in range(1, settings.max_epochs + 1):
        model.train()
        total, count = 0.0, 0
        for batch in np.array_split(order_rng.permutation(len(labels)), max(1, len(labels) // settings.batch_size)):
            targets = labels[batch]
            logits = model.states(inputs[batch]) @ model.items.weight.T
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            labelled = int((targets > 0).sum())
            total, count = total + loss.item() * labelled, count + labelled
        model.eval()
        value = evaluate(model)
        log.append({"epoch": epoch, "loss": total / count, "valid_ndcg_at_10": value})
        logger.info("SASRec epoch %d: loss %.4f, valid N@10 %.4f", epoch, total / count, value)
        if value > best_value:
            best_value, best_state, stale = value, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= settings.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return model, log


def sasrec_scores(model: SASRec, histories: list[list[int]]) -> torch.Tensor:
    """Next-item scores for each full history (its latest ``max_length`` items), history not masked."""
    with torch.no_grad():
        return model(pad_sequences(histories, model.settings.max_length))


def catalog_scores(model: SASRec, histories: list[list[int]], num_items: int) -> torch.Tensor:
    """``sasrec_scores`` over a catalog of ``num_items`` that grew after training: the items the model never
    saw are left out of its input and score −inf (it cannot rank them)."""
    known = model.items.num_embeddings - 1
    scores = sasrec_scores(model, [[i for i in history if i <= known] for history in histories])
    unseen = torch.full((scores.shape[0], max(num_items - known, 0)), float("-inf"), dtype=scores.dtype)
    return torch.cat([scores, unseen], dim=1)
