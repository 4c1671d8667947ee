"""The policy's side of a RecPO update: log π of every completion token and h at each path's end (method §5.5–5.6).

One forward pass over prompt + completion, the prompt shared by a user's G paths through its KV cache
(or repeated under gradient checkpointing, which drops caches).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from r2ec_pipeline.model.dual_head import R2ecModel, position_ids
from r2ec_pipeline.model.hf_compat import cache_of, with_cache
from r2ec_pipeline.model.logprobs import token_logprobs


def padded(
    rows: Sequence[torch.Tensor | list[int]], device: torch.device, value: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad rows to one width on ``device``; returns (values, mask)."""
    width = max(len(row) for row in rows)
    values = torch.full((len(rows), width), value, device=device)
    mask = torch.zeros(len(rows), width, device=device)
    for index, row in enumerate(rows):
        values[index, : len(row)] = torch.as_tensor(row, dtype=values.dtype, device=device)
        mask[index, : len(row)] = 1.0
    return values, mask


def _cached_prompt_states(
    model: R2ecModel, prompts: Sequence[str], ids: torch.Tensor, completion_mask: torch.Tensor, group: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each prompt run once, its KV cache repeated for its ``group`` completions (gradients flow through it)."""
    batch = model.tokenize(prompts, padding_side="left")
    prompt_mask = batch["attention_mask"]
    out = model.decoder(
        input_ids=batch["input_ids"], attention_mask=prompt_mask, position_ids=position_ids(prompt_mask), use_cache=True
    )
    cache = cache_of(out)
    cache.batch_repeat_interleave(group)
    last_prompt = out.last_hidden_state[:, -1].repeat_interleave(group, dim=0)  # left padding: the last column
    mask = torch.cat([prompt_mask.repeat_interleave(group, dim=0), completion_mask], dim=1)
    starts = prompt_mask.sum(dim=1).repeat_interleave(group).view(-1, 1)
    positions = starts + torch.arange(ids.shape[1], device=model.device).view(1, -1)
    out = model.decoder(input_ids=ids, attention_mask=mask, position_ids=positions, **with_cache(cache), use_cache=True)
    return out.last_hidden_state, last_prompt


def _full_sequence_states(
    model: R2ecModel, prompts: Sequence[str], ids: torch.Tensor, completion_mask: torch.Tensor, group: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt + completion as one sequence per path: what gradient checkpointing needs (it drops caches)."""
    batch = model.tokenize(prompts, padding_side="left")
    prompt_ids = batch["input_ids"].repeat_interleave(group, dim=0)
    mask = torch.cat([batch["attention_mask"].repeat_interleave(group, dim=0), completion_mask], dim=1)
    out = model.decoder(
        input_ids=torch.cat([prompt_ids, ids], dim=1),
        attention_mask=mask,
        position_ids=position_ids(mask),
        use_cache=False,
    )
    width = prompt_ids.shape[1]
    return out.last_hidden_state[:, width:], out.last_hidden_state[:, width - 1]


def policy_forward(
    model: R2ecModel,
    prompts: Sequence[str],
    completions: Sequence[list[int]],
    group: int,
    temperature: float,
    chunk_tokens: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log π(token) of every completion token (right-padded, N × T, float32) and h at each completion's last token.

    Completions are user-major: row i belongs to prompt i // group. The prompt is shared across a
    user's paths through its KV cache, except under gradient checkpointing (full sequences then).
    Log-probs come from the hidden states ``chunk_tokens`` positions at a time (``token_logprobs``).
    """
    ids, completion_mask = padded(completions, model.device, value=model.tokenizer.pad_token_id)
    ids, completion_mask = ids.long(), completion_mask.long()
    states_of = _full_sequence_states if model.recomputes_activations else _cached_prompt_states
    hidden, last_prompt = states_of(model, prompts, ids, completion_mask, group)
    predicting = torch.cat([last_prompt.unsqueeze(1), hidden[:, :-1]], dim=1)  # state j predicts token j
    logprobs = token_logprobs(predicting, ids, model.lm.get_output_embeddings(), temperature, chunk_tokens)
    rows = torch.arange(len(completions), device=model.device)
    return logprobs, hidden[rows, completion_mask.sum(dim=1) - 1]
