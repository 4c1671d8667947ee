"""Batched reasoning generation with a KV cache that stops each row at the answer tag (spec §3, §5.1).

Each row stops when its decoded text contains the answer tag; a row that reaches
``max_new_tokens`` first gets the tag's tokens appended (teacher-forced). The result carries the
generated tokens, one log-probability per token (under the sampling temperature, before top-k
truncation, as RecPO's importance ratios need) and the last-layer hidden state at the tag's last
token. That hidden state is the user state h, so no second forward pass over the whole sequence is
needed. With ``group`` > 1 each prompt is run once and its KV cache repeated for its ``group`` paths
(RecPO's G samples per user), so the long prompt is not paid for G times. With ``direct=True`` the
no-reasoning user state (prompt + answer tag) is read off the same prompt cache before generating,
so evaluating both modes costs one prompt pass, not two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from r2ec_pipeline.model.dual_head import R2ecModel, position_ids


@dataclass
class Generation:
    """One reasoning path per prompt."""

    token_ids: list[list[int]]       # generated tokens, answer tag included
    logprobs: list[torch.Tensor]     # one log-probability per generated token
    texts: list[str]                 # decoded generated text, ending with the answer tag
    truncated: list[bool]            # the cap was reached and the tag appended
    final_hidden: torch.Tensor       # B×d hidden state at the tag's last token (the user state h)
    direct_hidden: torch.Tensor | None = None  # B×d state of prompt + tag, no reasoning (``direct=True``)


Generators = torch.Generator | Sequence[torch.Generator] | None


def _next_tokens(logits: torch.Tensor, do_sample: bool, top_k: int | None, generator: Generators) -> torch.Tensor:
    """Greedy or top-k sampling; a list of generators draws each row from its own stream."""
    if not do_sample:
        return logits.argmax(dim=-1)
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    if generator is None or isinstance(generator, torch.Generator):
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    if len(generator) != len(probs):
        raise ValueError(f"{len(generator)} generators for {len(probs)} rows")
    return torch.cat([torch.multinomial(row, 1, generator=g) for row, g in zip(probs, generator, strict=True)])


def _direct_states(
    model: R2ecModel, cache, mask: torch.Tensor, next_position: torch.Tensor, tag_ids: list[int]
) -> torch.Tensor:
    """h after prompt + answer tag, run on the prompt's cache; the tag is cropped off the cache again."""
    rows, width = mask.shape[0], len(tag_ids)
    tag = torch.tensor(tag_ids, device=mask.device).expand(rows, -1)
    out = model.decoder(
        input_ids=tag, attention_mask=torch.cat([mask, torch.ones_like(tag)], dim=1),
        position_ids=next_position.unsqueeze(1) + torch.arange(width, device=mask.device), cache=cache,
        use_cache=True,
    )
    cache.crop(-width)
    return out.last_hidden_state[:, -1].float()


@torch.no_grad()
def generate_reasoning(
    model: R2ecModel,
    prompts: Sequence[str],
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: Generators = None,
    group: int = 1,
    direct: bool = False,
) -> Generation:
    """Generate ``group`` reasoning paths per prompt (rows prompt-major), each ending with the answer tag.

    ``generator`` is one stream for the batch, or one per output row: per-row streams make a row's
    sample independent of the batch it is in (same rollout on 1 or N processes).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if group < 1:
        raise ValueError(f"group must be >= 1, got {group}")
    tokenizer, tag = model.tokenizer, model.config.answer_tag
    tag_ids = tokenizer(tag, add_special_tokens=False)["input_ids"]
    tail_tokens = len(tag_ids) + 4  # enough decoded context to see a tag split across tokens
    batch = model.tokenize(prompts, padding_side="left")
    mask = batch["attention_mask"]
    out = model.lm(input_ids=batch["input_ids"], attention_mask=mask, position_ids=position_ids(mask),
                   use_cache=True, logits_to_keep=1)
    cache, logits = out.cache, out.logits[:, -1].float() / temperature
    next_position = position_ids(mask)[:, -1] + 1
    direct_hidden = None
    if direct:
        if not cache.is_croppable:
            raise ValueError(f"{type(model.lm).__name__}'s cache cannot be cropped: encode the direct mode apart")
        direct_hidden = _direct_states(model, cache, mask, next_position, tag_ids)
    if group > 1:
        cache.batch_repeat_interleave(group)
        logits, mask, next_position = (t.repeat_interleave(group, dim=0) for t in (logits, mask, next_position))

    size = len(prompts) * group
    generated: list[list[int]] = [[] for _ in range(size)]
    logprobs: list[list[torch.Tensor]] = [[] for _ in range(size)]
    forced: list[list[int]] = [[] for _ in range(size)]
    truncated = [False] * size
    final_hidden = torch.zeros(size, model.lm.config.hidden_size, device=model.device)
    finished = torch.zeros(size, dtype=torch.bool, device=model.device)  # tag fed, hidden captured
    pad = tokenizer.pad_token_id

    while not bool(finished.all()):
        sampled = _next_tokens(logits, do_sample, top_k, generator)
        step_logprobs = F.log_softmax(logits, dim=-1)
        tokens = torch.full((size,), pad, dtype=torch.long, device=model.device)
        ends_here = torch.zeros(size, dtype=torch.bool, device=model.device)
        for row in range(size):
            if finished[row]:
                continue
            token = forced[row].pop(0) if forced[row] else int(sampled[row])
            tokens[row] = token
            generated[row].append(token)
            logprobs[row].append(step_logprobs[row, token])
            if truncated[row]:
                ends_here[row] = not forced[row]
            elif tag in tokenizer.decode(generated[row][-tail_tokens:]):
                ends_here[row] = True
            elif len(generated[row]) >= max_new_tokens:
                forced[row], truncated[row] = list(tag_ids), True
        mask = torch.cat([mask, (~finished).long().unsqueeze(1)], dim=1)
        out = model.lm(
            input_ids=tokens.unsqueeze(1), attention_mask=mask, position_ids=next_position.unsqueeze(1),
            cache=cache, use_cache=True, output_hidden_states=True,
        )
        cache, logits = out.cache, out.logits[:, -1].float() / temperature
        final_hidden[ends_here] = out.hidden_states[-1][ends_here, -1].float()
        finished |= ends_here
        next_position += 1

    return Generation(
        token_ids=generated,
        logprobs=[torch.stack(row) for row in logprobs],
        texts=[tokenizer.decode(row) for row in generated],
        truncated=truncated,
        final_hidden=final_hidden,
        direct_hidden=direct_hidden,
    )
