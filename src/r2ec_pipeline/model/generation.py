"""Batched reasoning generation with a KV cache that stops each row at the answer tag (spec §3, §5.1).

A row stops when its decoded text contains the answer tag, when it closes its turn (EOS or the chat
template's end-of-turn token, which is dropped), or at ``max_new_tokens``. Whatever stopped it, the
path then ends with exactly the tag's canonical token ids: a tag written in another token split or
half-written at the cap is cut, together with whitespace before it, and the canonical ids are
teacher-forced (re-feeding the last kept token when already-fed tokens were cut, so the forced
tokens' log-probabilities and the final state see only the kept context). Reasoning-mode h, direct
mode and the item rows are thus read at the same token. The result carries the
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
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase

from r2ec_pipeline.model.dual_head import R2ecModel, position_ids


StopReason = Literal["tag", "end_of_turn", "length"]
STOP_REASONS: tuple[StopReason, ...] = ("tag", "end_of_turn", "length")

# Chat templates' end-of-turn markers, counted as end of turn whenever the tokenizer has them as tokens.
END_OF_TURN_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")


@dataclass
class Generation:
    """One reasoning path per prompt."""

    token_ids: list[list[int]]       # generated tokens, ending with the answer tag's canonical ids
    logprobs: list[torch.Tensor]     # one log-probability per generated token
    texts: list[str]                 # decoded generated text, ending with the answer tag
    stop_reasons: list[StopReason]   # what ended each path: the tag, end of turn, or the length cap
    final_hidden: torch.Tensor       # B×d hidden state at the tag's last token (the user state h)
    direct_hidden: torch.Tensor | None = None  # B×d state of prompt + tag, no reasoning (``direct=True``)


Generators = torch.Generator | Sequence[torch.Generator] | None


def end_of_turn_ids(model: R2ecModel) -> set[int]:
    """Token ids that close the assistant's turn: EOS, the generation config's EOS ids, template markers."""
    tokenizer = model.tokenizer
    configured = getattr(getattr(model.lm, "generation_config", None), "eos_token_id", None)
    ids = {tokenizer.eos_token_id, *(configured if isinstance(configured, list | tuple) else [configured])}
    specials = set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab())
    ids.update(tokenizer.convert_tokens_to_ids(marker) for marker in END_OF_TURN_MARKERS if marker in specials)
    return {int(i) for i in ids if i is not None}


def partial_tag_length(text: str, tag: str) -> int:
    """Length of the longest proper prefix of ``tag`` that ``text`` ends with (a half-written tag)."""
    return next((size for size in range(len(tag) - 1, 0, -1) if text.endswith(tag[:size])), 0)


def closing_ids(tokenizer: PreTrainedTokenizerBase, tokens: Sequence[int], end: int, tag_ids: Sequence[int]) -> list[int]:
    """The canonical token sequence of a path whose reasoning is the decoded ``tokens`` cut at character ``end``.

    Reasoning = decode(tokens)[:end] without trailing whitespace. The sampled tokens are kept as long
    as their text stays inside it; what is left of it (a token that straddled the cut) is tokenized
    again, and the tag's canonical ids follow. So a tag spelled in another split (``" <"``,
    ``">\n"``, ``"<answ<answer>"``) ends exactly like the item prompts and direct mode end.
    """
    reasoning = tokenizer.decode(list(tokens))[:end].rstrip()
    kept, prefix = len(tokens), None
    while kept > 0:
        prefix = tokenizer.decode(list(tokens[:kept]))
        if reasoning.startswith(prefix):
            break
        kept -= 1
    rest = reasoning[len(prefix) if kept else 0:]
    rest_ids = tokenizer(rest, add_special_tokens=False)["input_ids"] if rest else []
    return [*tokens[:kept], *rest_ids, *tag_ids]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


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


@dataclass(frozen=True)
class _StopRule:
    """When a path stops, and the canonical tokens it must end with (spec §3)."""

    tokenizer: PreTrainedTokenizerBase
    tag_ids: list[int]
    tag: str
    max_new_tokens: int
    end_of_turn: set[int]

    def ending(self, tokens: list[int], token: int) -> tuple[StopReason, list[int]] | None:
        """None if the path goes on with ``token``; else why it stops and the whole path it must become."""
        if token in self.end_of_turn:  # the turn is closed: the marker is dropped, the tag goes right there
            text = self.tokenizer.decode(tokens)
            return "end_of_turn", closing_ids(self.tokenizer, tokens, len(text) - partial_tag_length(text, self.tag),
                                              self.tag_ids)
        candidate = [*tokens, token]
        tail = self.tokenizer.decode(candidate[-(len(self.tag) + 1):])  # a tag spelled one character a token too
        if self.tag in tail:
            text = self.tokenizer.decode(candidate)
            return "tag", closing_ids(self.tokenizer, candidate, text.index(self.tag), self.tag_ids)
        if len(candidate) >= self.max_new_tokens:
            text = self.tokenizer.decode(candidate)
            return "length", closing_ids(self.tokenizer, candidate, len(text) - partial_tag_length(text, self.tag),
                                         self.tag_ids)
        return None


@dataclass
class _Path:
    """One row's generation state: its tokens, their KV-cache columns, and what it still must be fed."""

    position: int            # position id of the next token fed
    context_token: int       # the last token before the generated ones (re-fed when a stop cuts them all)
    context_column: int      # its column in the attention mask
    tokens: list[int] = field(default_factory=list)
    logprobs: list[torch.Tensor] = field(default_factory=list)
    columns: list[int] = field(default_factory=list)   # mask column of each generated token
    forced: list[int] = field(default_factory=list)    # tokens still to feed before the path ends
    stop_reason: StopReason | None = None
    finished: bool = False

    def _feed(self, token: int, logprobs: torch.Tensor, column: int) -> tuple[int, int, bool]:
        self.tokens.append(token)
        self.logprobs.append(logprobs[token])
        self.columns.append(column)
        self.position += 1
        return token, self.position - 1, self.stop_reason is not None and not self.forced

    def _rewind(self, keep: int, column: int, mask: torch.Tensor) -> tuple[int, int, bool]:
        """Drop the fed tokens after ``keep`` from the context and re-feed the last kept one.

        Its output then gives the next-token distribution after the kept tokens, under which the
        forced tokens' log-probabilities are read. Dropped tokens stay in the cache, masked out.
        """
        dropped = self.columns[keep:] + ([self.columns[keep - 1]] if keep else [self.context_column])
        mask[dropped] = 0
        del self.tokens[keep:], self.logprobs[keep:], self.columns[keep:]
        token = self.tokens[-1] if keep else self.context_token
        if keep:
            self.columns[-1] = column
        else:
            self.context_column = column
        self.position -= len(dropped)
        self.position += 1
        return token, self.position - 1, False

    def advance(self, sampled: int, logprobs: torch.Tensor, column: int, stops: _StopRule,
                mask: torch.Tensor) -> tuple[int, int, bool]:
        """This step's (input token, its position, whether the path ends with it); ``mask`` is the row's."""
        if self.stop_reason is not None:
            return self._feed(self.forced.pop(0), logprobs, column)
        ending = stops.ending(self.tokens, sampled)
        if ending is None:
            return self._feed(sampled, logprobs, column)
        self.stop_reason, closing = ending
        candidate = [*self.tokens, sampled]
        keep = _common_prefix(candidate, closing)
        self.forced = closing[keep:]
        if keep == len(candidate):
            return self._feed(sampled, logprobs, column)
        if keep == len(self.tokens):  # only the sampled token goes: the forced one takes its place
            return self._feed(self.forced.pop(0), logprobs, column)
        return self._rewind(keep, column, mask)


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
    stops = _StopRule(tokenizer, tag_ids, tag, max_new_tokens, end_of_turn_ids(model))
    last_prompt_tokens = batch["input_ids"][:, -1].repeat_interleave(group).tolist()
    paths = [_Path(position=int(p), context_token=t, context_column=mask.shape[1] - 1)
             for p, t in zip(next_position.tolist(), last_prompt_tokens, strict=True)]
    final_hidden = torch.zeros(size, model.lm.config.hidden_size, device=model.device)
    pad = tokenizer.pad_token_id

    while not all(path.finished for path in paths):
        sampled = _next_tokens(logits, do_sample, top_k, generator).tolist()  # the step's one host transfer
        step_logprobs = F.log_softmax(logits, dim=-1)
        column = mask.shape[1]
        inputs = [(pad, 0, False)] * size  # (token, position, ends here)
        for row, path in enumerate(paths):
            if not path.finished:
                inputs[row] = path.advance(sampled[row], step_logprobs[row], column, stops, mask[row])
        tokens, positions, ends = (torch.tensor(values, device=model.device) for values in zip(*inputs, strict=True))
        live = torch.tensor([not path.finished for path in paths], device=model.device)
        mask = torch.cat([mask, live.long().unsqueeze(1)], dim=1)
        out = model.lm(
            input_ids=tokens.unsqueeze(1), attention_mask=mask, position_ids=positions.unsqueeze(1),
            cache=cache, use_cache=True, output_hidden_states=True,
        )
        cache, logits = out.cache, out.logits[:, -1].float() / temperature
        final_hidden[ends] = out.hidden_states[-1][ends, -1].float()
        for row in ends.nonzero().flatten().tolist():
            paths[row].finished = True

    return Generation(
        token_ids=[path.tokens for path in paths],
        logprobs=[torch.stack(path.logprobs) for path in paths],
        texts=[tokenizer.decode(path.tokens) for path in paths],
        stop_reasons=[path.stop_reason for path in paths],
        final_hidden=final_hidden,
        direct_hidden=direct_hidden,
    )
