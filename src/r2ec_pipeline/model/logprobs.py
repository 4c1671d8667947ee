"""Log-probabilities of chosen tokens from hidden states, a chunk of positions at a time.

The policy loss needs log π(token) for every completion token. Taking the whole batch's vocabulary
logits at once costs rows × positions × |V| floats (Gemma-2's 256k vocabulary: ≈ 17 GB in float32
for 32 paths × 512 tokens), and autograd keeps them for backward. Here the logits exist for
``chunk_tokens`` positions at a time; under grad each chunk is checkpointed, so backward recomputes
its logits from the hidden states instead of keeping them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def _chunk_logprobs(hidden: torch.Tensor, ids: torch.Tensor, head: nn.Module, temperature: float) -> torch.Tensor:
    logits = head(hidden).float() / temperature
    return logits.log_softmax(dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)


def token_logprobs(
    hidden: torch.Tensor, ids: torch.Tensor, head: nn.Module, temperature: float, chunk_tokens: int = 4096
) -> torch.Tensor:
    """log softmax(head(hidden) / T)[ids] per position (N × T from N × T × d states and N × T ids), in float32.

    ``hidden[:, j]`` is the state that predicts ``ids[:, j]``. Positions are processed in chunks of at
    most ``chunk_tokens`` tokens over all rows; with one chunk it is the plain computation.
    """
    rows, width = ids.shape
    step = max(1, chunk_tokens // max(rows, 1))
    if step >= width:
        return _chunk_logprobs(hidden, ids, head, temperature)
    parts = []
    for start in range(0, width, step):
        piece = (hidden[:, start : start + step], ids[:, start : start + step])
        if torch.is_grad_enabled() and hidden.requires_grad:
            parts.append(checkpoint(_chunk_logprobs, *piece, head, temperature, use_reentrant=False))
        else:
            parts.append(_chunk_logprobs(*piece, head, temperature))
    return torch.cat(parts, dim=1)
